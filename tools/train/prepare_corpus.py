#!/usr/bin/env python3
"""Builds the default model's corpus, tokenizer and token ids.

Corpus: the King James Bible as Debian's bible-kjv-text package ships it
(/usr/lib/bible.data, read through the `bible` program of package bible-kjv).
Every verse is dumped one per line (`bible -f -l100000 Gen1:1-Rev22:21`), the
verse reference ("Ge1:1") is stripped, and the verses of one chapter are
joined with spaces into one document.

Split: by chapter. A chapter is held out (test) when the first byte of
md5("<book> <chapter>") is < 13 (13/256 = 5.1%), else it is training text.
Deterministic, no randomness.

Tokenizer: SentencePiece unigram, vocab 4096, byte_fallback, character
coverage 1.0, trained with Debian's `spm_train` on the training verses only,
single thread, unshuffled, so the model is reproducible.

Token ids: each chapter is encoded with `spm_encode` and framed as
[bos] + ids + [eos] (bos=1, eos=2 as in config.json); the streams are stored
as uint16 numpy arrays train.npy / test.npy.

    apt-get install -y bible-kjv sentencepiece
    /usr/bin/python3 tools/train/prepare_corpus.py --out .train_data \
        --tokenizer models/default/tokenizer.model
"""

import argparse
import hashlib
import os
import re
import shutil
import subprocess

import numpy as np

VOCAB = 4096
REF = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$")


def read_verses():
    text = subprocess.run(["bible", "-f", "-l100000", "Gen1:1-Rev22:21"],
                          check=True, capture_output=True, text=True).stdout
    chapters = {}  # (book, chapter) -> [verse text], in order
    order = []
    for line in text.splitlines():
        m = REF.match(line.strip())
        if not m:
            if line.strip():
                raise SystemExit(f"unparsed line: {line!r}")
            continue
        key = (m.group(1), int(m.group(2)))
        if key not in chapters:
            chapters[key] = []
            order.append(key)
        chapters[key].append(" ".join(m.group(4).split()))
    return [(key, chapters[key]) for key in order]


def is_test(key):
    return hashlib.md5(f"{key[0]} {key[1]}".encode()).digest()[0] < 13


def encode(model, docs, workdir, name):
    path = os.path.join(workdir, name + ".txt")
    with open(path, "w") as f:
        for doc in docs:
            f.write(doc + "\n")
    out = subprocess.run(["spm_encode", "--model", model, "--output_format=id",
                          "--input", path],
                         check=True, capture_output=True, text=True).stdout
    ids = []
    for line in out.splitlines():
        ids.append(1)
        ids.extend(int(x) for x in line.split())
        ids.append(2)
    return np.asarray(ids, dtype=np.uint16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".train_data")
    ap.add_argument("--tokenizer", default="models/default/tokenizer.model")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    chapters = read_verses()
    train = [c for c in chapters if not is_test(c[0])]
    test = [c for c in chapters if is_test(c[0])]
    print(f"{len(chapters)} chapters, {sum(len(v) for _, v in chapters)} verses;"
          f" train {len(train)} chapters, test {len(test)} chapters")
    verses_path = os.path.join(args.out, "train_verses.txt")
    with open(verses_path, "w") as f:
        for _, verses in train:
            for v in verses:
                f.write(v + "\n")
    prefix = os.path.join(args.out, "spm")
    subprocess.run([
        "spm_train", f"--input={verses_path}", f"--model_prefix={prefix}",
        f"--vocab_size={VOCAB}", "--model_type=unigram",
        "--character_coverage=1.0", "--byte_fallback=true",
        "--split_digits=true", "--input_sentence_size=0",
        "--shuffle_input_sentence=false", "--num_threads=1",
        "--unk_id=0", "--bos_id=1", "--eos_id=2", "--pad_id=-1",
        "--max_sentence_length=8192", "--minloglevel=1",
    ], check=True)
    os.makedirs(os.path.dirname(args.tokenizer) or ".", exist_ok=True)
    shutil.copyfile(prefix + ".model", args.tokenizer)
    for name, part in (("train", train), ("test", test)):
        docs = [" ".join(verses) for _, verses in part]
        with open(os.path.join(args.out, name + "_chapters.txt"), "w") as f:
            for (book, ch), _ in part:
                f.write(f"{book} {ch}\n")
        ids = encode(prefix + ".model", docs, args.out, name)
        np.save(os.path.join(args.out, name + ".npy"), ids)
        print(f"{name}: {len(part)} chapters, {len(ids)} tokens,"
              f" {sum(len(d) for d in docs)} characters")


if __name__ == "__main__":
    main()
