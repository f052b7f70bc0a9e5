#!/usr/bin/env bash
# Regenerates tests/tokenizer_data/tokenizer.model (the tokenizer tests'
# SentencePiece model) from tests/tokenizer_data/corpus.txt. Deterministic:
# the output matches the committed file byte for byte. Needs
# libsentencepiece-dev (scripts/install-deps.sh) and a C++ compiler.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
g++ -std=c++17 -O1 -o "$tmp/make_test_tokenizer" \
  tools/make_test_tokenizer/make_test_tokenizer.cc \
  $(pkg-config --cflags --libs sentencepiece)
# Both paths are stored in the model's trainer_spec: keep them relative so
# that the output does not depend on where the repository lives.
"$tmp/make_test_tokenizer" tests/tokenizer_data/corpus.txt \
  tests/tokenizer_data/tokenizer
echo "wrote tests/tokenizer_data/tokenizer.model ($(stat -c %s tests/tokenizer_data/tokenizer.model) bytes)"
