// The per-ISA bodies of ChunkwiseForward (kernels/linear_attention.h). The
// public function resolves the call into a ChunkwiseProblem (strides filled
// in, per-thread scratch allocated) and hands it to the body of the active
// ISA. ChunkwiseProblem is plain data with no constructors, so the AVX-512
// body can read it without compiling any header code for AVX-512.
#ifndef LINSERVE_KERNELS_INTERNAL_LINEAR_ATTENTION_CHUNKWISE_H_
#define LINSERVE_KERNELS_INTERNAL_LINEAR_ATTENTION_CHUNKWISE_H_

#include <cstdint>

#include "kernels/linear_attention.h"

namespace linserve::kernels::internal {

struct ChunkwiseProblem {
  UpdateRule rule;
  bool normalize;  // kAdditive only.
  int num_heads;
  int key_dim;
  int value_dim;
  int chunk_size;  // >= 1 and <= num_tokens.
  int64_t num_tokens;
  const float* q;
  const float* k;
  const float* v;
  const float* log_decay;
  const float* beta;
  const float* head_log_decay;
  int64_t q_stride;  // Resolved: never 0.
  int64_t k_stride;
  int64_t v_stride;
  float* s;    // [H, K, V]
  float* z;    // [H, K] when normalize, else null.
  float* out;  // [T, H, V]
  // Whether the output is large enough that it would not stay in cache for
  // its reader anyway: then the AVX-512 body writes it with streaming stores.
  bool stream_out;
  // Each head's value columns are split into value_slices slices of
  // value_slice_width (the last may be narrower), worked on independently:
  // every rule is separable in the columns of V (Q K^T and the delta rules'
  // (I + L)^-1 are recomputed per slice). 1 and value_dim: no split. Never
  // split with normalize (z is one per head).
  int value_slices;
  int value_slice_width;
  // Delta rules and GLA with value_slices > 1: room for the first pass's
  // products (ChunkwiseProductFloats each) of every head and chunk of a
  // window of window_chunks chunks, head-major; null otherwise (each item
  // computes its own).
  float* chunk_products;
  int window_chunks;
  // num_threads blocks of scratch_floats_per_thread floats, one per OpenMP
  // thread of the item loop (thread i uses block i), for a slice's width.
  float* scratch;
  int64_t scratch_floats_per_thread;
  int num_threads;
};

// How ChunkwiseForward cuts each head's value columns into slices that
// threads work on independently: `slices` slices of `width` columns (a
// multiple of 16 unless it is all of them; the last slice may be narrower).
struct ValueSplit {
  int slices;
  int width;
};

// The split that minimises the slowest thread's share of one chunk's
// multiply-adds: items (head, slice) go out in rounds of `threads`, and every
// slice repeats its head's Gram matrices (and the delta rules' triangular
// solve), so more slices balance the threads better but cost more in all.
// Slices are at least kMinValueSlice (64) columns wide; one slice when
// threads <= 1.
ValueSplit ChooseValueSplit(UpdateRule rule, int num_heads, int key_dim,
                            int value_dim, int chunk, int threads);

// Caps the first pass's products at `floats` (0: the default, 2^21) so that
// tests can make a short call go in several windows.
void SetMaxChunkProductFloatsForTesting(int64_t floats);

// Floats of one (head, chunk)'s block of first-pass products (the state-free
// part of a chunk that split heads share: P and A for the delta rules, P,
// Q ⊙ e^B, the decayed K^T and e^{B_last} for GLA); 0 for a rule that does
// not share.
int64_t ChunkwiseProductFloats(UpdateRule rule, int key_dim, int chunk_size);

// Floats of scratch one thread needs for one head's chunk loop.
int64_t ChunkwiseScratchFloats(int key_dim, int value_dim, int chunk_size);

void ChunkwiseForwardPortable(const ChunkwiseProblem& problem);

}  // namespace linserve::kernels::internal

namespace linserve::kernels::avx512::internal {

// Defined only when LINSERVE_HAVE_AVX512_BODIES; called only when the CPU has
// AVX-512. Same scratch layout as the portable body.
void ChunkwiseForward(
    const linserve::kernels::internal::ChunkwiseProblem& problem);

}  // namespace linserve::kernels::avx512::internal

#endif  // LINSERVE_KERNELS_INTERNAL_LINEAR_ATTENTION_CHUNKWISE_H_
