#!/usr/bin/python3
"""Prefill and decode speed of the PyTorch reference, for engine_bench's
comparison (issue 3 §6: "the same model run by tools/reference with PyTorch
on the same CPU, same thread count").

The same checkpoint directory bench/engine_bench reads, on the CPU with
torch.set_num_threads(--threads):

  prefill  one sequence of T tokens from a fresh state, in calls of
           --piece tokens, with the chunkwise core of spec §8.2
           (chunkwise.py, core="chunk"; the reference's fastest form) and,
           like the engine's LogitsMode::kLast, only the last token's logits
  decode   B sequences (each after a 16-token prefill), one token each per
           call, with the token-by-token recurrent core (the reference's
           decode path; for one token the chunk form is the same math)

Math in --dtype (float32 by default: the reference's own dtype; bfloat16
runs every op, the recurrent state included, in bf16, as a speed probe
only). Prints a table, and writes --json if asked.

    /usr/bin/python3 tools/reference/bench_reference.py --model models/default \
        --threads 2
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checkpoint  # noqa: E402
from reference_model import ReferenceModel, rms_norm  # noqa: E402


def forward_last(model, tokens, state):
    """ReferenceModel.forward without the lm_head on all but the last
    token: returns the last token's logits [B, vocab]."""
    c = model.config
    h = model.w["model.embeddings.weight"][tokens]
    mixer = getattr(model, "_" + c.model_type)
    for i, st in enumerate(state.layers):
        prefix = f"model.layers.{i}."
        x = rms_norm(h, model.w[prefix + "attn_norm.weight"], c.norm_eps)
        h = h + mixer(x, prefix + "attn.", st)
        st.offset += tokens.shape[1]
        x = rms_norm(h, model.w[prefix + "mlp_norm.weight"], c.norm_eps)
        h = h + model._mlp(x, prefix + "mlp.")
    h = rms_norm(h[:, -1], model.w["model.norm.weight"], c.norm_eps)
    return h @ model.w["lm_head.weight"].T


def prefill(model, tokens, piece):
    state = model.new_state(1)
    for begin in range(0, tokens.shape[1], piece):
        logits = forward_last(model, tokens[:, begin:begin + piece], state)
    return logits


def time_runs(fn, min_seconds, max_runs):
    """Median seconds of fn() over runs lasting min_seconds (>= 1 run)."""
    samples = []
    while not samples or (sum(samples) < min_seconds
                          and len(samples) < max_runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint directory")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtype", choices=("float32", "bfloat16"),
                        default="float32")
    parser.add_argument("--prefill", default="512,4096",
                        help="comma-separated token counts ('' for none)")
    parser.add_argument("--decode", default="1,8,64",
                        help="comma-separated batch sizes ('' for none)")
    parser.add_argument("--piece", type=int, default=4096,
                        help="tokens per prefill call")
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    config, _, tensors = checkpoint.load_checkpoint(args.model)
    vocab = config.vocab_size
    prefill_sizes = [int(x) for x in args.prefill.split(",") if x]
    batches = [int(x) for x in args.decode.split(",") if x]
    print(f"tools/reference bench_reference: {args.model} "
          f"({config.model_type}, D={config.hidden_size}, "
          f"{config.num_hidden_layers} layers), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, math in {args.dtype}")
    results = {"model": args.model, "threads": torch.get_num_threads(),
               "dtype": args.dtype, "torch": torch.__version__,
               "prefill": [], "decode": []}

    with torch.inference_mode():
        if prefill_sizes:
            model = ReferenceModel(config, tensors, dtype=dtype, core="chunk")
            tokens = torch.randint(0, vocab, (1, max(prefill_sizes)))
            print(f"\n== Prefill (chunkwise core, calls of {args.piece} "
                  "tokens, last-token logits)")
            print(f"  {'tokens':<8} {'tokens/s':>11} {'s':>10}")
            for t in prefill_sizes:
                if t <= 512:
                    prefill(model, tokens[:, :t], args.piece)  # warm-up
                s = time_runs(lambda: prefill(model, tokens[:, :t], args.piece),
                              args.min_seconds, 5)
                print(f"  {t:<8} {t / s:11.1f} {s:10.3f}", flush=True)
                results["prefill"].append({"tokens": t, "tokens_per_s": t / s})
            del model
        if batches:
            model = ReferenceModel(config, tensors, dtype=dtype,
                                   core="recurrent")
            print("\n== Decode (B sequences, one token each per call, "
                  "recurrent core)")
            print(f"  {'B':<4} {'tokens/s':>11} {'ms/step':>10}")
            for b in batches:
                state = model.new_state(b)
                forward_last(model, torch.randint(0, vocab, (b, 16)), state)
                step = torch.randint(0, vocab, (b, 1))
                forward_last(model, step, state)  # warm-up
                s = time_runs(lambda: forward_last(model, step, state),
                              args.min_seconds, 50)
                print(f"  {b:<4} {b / s:11.1f} {s * 1e3:10.2f}", flush=True)
                results["decode"].append({"batch": b, "tokens_per_s": b / s})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
