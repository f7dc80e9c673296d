#!/usr/bin/env python3
"""Writes tests/fixtures/safetensors/python.safetensors with the reference
`safetensors` package (pip install safetensors numpy) and, beside it,
python_expected.json: every tensor's dtype, shape and values (as float64 /
int) computed in numpy, plus the metadata. tests/test_safetensors.c reads
both. Not needed at run time; rerun only to regenerate the fixture.

bf16 and fp8 have no numpy dtype: their bit patterns are passed to the
package's serializer as raw bytes, and their values are decoded here in
numpy from the bits.
"""
import json
import os

import numpy as np
from safetensors import TensorSpec, serialize

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "safetensors")
rng = np.random.default_rng(1234)


def bf16_values(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def f8_e4m3fn_values(bits):
    """E4M3 'fn': bias 7, no infinities, S.1111.111 is NaN (avoided here)."""
    b = bits.astype(np.int64)
    sign = np.where(b >> 7, -1.0, 1.0)
    exp = (b >> 3) & 0xF
    man = (b & 7).astype(np.float64)
    normal = (1.0 + man / 8.0) * np.exp2(exp.astype(np.float64) - 7.0)
    sub = man / 8.0 * 2.0**-6
    return sign * np.where(exp == 0, sub, normal)


def f8_e5m2_values(bits):
    return (bits.astype(np.uint16) << 8).view(np.float16).astype(np.float64)


def finite_bits(bits, values):
    keep = np.isfinite(values)
    return bits[keep], values[keep]


def tensors():
    """name -> (safetensors dtype name for the serializer, numpy array holding
    the stored bits, expected values as float64 or int64)."""
    t = {}
    f32 = rng.standard_normal((3, 4)).astype(np.float32)
    t["f32_matrix"] = ("float32", f32, f32.astype(np.float64))
    f64 = rng.standard_normal(5) * 1e3
    t["f64_vector"] = ("float64", f64, f64)
    f16 = (rng.standard_normal((2, 3, 5)) * 100).astype(np.float16)
    f16.flat[:4] = [65504.0, -0.0, 2.0**-24, -(2.0**-14) * 0.5]  # max, -0, subnormals
    t["f16_odd"] = ("float16", f16, f16.astype(np.float64))
    bf = rng.integers(0, 1 << 16, 7, dtype=np.uint16)
    bf[0], bf[1] = 0x3F80, 0x0001  # 1.0 and the smallest subnormal
    bf, _ = finite_bits(bf, bf16_values(bf))
    t["bf16_bits"] = ("bfloat16", bf, bf16_values(bf))
    e4 = np.arange(0, 256, 9, dtype=np.uint8)
    e4 = e4[(e4 & 0x7F) != 0x7F]
    t["f8_e4m3"] = ("float8_e4m3fn", e4, f8_e4m3fn_values(e4))
    e5 = np.arange(1, 256, 7, dtype=np.uint8)
    e5, e5v = finite_bits(e5, f8_e5m2_values(e5))
    t["f8_e5m2"] = ("float8_e5m2", e5, e5v)
    scalar = np.array(4.605170249938965, dtype=np.float32)  # ln 100, CLIP's logit_scale
    t["scalar"] = ("float32", scalar, scalar.astype(np.float64))
    empty = np.zeros((0, 3), dtype=np.float32)
    t["empty"] = ("float32", empty, empty.astype(np.float64))
    i64 = np.array([[0, -1, 2147483647], [-2147483648, 32000, 7]], dtype=np.int64)
    t["i64_ids"] = ("int64", i64, i64)
    big = np.array([1 << 40, 5], dtype=np.int64)
    t["i64_too_big"] = ("int64", big, big)
    for name, dt in [("i32", np.int32), ("i16", np.int16), ("i8", np.int8), ("u8", np.uint8)]:
        info = np.iinfo(dt)
        v = np.array([info.min, info.max, 0, 1, -1 if info.min < 0 else 200], dtype=dt)
        t[name] = (np.dtype(dt).name, v, v.astype(np.int64))
    b = np.array([[True, False, True], [False, False, True]])
    t["bool"] = ("bool", b, b.astype(np.int64))
    return t


ST_NAMES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}


def main():
    os.makedirs(OUT, exist_ok=True)
    t = tensors()
    specs = {
        name: TensorSpec(dtype=dt, shape=arr.shape, data_ptr=arr.ctypes.data, data_len=arr.nbytes)
        for name, (dt, arr, _) in t.items()
    }
    metadata = {"format": "np", "producer": "scripts/make_safetensors_fixtures.py"}
    blob = bytes(serialize(specs, metadata=metadata))
    with open(os.path.join(OUT, "python.safetensors"), "wb") as f:
        f.write(blob)
    header = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])
    expected = {"metadata": metadata, "tensors": {}}
    for name, (dt, arr, values) in t.items():
        assert header[name]["dtype"] == ST_NAMES[dt] and header[name]["shape"] == list(arr.shape)
        expected["tensors"][name] = {
            "dtype": ST_NAMES[dt],
            "shape": list(header[name]["shape"]),
            "values": [v.item() for v in values.reshape(-1)],
        }
    with open(os.path.join(OUT, "python_expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    print(f"wrote {len(blob)} bytes, {len(t)} tensors")


if __name__ == "__main__":
    main()
