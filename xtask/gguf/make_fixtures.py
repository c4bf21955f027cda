#!/usr/bin/env python3
"""Writes the GGUF test fixtures with the reference writer, the `gguf` package from llama.cpp (PyPI).

usage: make_fixtures.py OUT_DIR

Run through `cargo xtask gen-gguf-fixtures`, which installs the package into its own venv. The output is
deterministic (fixed seeds), so the committed fixtures can be regenerated and compared.

  all-types.gguf        v3, default alignment: one tensor of every type the package can write (quantized
                        by the package where it can, otherwise bytes of the right size), metadata of every
                        value type, unicode keys, values and tensor names
  v2-align128.gguf      the same tensors, written as version 2 with general.alignment = 128
  big-endian.gguf       a big-endian file, which tenzip stores as bytes
"""
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

VALUES = 2048  # a multiple of every block size (256 for K and IQ types, 128 for Q1_0)


def weights(seed, count=VALUES):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(count) * 0.02).astype(np.float32)


def tensors():
    """(name, array, raw_dtype) for every type: quantized by the package where it implements it."""
    out = []
    for index, qtype in enumerate(Q):
        name = f"blk.{index}.{qtype.name.lower()}.weight"
        values = weights(index)
        block_values, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        if qtype in (Q.F32,):
            out.append((name, values, None))
        elif qtype == Q.F16:
            out.append((name, values.astype(np.float16), None))
        elif qtype == Q.F64:
            out.append((name, values.astype(np.float64), None))
        elif qtype in (Q.I8, Q.I16, Q.I32, Q.I64):
            dtype = {Q.I8: np.int8, Q.I16: np.int16, Q.I32: np.int32, Q.I64: np.int64}[qtype]
            out.append((name, (np.arange(VALUES) % 97 - 40).astype(dtype), None))
        else:
            try:
                data = gguf.quants.quantize(values.reshape(8, -1), qtype)
            except (NotImplementedError, TypeError, ValueError, KeyError):
                rng = np.random.default_rng(1000 + index)
                data = rng.integers(0, 256, VALUES // block_values * block_bytes, dtype=np.uint8)
                data = data.reshape(8, -1)
            out.append((name, data, qtype))
    # A name outside ASCII, and a tensor with a shape of three dimensions.
    out.append(("blk.0.ünïcödé.权重", weights(99, 64).reshape(4, 4, 4), None))
    return out


def metadata(writer):
    writer.add_uint8("test.u8", 200)
    writer.add_int8("test.i8", -100)
    writer.add_uint16("test.u16", 60000)
    writer.add_int16("test.i16", -30000)
    writer.add_uint32("test.u32", 4_000_000_000)
    writer.add_int32("test.i32", -2_000_000_000)
    writer.add_float32("test.f32", 1.5)
    writer.add_uint64("test.u64", 2**63 + 5)
    writer.add_int64("test.i64", -(2**62))
    writer.add_float64("test.f64", -2.25)
    writer.add_bool("test.bool", True)
    writer.add_string("test.string", "déjà vu ✓")
    writer.add_string("tëst.ünicode_key", "value")
    writer.add_array("test.array_i32", [1, -2, 3])
    writer.add_array("test.array_f32", [0.5, 1.5])
    writer.add_array("test.array_strings", ["a", "ü", ""])
    writer.add_array("test.array_bools", [True, False])


def write(path, version=3, alignment=None, endianess=gguf.GGUFEndian.LITTLE):
    writer = gguf.GGUFWriter(str(path), "llama", endianess=endianess)
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    metadata(writer)
    for name, data, raw_dtype in tensors():
        if endianess == gguf.GGUFEndian.BIG and raw_dtype is None:
            data = data.byteswap()
        writer.add_tensor(name, data, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if version != 3:
        raw = bytearray(path.read_bytes())
        raw[4:8] = version.to_bytes(4, "little")
        path.write_bytes(bytes(raw))


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    write(out / "all-types.gguf")
    write(out / "v2-align128.gguf", version=2, alignment=128)
    write(out / "big-endian.gguf", endianess=gguf.GGUFEndian.BIG)
    for path in sorted(out.glob("*.gguf")):
        print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
