#!/usr/bin/python3
"""Prints the reference logits of a checkpoint for a token sequence.

    /usr/bin/python3 tools/reference/reference_logits.py tests/data/retnet \\
        --tokens 5 7 11 --dtype float64 [--device cuda] [--top 3]

Output: JSON {"tokens": [...], "logits": [[...], ...]} (one row per token),
or with --top K the K most likely next tokens per position.
"""

import argparse
import json

import torch

import checkpoint


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="directory with config.json and "
                        "model.safetensors")
    parser.add_argument("--tokens", type=int, nargs="+", required=True)
    parser.add_argument("--dtype", choices=("float32", "float64"),
                        default="float32", help="math dtype (default float32)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--top", type=int, default=0,
                        help="print the top-K next tokens instead of logits")
    args = parser.parse_args(argv)

    out = checkpoint.logits(args.checkpoint, args.tokens,
                            dtype=getattr(torch, args.dtype), device=args.device)
    if args.top:
        values, indices = out.topk(args.top, dim=-1)
        for t, (v, i) in enumerate(zip(values.tolist(), indices.tolist())):
            pairs = ", ".join(f"{tok}: {val:.4f}" for tok, val in zip(i, v))
            print(f"{t:4d} after {args.tokens[t]:6d} -> {pairs}")
        return
    rows = ",\n".join("  " + json.dumps(row) for row in out.tolist())
    print(f'{{"tokens": {json.dumps(args.tokens)},\n"logits": [\n{rows}\n]}}')


if __name__ == "__main__":
    main()
