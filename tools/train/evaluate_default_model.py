#!/usr/bin/env python3
"""Evaluates models/default with the PyTorch reference (fp32, token by token)
and, when it is built, the C++ engine (`linserve-run score`); draws the loss
curve and writes samples. Prints JSON with the numbers for MODEL_CARD.md.

    /usr/bin/python3 tools/train/evaluate_default_model.py \
        --model models/default --log models/default/train_log.csv \
        --linserve-run build-run/tools/linserve_run/linserve-run
"""

import argparse
import csv
import json
import math
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import checkpoint  # noqa: E402


def spm(tool, model, text):
    flag = "--output_format=id" if tool == "spm_encode" else "--input_format=id"
    return subprocess.run([tool, "--model", model, flag], input=text, check=True,
                          capture_output=True, text=True).stdout.strip()


@torch.no_grad()
def reference_score(model, tokens):
    """Natural-log probs of tokens[1:] given the prefix, from a fresh state."""
    logits = model.forward(tokens[:-1], model.new_state(1))[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    lp = logp[torch.arange(len(tokens) - 1), torch.tensor(tokens[1:])]
    return lp


@torch.no_grad()
def sample(model, prompt_ids, n, temperature, top_k, seed):
    gen = torch.Generator().manual_seed(seed)
    state = model.new_state(1)
    logits = model.forward(prompt_ids, state)[0, -1]
    out = []
    for _ in range(n):
        if temperature == 0:
            tok = int(torch.argmax(logits))
        else:
            l = logits.double() / temperature
            if top_k:
                kth = torch.topk(l, top_k).values[-1]
                l = torch.where(l < kth, torch.full_like(l, -math.inf), l)
            tok = int(torch.multinomial(torch.softmax(l, -1), 1, generator=gen))
        if tok == 2:
            break
        out.append(tok)
        logits = model.forward([tok], state)[0, -1]
    return out


def plot(log_path, png, chosen_step=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps, train, vsteps, val, test = [], [], [], [], []
    with open(log_path) as f:
        for row in csv.DictReader(f):
            if row["train_loss"]:
                steps.append(int(row["step"]))
                train.append(float(row["train_loss"]))
            if row["val_loss"] and row["lr"]:
                vsteps.append(int(row["step"]))
                val.append(float(row["val_loss"]))
                test.append(float(row["test_loss"]))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    ax.plot(steps, train, lw=1, label="train (batch)")
    ax.plot(vsteps, val, "o-", ms=3, label="validation (from train split)")
    ax.plot(vsteps, test, "s-", ms=3, label="test (held-out chapters)")
    if chosen_step:
        ax.axvline(chosen_step, color="gray", ls="--", lw=1,
                   label=f"kept checkpoint (step {chosen_step}, best validation)")
    ax.set_xlabel("step (32 x 512 tokens)")
    ax.set_ylabel("cross entropy (nats/token)")
    ax.set_ylim(1.5, 8.5)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("models/default: gated_deltanet 7.6M on KJV")
    fig.tight_layout()
    fig.savefig(png)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--tokens", default="models/default/heldout_tokens.txt")
    ap.add_argument("--log", default=None)
    ap.add_argument("--png", default="models/default/loss_curve.png")
    ap.add_argument("--linserve-run", default="build-run/tools/linserve_run/linserve-run")
    ap.add_argument("--prompt", default="And God said")
    ap.add_argument("--chosen-step", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    res = {}
    tokens = [int(x) for x in open(args.tokens).read().split()]
    model = checkpoint.load_model(args.model, dtype=torch.float32)  # recurrent core
    lp = reference_score(model, tokens)
    res["scored_tokens"] = len(tokens) - 1
    res["reference_perplexity"] = math.exp(-float(lp.sum()) / len(lp))
    if os.path.exists(args.linserve_run):
        out = subprocess.run([args.linserve_run, "score", "--model", args.model,
                              "--tokens", args.tokens, "--json"],
                             check=True, capture_output=True, text=True).stdout
        cpp = json.loads(out)
        res["cpp_perplexity"] = cpp["perplexity"]
        cpp_lp = torch.tensor(cpp["logprobs"], dtype=torch.float64)
        res["max_abs_logprob_diff"] = float((cpp_lp - lp).abs().max())
        res["relative_ppl_diff"] = abs(cpp["perplexity"] / res["reference_perplexity"] - 1)
    tok_model = os.path.join(args.model, "tokenizer.model")
    prompt_ids = [1] + [int(x) for x in spm("spm_encode", tok_model, args.prompt).split()]
    res["prompt_ids"] = prompt_ids
    for name, temp, k in (("greedy", 0, 0), ("t0.7_top40_seed1", 0.7, 40)):
        ids = sample(model, prompt_ids, 80, temp, k, 1)
        res["sample_" + name] = spm("spm_decode", tok_model,
                                    " ".join(map(str, prompt_ids[1:] + ids)))
    if args.log:
        plot(args.log, args.png, args.chosen_step)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
