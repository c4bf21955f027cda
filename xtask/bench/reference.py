#!/usr/bin/env python3
"""Reference compressors for `cargo xtask bench`: zstd (python-zstandard) and ZipNN, timed on one file.

usage: reference.py FILE --runs N --threads 1,2 [--zstd19] [--no-zipnn]

Prints one JSON object on stdout. MB/s count original bytes; timings are medians of N runs.
ZipNN runs per tensor, as its own zipnn_compress_safetensors.py does: each float tensor (F32, F16, BF16,
F8) compressed with its dtype and kept raw when that is smaller; everything else stays raw.
"""
import argparse
import json
import os
import statistics
import struct
import sys
import time

MB = 1e6
ZIPNN_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def median_time(fn, runs):
    times = []
    result = None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def zstd_level(data, level, runs):
    import zstandard
    compressor = zstandard.ZstdCompressor(level=level, threads=0)
    tc, packed = median_time(lambda: compressor.compress(data), runs)
    decompressor = zstandard.ZstdDecompressor()
    td, restored = median_time(lambda: decompressor.decompress(packed, max_output_size=len(data)), runs)
    assert restored == data, "zstd round trip failed"
    return dict(ratio=len(packed) / len(data), compress_MBps=len(data) / MB / tc, decompress_MBps=len(data) / MB / td)


def safetensors_tensors(data):
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    return base, [(name, t["dtype"], t["shape"], base + t["data_offsets"][0], base + t["data_offsets"][1])
                  for name, t in header.items()]


def zipnn_per_tensor(data, threads, runs):
    import numpy as np
    import torch
    from zipnn import ZipNN
    header_len, tensors = safetensors_tensors(data)
    total = header_len
    compress_s = decompress_s = 0.0
    for name, dtype, shape, start, end in tensors:
        raw = data[start:end]
        if dtype not in ZIPNN_DTYPES or end == start:
            total += end - start
            continue
        torch_dtype = getattr(torch, ZIPNN_DTYPES[dtype])
        view = torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).copy()).view(torch_dtype)
        tc_list, td_list = [], []
        for _ in range(runs):
            work = view.clone()  # ZipNN 0.5.4 reorders F32/BF16 input buffers in place
            z = ZipNN(input_format="torch", bytearray_dtype=torch_dtype, method="HUFFMAN", threads=threads)
            t0 = time.perf_counter()
            packed = z.compress(work)
            tc_list.append(time.perf_counter() - t0)
            z = ZipNN(input_format="torch", bytearray_dtype=torch_dtype, method="HUFFMAN", threads=threads)
            t0 = time.perf_counter()
            restored = z.decompress(packed)
            td_list.append(time.perf_counter() - t0)
        assert restored.contiguous().view(-1).view(torch.uint8).numpy().tobytes() == raw, f"zipnn failed on {name}"
        compress_s += statistics.median(tc_list)
        decompress_s += statistics.median(td_list)
        total += min(len(packed), end - start)
    return dict(ratio=total / len(data), compress_MBps=len(data) / MB / compress_s if compress_s else None,
                decompress_MBps=len(data) / MB / decompress_s if decompress_s else None)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", default="1")
    parser.add_argument("--zstd19", action="store_true")
    parser.add_argument("--no-zipnn", action="store_true")
    args = parser.parse_args()
    data = open(args.file, "rb").read()
    report = {"zstd3": zstd_level(data, 3, args.runs)}
    if args.zstd19:
        report["zstd19"] = zstd_level(data, 19, 1)
    if not args.no_zipnn and args.file.endswith(".safetensors"):
        import warnings
        warnings.filterwarnings("ignore")
        report["zipnn"] = {t: zipnn_per_tensor(data, int(t), args.runs) for t in args.threads.split(",")}
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
