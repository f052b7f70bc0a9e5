#!/usr/bin/env python3
"""Trains models/default: a small gated_deltanet on the KJV token ids that
prepare_corpus.py writes.

The model math is tools/reference's: the weights are leaf tensors handed to
reference_model.ReferenceModel (core="chunk", the spec's §8.2 chunkwise GDN,
differentiable), so what comes out is an fla-format checkpoint by
construction (checkpoint.save_checkpoint). One change for speed: the short
conv runs as one F.conv1d over the sequence (FastConvModel._conv) instead of
the reference's token loop; --smoke checks that it, and the chunk core, give
the reference's recurrent logits.

    # CPU smoke test (tiny config, a few steps, equivalence checks):
    /usr/bin/python3 tools/train/train_default_model.py --smoke
    # The real run (on a CUDA machine, ~7.5 minutes):
    python3 tools/train/train_default_model.py --data .train_data \
        --out OUTDIR --minutes 7.5
"""

import argparse
import csv
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import checkpoint  # noqa: E402
import fla_config  # noqa: E402
import reference_model  # noqa: E402

MODEL = dict(vocab_size=4096, hidden_size=256, num_hidden_layers=6,
             num_heads=4, head_dim=64, expand_v=1, hidden_ratio=4,
             bos_token_id=1, eos_token_id=2, max_position_embeddings=2048)
TINY = dict(vocab_size=4096, hidden_size=64, num_hidden_layers=2,
            num_heads=2, head_dim=16, expand_v=1, hidden_ratio=4,
            bos_token_id=1, eos_token_id=2)
FP32_NAMES = ("A_log", "dt_bias")


class FastConvModel(reference_model.ReferenceModel):
    """The reference model with the causal short conv (§2.1) done as one
    depthwise F.conv1d: y_t = sum_j w[c, j] * in_{t-W+1+j}, where the inputs
    before the call come from the carried cache (the last W inputs)."""

    def _conv(self, x, attn, which, st, activation):
        weight = self.w[f"{attn}{which}_conv1d.weight"]       # [C, 1, W]
        cache = st.conv[which]                                 # [B, C, W]
        width = weight.shape[-1]
        full = torch.cat([cache[:, :, 1:], x.transpose(1, 2)], dim=-1)
        y = F.conv1d(full, weight, groups=weight.shape[0]).transpose(1, 2)
        st.conv[which] = torch.cat([cache, x.transpose(1, 2)], dim=-1)[:, :, -width:]
        return reference_model.silu(y) if activation == "silu" else y


def init_tensors(raw, seed):
    """fla-style training init: linear/embedding weights N(0, 0.02) (output
    projections scaled by 1/sqrt(2 L)), norm weights 1; A_log, dt_bias and the
    conv weights as checkpoint.random_checkpoint makes them (fla's init)."""
    config = fla_config.resolve_config(raw)
    _, rand = checkpoint.random_checkpoint("gated_deltanet", dict(raw), seed=seed)
    checkpoint.check_tensors(config, rand)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    layers = config.num_hidden_layers
    for name, t in rand.items():
        last = name.split(".")
        if last[-1] in FP32_NAMES or "conv1d" in name:
            out[name] = t.clone()
        elif "norm" in last[-2] and last[-1] == "weight":
            out[name] = torch.ones_like(t)
        elif last[-1] == "bias":
            out[name] = torch.zeros_like(t)
        else:
            std = 0.02
            if last[-2] in ("o_proj", "down_proj"):
                std /= math.sqrt(2 * layers)
            out[name] = torch.randn(t.shape, generator=gen) * std
    return config, out


def make_model(config, params, device, chunk_size=64):
    return FastConvModel(config, params, dtype=torch.float32, device=device,
                         core="chunk", chunk_size=chunk_size)


def batch_loss(model, tokens):
    """Mean next-token cross entropy of [B, T+1] tokens from a zero state."""
    logits = model.forward(tokens[:, :-1], model.new_state(tokens.shape[0]))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                           tokens[:, 1:].reshape(-1))


@torch.no_grad()
def eval_loss(model, stream, seq_len, device, batch=32):
    """Held-out loss over consecutive non-overlapping windows of the stream
    (each window starts from a zero state)."""
    n = (len(stream) - 1) // seq_len
    total, count = 0.0, 0
    for start in range(0, n, batch):
        idx = range(start, min(n, start + batch))
        rows = np.stack([stream[i * seq_len:i * seq_len + seq_len + 1] for i in idx])
        tok = torch.from_numpy(rows.astype(np.int64)).to(device)
        loss = batch_loss(model, tok)
        total += float(loss) * len(idx) * seq_len
        count += len(idx) * seq_len
    return total / count


def smoke_checks(config, params):
    """FastConvModel + chunk core == the reference's recurrent model."""
    tokens = torch.randint(0, config.vocab_size, (2, 70), generator=torch.Generator().manual_seed(3))
    ref = reference_model.ReferenceModel(config, params, dtype=torch.float64)
    fast = FastConvModel(config, params, dtype=torch.float64, core="chunk", chunk_size=16)
    a = ref.forward(tokens, ref.new_state(2))
    st = fast.new_state(2)
    b = torch.cat([fast.forward(tokens[:, :33], st), fast.forward(tokens[:, 33:], st)], dim=1)
    err = float((a - b).abs().max())
    print(f"smoke: fast conv + chunk core vs recurrent reference: max |dlogit| = {err:.2e}")
    assert err < 1e-9, err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".train_data")
    ap.add_argument("--out", default="/tmp/default_model")
    ap.add_argument("--minutes", type=float, default=7.5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true",
                    help="tiny config on the CPU, a few steps, checks")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    sizes = TINY if args.smoke else MODEL
    raw = fla_config.full_config("gated_deltanet", sizes)
    config, init = init_tensors(raw, args.seed)
    if args.smoke:
        smoke_checks(config, init)
        args.minutes, args.batch, args.seq_len = 0.15, 4, 64
        args.eval_every, args.log_every, args.warmup = 4, 1, 2
    params = {n: t.to(device).requires_grad_(True) for n, t in init.items()}
    nparams = sum(t.numel() for t in params.values())
    print(f"device {device}, torch {torch.__version__}, {nparams} parameters, "
          f"config {sizes}", flush=True)
    model = make_model(config, params, device)

    if args.smoke and not os.path.exists(os.path.join(args.data, "train.npy")):
        rng = np.random.default_rng(0)
        train = rng.integers(0, config.vocab_size, 20000).astype(np.uint16)
        test = rng.integers(0, config.vocab_size, 2000).astype(np.uint16)
    else:
        train = np.load(os.path.join(args.data, "train.npy"))
        test = np.load(os.path.join(args.data, "test.npy"))
    if args.smoke:
        test = test[:2 * args.seq_len + 1]
    # Checkpoint selection uses a validation set carved out of the training
    # stream (every 25th block of 4096 tokens), never the test split.
    block = 4096 if not args.smoke else 1024
    nblocks = len(train) // block
    val_ids = [i for i in range(nblocks) if i % 25 == 12]
    train_blocks = torch.tensor([i for i in range(nblocks) if i % 25 != 12])
    val = np.concatenate([train[i * block:(i + 1) * block] for i in val_ids])
    if args.smoke:
        val = val[:2 * args.seq_len + 1]
    print(f"train {len(train_blocks) * block} tokens in {len(train_blocks)} blocks,"
          f" validation {len(val)}, test {len(test)}", flush=True)
    train_t = torch.from_numpy(train.astype(np.int64))

    decay = [p for n, p in params.items() if p.dim() >= 2 and "conv1d" not in n]
    no_decay = [p for n, p in params.items() if not (p.dim() >= 2 and "conv1d" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "train_log.csv"), "w", newline="")
    writer = csv.writer(log)
    writer.writerow(["step", "tokens", "seconds", "lr", "train_loss", "val_loss", "test_loss"])
    gen = torch.Generator().manual_seed(args.seed)
    budget = args.minutes * 60
    start = time.time()
    step, best, best_step = 0, float("inf"), 0
    best_params = None
    running = None
    while True:
        elapsed = time.time() - start
        if elapsed >= budget:
            break
        frac = elapsed / budget
        if step < args.warmup:
            lr = args.lr * (step + 1) / args.warmup
        else:
            lr = args.lr * (args.min_lr_frac + (1 - args.min_lr_frac)
                            * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        pick = train_blocks[torch.randint(0, len(train_blocks), (args.batch,),
                                          generator=gen)]
        starts = pick * block + torch.randint(0, block - args.seq_len, (args.batch,),
                                              generator=gen)
        tok = torch.stack([train_t[s:s + args.seq_len + 1] for s in starts.tolist()]).to(device)
        loss = batch_loss(model, tok)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        step += 1
        lv = loss.item()
        running = lv if running is None else 0.9 * running + 0.1 * lv
        test_loss = val_loss = ""
        if step % args.eval_every == 0:
            val_loss = eval_loss(model, val, args.seq_len, device)
            test_loss = eval_loss(model, test, args.seq_len, device)
            if val_loss < best:
                best, best_step = val_loss, step
                best_params = {n: p.detach().clone() for n, p in params.items()}
        if step % args.log_every == 0 or test_loss != "":
            writer.writerow([step, step * args.batch * args.seq_len,
                             f"{time.time() - start:.1f}", f"{lr:.6g}", f"{lv:.4f}",
                             "" if val_loss == "" else f"{val_loss:.4f}",
                             "" if test_loss == "" else f"{test_loss:.4f}"])
            log.flush()
            print(f"step {step} t {time.time() - start:.0f}s lr {lr:.2e} loss {lv:.4f}"
                  f" (ema {running:.4f})"
                  + ("" if test_loss == "" else f" val {val_loss:.4f} test {test_loss:.4f}"),
                  flush=True)
    final_val = eval_loss(model, val, args.seq_len, device)
    final = eval_loss(model, test, args.seq_len, device)
    writer.writerow([step, step * args.batch * args.seq_len,
                     f"{time.time() - start:.1f}", "", "", f"{final_val:.4f}", f"{final:.4f}"])
    log.close()
    print(f"done: {step} steps, final val {final_val:.4f} test {final:.4f} (best val"
          f" {best:.4f} at step {best_step})", flush=True)
    if best_params is not None and best < final_val:
        print(f"keeping the best checkpoint (step {best_step})")
        chosen, chosen_step = best_params, best_step
    else:
        chosen, chosen_step = {n: p.detach() for n, p in params.items()}, step
    tensors = {n: t.float().cpu() for n, t in chosen.items()}
    keep = [n for n in tensors if n.split(".")[-1] in FP32_NAMES]
    stored = checkpoint.save_checkpoint(args.out, raw, tensors, dtype=torch.bfloat16,
                                        keep_fp32=keep)
    stored_model = make_model(config, {n: t.float().to(device) for n, t in stored.items()},
                              device)
    bf16_loss = eval_loss(stored_model, test, args.seq_len, device)
    with open(os.path.join(args.out, "train_summary.txt"), "w") as f:
        f.write(f"parameters {nparams}\nsteps {step}\nchosen_step {chosen_step}\n"
                f"batch {args.batch}\nseq_len {args.seq_len}\nseconds {time.time() - start:.1f}\n"
                f"final_val_loss {final_val:.4f}\nfinal_test_loss {final:.4f}\nbest_val_loss {best:.4f}\n"
                f"stored_bf16_test_loss {bf16_loss:.4f}\n"
                f"device {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}\n"
                f"torch {torch.__version__}\n")
    print(f"saved {args.out} (step {chosen_step}); bf16 weights test loss {bf16_loss:.4f}"
          f" (ppl {math.exp(bf16_loss):.2f})", flush=True)
    if args.smoke:
        loaded = checkpoint.load_model(args.out, dtype=torch.float32)
        print("smoke: checkpoint reloads with checkpoint.load_model:",
              loaded.config.model_type, "OK")


if __name__ == "__main__":
    main()
