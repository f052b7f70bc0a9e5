// Trains the tiny SentencePiece model the tokenizer tests use
// (tests/tokenizer_data/tokenizer.model, and tokenizer.vocab for reading)
// from the committed corpus. A
// LLaMA-style setup at toy size: BPE, byte fallback (characters outside the
// vocabulary, e.g. emoji and most CJK, become <0xNN> byte pieces), identity
// normalization, whitespace kept as is, <unk>=0 <s>=1 </s>=2. Training on one
// thread is deterministic: rerunning reproduces the committed file byte for
// byte. Built and run by make_test_tokenizer.sh; not part of the CMake build.
//
//   make_test_tokenizer CORPUS OUTPUT_PREFIX   # writes OUTPUT_PREFIX.model
#include <iostream>
#include <string>

#include "sentencepiece_trainer.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: make_test_tokenizer CORPUS OUTPUT_PREFIX\n";
    return 2;
  }
  const std::string args =
      std::string("--input=") + argv[1] + " --model_prefix=" + argv[2] +
      " --model_type=bpe --vocab_size=400 --byte_fallback=true"
      " --character_coverage=0.9995 --normalization_rule_name=identity"
      " --remove_extra_whitespaces=false --add_dummy_prefix=true"
      " --split_digits=true --allow_whitespace_only_pieces=true"
      " --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --num_threads=1"
      " --minloglevel=1";
  const auto status = sentencepiece::SentencePieceTrainer::Train(args);
  if (!status.ok()) {
    std::cerr << "make_test_tokenizer: " << status.ToString() << "\n";
    return 1;
  }
  return 0;
}
