#!/usr/bin/python3
"""Checks of the linserve-run command (tools/linserve_run), run by ctest.

usage: check_linserve_run.py CHECK LINSERVE_RUN DATA_DIR

CHECK is one of:
  score          score --json on the retnet fixture: per-token logprobs and
                 perplexity equal those of the golden logits (log-softmax in
                 float64) within 1e-4
  generate       greedy generate and prefill --piece 16 from the fixture's
                 tokens: exit 0, ids printed, the first one the argmax of the
                 golden last-token logits (or nothing when that is EOS)
  text           text input on the retnet fixture with its vocabulary padded
                 to the test tokenizer's 400 pieces (tests/tokenizer_data):
                 score --text and generate --prompt succeed, BOS first
  no-tokenizer   text input on a model without tokenizer.model: exit 1 and a
                 message naming tokenizer.model
  bad-flags      an unknown flag, a missing value, no command: usage, exit 2
The token file is written from golden.json at run time.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np


def run(args):
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def fail(message, result=None):
    if result is not None:
        message += "\nexit %d\nstdout:\n%s\nstderr:\n%s" % (
            result.returncode, result.stdout, result.stderr)
    sys.exit("FAIL: " + message)


def golden(model_dir):
    with open(os.path.join(model_dir, "golden.json")) as f:
        g = json.load(f)
    return g["tokens"], np.array(g["logits"], dtype=np.float64)


def check_score(binary, model_dir, tmp):
    tokens, logits = golden(model_dir)
    path = os.path.join(tmp, "tokens.txt")
    with open(path, "w") as f:
        f.write(" ".join(map(str, tokens)) + "\n")
    r = run([binary, "score", "--model", model_dir, "--tokens", path, "--json"])
    if r.returncode != 0:
        fail("score exited non-zero", r)
    out = json.loads(r.stdout)
    m = logits.max(axis=1, keepdims=True)
    log_softmax = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    want = np.array([log_softmax[i, tokens[i + 1]] for i in range(len(tokens) - 1)])
    got = np.array(out["logprobs"], dtype=np.float64)
    if out["tokens"] != tokens or got.shape != want.shape:
        fail("tokens or logprobs shape differ", r)
    worst = np.abs(got - want).max()
    ppl = float(np.exp(-want.mean()))
    print("worst logprob error %.3g, perplexity %.6f (golden %.6f)" %
          (worst, out["perplexity"], ppl))
    if worst > 1e-4 or abs(out["perplexity"] - ppl) > 1e-4 * ppl:
        fail("logprobs or perplexity differ from the goldens")


def check_generate(binary, model_dir, tmp):
    tokens, logits = golden(model_dir)
    path = os.path.join(tmp, "tokens.txt")
    with open(path, "w") as f:
        f.write("\n".join(map(str, tokens)))
    with open(os.path.join(model_dir, "config.json")) as f:
        eos = json.load(f).get("eos_token_id", 2)
    eos = eos if isinstance(eos, list) else [eos]
    first = int(np.argmax(logits[-1]))
    sampling = ["--temperature", "0", "--max-tokens", "4"]
    for args in (["generate", "--model", model_dir, "--tokens", path],
                 ["prefill", "--model", model_dir, "--tokens", path, "--piece",
                  "16"]):
        r = run([binary] + args + sampling)
        if r.returncode != 0:
            fail(" ".join(args) + " exited non-zero", r)
        ids = [int(x) for x in r.stdout.split()]
        if (first in eos and ids) or (first not in eos and
                                       (not ids or ids[0] != first)):
            fail("first generated id is not the golden argmax %d" % first, r)
        if "tokens/s" not in r.stderr:
            fail("no tokens/s on stderr", r)
        if args[0] == "prefill" and "peak RSS" not in r.stderr:
            fail("prefill printed no peak RSS", r)


def write_safetensors(path, tensors):
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, array in tensors.items():
        blob = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", name
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + begin:8 + n + end],
                                  dtype="<f4").reshape(info["shape"])
    return out


def check_text(binary, model_dir, tmp):
    tokenizer = os.path.join(os.path.dirname(model_dir), "..", "tokenizer_data",
                             "tokenizer.model")
    vocab = 400
    padded = os.path.join(tmp, "model")
    os.mkdir(padded)
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    old_vocab = config["vocab_size"]
    config["vocab_size"] = vocab
    with open(os.path.join(padded, "config.json"), "w") as f:
        json.dump(config, f)
    tensors = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    rng = np.random.default_rng(0)
    for name in ("model.embeddings.weight", "lm_head.weight"):
        extra = rng.normal(0, 0.02, (vocab - old_vocab, tensors[name].shape[1]))
        tensors[name] = np.concatenate([tensors[name], extra])
    write_safetensors(os.path.join(padded, "model.safetensors"), tensors)
    shutil.copy(tokenizer, os.path.join(padded, "tokenizer.model"))
    text = os.path.join(tmp, "text.txt")
    with open(text, "w") as f:
        f.write("Hello world, hello linserve.\n")
    r = run([binary, "score", "--model", padded, "--text", text, "--json"])
    if r.returncode != 0:
        fail("score --text exited non-zero", r)
    out = json.loads(r.stdout)
    if (out["tokens"][0] != config["bos_token_id"] or
            out["count"] != len(out["tokens"]) - 1 or
            not np.isfinite(out["perplexity"])):
        fail("score --text: want BOS first and n - 1 logprobs", r)
    r = run([binary, "generate", "--model", padded, "--prompt", "Hello",
             "--max-tokens", "8", "--temperature", "0"])
    if r.returncode != 0 or "tokens/s" not in r.stderr:
        fail("generate --prompt exited non-zero", r)
    print("generated: %r" % r.stdout)


def check_no_tokenizer(binary, model_dir, tmp):
    text = os.path.join(tmp, "text.txt")
    with open(text, "w") as f:
        f.write("Hello world\n")
    for args in (["score", "--model", model_dir, "--text", text],
                 ["generate", "--model", model_dir, "--prompt", "Hello"],
                 ["prefill", "--model", model_dir, "--file", text]):
        r = run([binary] + args)
        if r.returncode != 1 or "tokenizer.model" not in r.stderr:
            fail(" ".join(args[:1]) + ": want exit 1 naming tokenizer.model", r)


def check_bad_flags(binary, model_dir, tmp):
    for args in ([], ["frobnicate"], ["score", "--model", model_dir, "--bogus"],
                 ["score", "--model"], ["score", "--tokens", "x"],
                 ["generate", "--model", model_dir]):
        r = run([binary] + args)
        if r.returncode != 2 or "usage:" not in r.stderr:
            fail("%s: want usage and exit 2" % args, r)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    check, binary, data_dir = sys.argv[1:]
    checks = {"score": check_score, "generate": check_generate,
              "text": check_text, "no-tokenizer": check_no_tokenizer, "bad-flags": check_bad_flags}
    model_dir = os.path.join(data_dir, "retnet")
    if os.path.exists(os.path.join(model_dir, "tokenizer.model")):
        sys.exit("the retnet fixture is expected to have no tokenizer.model")
    with tempfile.TemporaryDirectory() as tmp:
        checks[check](binary, model_dir, tmp)
    print("ok")


if __name__ == "__main__":
    main()
