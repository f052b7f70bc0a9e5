// A model's fingerprint: 128 bits that identify what a session state depends
// on, so a state exported by one replica is only ever imported by a replica
// running the same model (engine/state_format.h). Two 64-bit halves:
//   config  = XXH64 of CanonicalConfigText(config): the family and every
//             field the math reads, from the parsed ModelConfig (not the
//             JSON text, so key order, whitespace and ignored keys don't
//             count);
//   weights = XXH64 of a manifest of every checkpoint tensor in name order
//             (name, dtype, shape, byte count and the XXH64 of its bytes as
//             stored), so the sharding does not count but every bit does.
// Non-cryptographic: it catches mix-ups and damage, not forgery. Computed
// once by Model::Load (~0.14 s per GB of weights, docs/state-format.md).
//
//   ModelFingerprint fp = model->fingerprint();
//   std::string shown = fp.ToString();  // "3f1c...9a2e-77b0...c4d1"
#ifndef LINSERVE_ENGINE_FINGERPRINT_H_
#define LINSERVE_ENGINE_FINGERPRINT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/model_config.h"
#include "engine/safetensors.h"

namespace linserve::engine {

// XXH64 (Yann Collet's xxHash, 64-bit variant) of `size` bytes, bit-exact
// with the reference implementation; any alignment.
uint64_t Xxh64(const void* data, size_t size, uint64_t seed = 0);

struct ModelFingerprint {
  uint64_t config_hash = 0;
  uint64_t weights_hash = 0;

  // 32 lowercase hex digits: config half, '-', weights half.
  std::string ToString() const;
  bool operator==(const ModelFingerprint& o) const {
    return config_hash == o.config_hash && weights_hash == o.weights_hash;
  }
  bool operator!=(const ModelFingerprint& o) const { return !(*this == o); }
};

// One "name=value\n" line per math-relevant field, in a fixed order, enums
// by name, doubles with 17 significant digits. Leaves out what does not
// change a state or a logit: token ids (bos/eos/pad), attn_mode,
// max_position_embeddings, and hidden_ratio (only intermediate_size counts).
std::string CanonicalConfigText(const ModelConfig& config);

// XXH64 of CanonicalConfigText(config).
uint64_t ConfigHash(const ModelConfig& config);

// XXH64 of the checkpoint's tensor manifest (see the banner).
uint64_t WeightsHash(const CheckpointReader& checkpoint);

}  // namespace linserve::engine

#endif  // LINSERVE_ENGINE_FINGERPRINT_H_
