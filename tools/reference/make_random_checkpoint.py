#!/usr/bin/python3
"""Writes a random-weight checkpoint at a published fla size, for benchmarks.

bench/engine_bench and bench_reference.py need models of realistic shape
(issue 3 §6) but not trained ones; these are written at benchmark time into
a temporary directory and never committed. The presets are flame's 340M
configs (fla-org/flame configs/*_340M.json, with fla's defaults for every
field they leave out):

  gdn-340m  gated_deltanet, D = 1024, 21 layers, 6 heads of d_k = 256,
            expand_v 2, vocab 32000, untied lm_head (about 512M parameters)
  gla-340m  gla, D = 1024, 24 layers, 4 heads, expand_k 0.5, expand_v 1,
            vocab 32000, tied embeddings (about 341M parameters)

Weights follow checkpoint.random_checkpoint (O(1) activations, fla-like
gates); stored in bf16 (GDN's A_log and dt_bias in f32, as fla keeps them).

    /usr/bin/python3 tools/reference/make_random_checkpoint.py gdn-340m /tmp/gdn
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checkpoint  # noqa: E402
import fla_config  # noqa: E402

PRESETS = {
    "gdn-340m": ("gated_deltanet", {
        "hidden_size": 1024, "num_hidden_layers": 21, "num_heads": 6,
        "head_dim": 256, "expand_v": 2, "vocab_size": 32000,
        "intermediate_size": None, "tie_word_embeddings": False}),
    "gla-340m": ("gla", {
        "hidden_size": 1024, "num_hidden_layers": 24, "num_heads": 4,
        "expand_k": 0.5, "expand_v": 1, "vocab_size": 32000,
        "intermediate_size": None, "tie_word_embeddings": True}),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("out", help="directory to write (created)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=("bf16", "f32"), default="bf16")
    args = parser.parse_args()

    start = time.time()
    model_type, overrides = PRESETS[args.preset]
    config, tensors = checkpoint.random_checkpoint(model_type, overrides,
                                                   seed=args.seed)
    if config.get("tie_word_embeddings"):
        tensors.pop("lm_head.weight", None)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    keep_fp32 = [n for n in tensors if n.endswith((".A_log", ".dt_bias"))]
    checkpoint.save_checkpoint(args.out, config, tensors, dtype=dtype,
                               keep_fp32=keep_fp32)
    params = sum(t.numel() for t in tensors.values())
    resolved = fla_config.resolve_config(config)
    print(f"{args.out}: {args.preset} ({model_type}, D={resolved.hidden_size}, "
          f"{resolved.num_hidden_layers} layers, MLP {resolved.intermediate_size}"
          f"), {params / 1e6:.1f}M parameters, {args.dtype}, "
          f"{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
