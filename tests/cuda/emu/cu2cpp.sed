# cuda-emu: a kernels/cuda/*.cu file as C++ for the host compiler (the
# Makefile adds a #line so that messages name the .cu file and its lines).
#   name<<<grid, block, smem, stream>>>(args)  ->  emu_launch("name", emu_make_cfg(grid, block, smem, stream), name, args)
#   extern __shared__ T name[];                 ->  T *name = (T *)emu_dynamic_smem();
s/([A-Za-z_][A-Za-z0-9_]*(<[A-Za-z0-9_, ]+>)?)<<<(.*)>>>\(/emu_launch("\1", emu_make_cfg(\3), \1, /
s/extern __shared__ ([A-Za-z0-9_]+) ([A-Za-z_][A-Za-z0-9_]*)\[\];/\1 *\2 = (\1 *)emu_dynamic_smem();/
