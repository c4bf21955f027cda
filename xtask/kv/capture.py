#!/usr/bin/env python3
"""Captures real K/V caches: runs SmolLM2-135M-Instruct (the corpus GGUF, dequantized by transformers) on real
prose and dumps every layer's keys (after RoPE, as inference servers keep them) and values.

usage: capture.py MODEL.gguf TEXT_FILE OUT_DIR [--tokens N]

Writes OUT_DIR/kv-{bf16,f16,fp8-e4m3}.safetensors: per layer `layers.{i}.key` and `layers.{i}.value` of shape
[tokens, kv_heads, head_dim]; FP8 files also hold `layers.{i}.key_scale` / `value_scale` (F32, per tensor, as
vLLM's fp8 K/V cache). The layout is recorded in the metadata. Prints next-token accuracy on the text as JSON.
"""
import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

FP8_MAX = 448.0  # largest finite E4M3FN value


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("text")
    parser.add_argument("out")
    parser.add_argument("--tokens", type=int, default=2048)
    args = parser.parse_args()
    model_path = Path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path.parent, gguf_file=model_path.name)
    model = AutoModelForCausalLM.from_pretrained(model_path.parent, gguf_file=model_path.name, torch_dtype=torch.float32)
    model.eval()
    text = Path(args.text).read_text()
    ids = tokenizer(text, return_tensors="pt").input_ids[:, : args.tokens]
    with torch.no_grad():
        output = model(ids, use_cache=True)
    predicted = output.logits[0, :-1].argmax(-1)
    accuracy = (predicted == ids[0, 1:]).float().mean().item()
    cache = output.past_key_values
    layers = []
    for index in range(len(cache.layers) if hasattr(cache, "layers") else len(cache)):
        if hasattr(cache, "layers"):
            key, value = cache.layers[index].keys, cache.layers[index].values
        else:
            key, value = cache[index]
        # [batch, kv_heads, tokens, head_dim] -> [tokens, kv_heads, head_dim]
        layers.append((key[0].permute(1, 0, 2).contiguous(), value[0].permute(1, 0, 2).contiguous()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokens, kv_heads, head_dim = layers[0][0].shape
    metadata = {
        "model": model_path.name,
        "text": Path(args.text).name,
        "tokens": str(tokens),
        "layout": "[tokens, kv_heads, head_dim]; keys after RoPE",
        "next_token_accuracy": f"{accuracy:.4f}",
    }
    for name, dtype in [("bf16", torch.bfloat16), ("f16", torch.float16)]:
        tensors = {}
        for index, (key, value) in enumerate(layers):
            tensors[f"layers.{index}.key"] = key.to(dtype)
            tensors[f"layers.{index}.value"] = value.to(dtype)
        save_file(tensors, str(out / f"kv-{name}.safetensors"), metadata=metadata)
    tensors = {}
    for index, (key, value) in enumerate(layers):
        for kind, tensor in [("key", key), ("value", value)]:
            scale = tensor.abs().max().clamp(min=1e-12) / FP8_MAX
            tensors[f"layers.{index}.{kind}"] = (tensor / scale).to(torch.float8_e4m3fn)
            tensors[f"layers.{index}.{kind}_scale"] = scale.reshape(1).to(torch.float32)
    save_file(tensors, str(out / "kv-fp8-e4m3.safetensors"), metadata={**metadata, "scale": "per tensor, amax / 448"})
    print(json.dumps({"tokens": tokens, "layers": len(layers), "kv_heads": kv_heads, "head_dim": head_dim,
                      "next_token_accuracy": accuracy, "chance": 1.0 / model.config.vocab_size}))


if __name__ == "__main__":
    main()
