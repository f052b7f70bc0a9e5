#!/usr/bin/python3
"""Writes the golden fixtures of the C++ engine tests into tests/data/.

For each entry of FIXTURES: a tiny random checkpoint (config.json +
model.safetensors, fla's format) and golden.json with the logits of a fixed
70-token sequence, computed token by token in float64 from the weights as
stored (after rounding to bf16/f16 where the fixture stores those).
Deterministic: fixed seeds, so running it twice writes identical files.

    /usr/bin/python3 tools/reference/make_fixtures.py            # tests/data
    /usr/bin/python3 tools/reference/make_fixtures.py --out DIR  # elsewhere
    /usr/bin/python3 tools/reference/make_fixtures.py --only retnet gla
"""

import argparse
import dataclasses
import json
import os
import sys

import numpy as np
import torch

import checkpoint
from reference_model import ReferenceModel, state_summary

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "tests", "data")
GENERATOR = "tools/reference/make_fixtures.py"
NUM_TOKENS = 70  # more than one 64-token chunk
TOKEN_SEED = 20260901
SIGNIFICANT_DIGITS = 7


@dataclasses.dataclass
class Fixture:
    name: str
    model_type: str
    overrides: dict
    seed: int
    description: str
    dtype: torch.dtype = torch.float32
    keep_fp32: tuple = ()       # tensor names stored in F32 anyway
    drop: tuple = ()            # name suffixes left out (tied duplicates)
    include_optional: bool = False


FIXTURES = [
    # linear_attn: every feature map, and the options around them.
    Fixture("linear_attn_elementwise_product", "linear_attn", {}, 101,
            "default feature map (elementwise_product), untied q/k maps, no "
            "normaliser"),
    Fixture("linear_attn_hedgehog", "linear_attn",
            {"feature_map": "hedgehog", "tie_feature_map_qk": True,
             "norm_feature_map": True, "norm_q": True, "norm_k": True}, 102,
            "hedgehog (K_f = 2 d_k), tied q/k map stored only as "
            "feature_map_q.*, normaliser z, norm_q and norm_k",
            drop=("feature_map_k.layer.weight", "feature_map_k.layer.bias")),
    Fixture("linear_attn_t2r", "linear_attn",
            {"feature_map": "t2r", "tie_feature_map_qk": True}, 103,
            "t2r, tied q/k map stored only as feature_map_k.*",
            drop=("feature_map_q.layer.weight",)),
    Fixture("linear_attn_dpfp", "linear_attn", {"feature_map": "dpfp"}, 104,
            "dpfp (K_f = 8 d_k, signed features), no normaliser"),
    Fixture("linear_attn_elu_gqa", "linear_attn",
            {"feature_map": "elu", "num_heads": 4, "num_kv_heads": 2,
             "norm_feature_map": True, "norm_k": True}, 105,
            "elu+1, GQA (4 q heads, 2 kv heads), normaliser z, norm_k"),
    Fixture("linear_attn_relu", "linear_attn",
            {"feature_map": "relu", "hidden_size": 48, "vocab_size": 100,
             "num_heads": 3}, 106,
            "relu, odd sizes (D = 48, vocab 100, 3 heads of 16)"),
    Fixture("linear_attn_identity", "linear_attn",
            {"feature_map": "identity", "elementwise_affine": False}, 107,
            "identity feature map, output RMSNorm without weight"),
    Fixture("linear_attn_performer", "linear_attn",
            {"feature_map": "performer", "norm_feature_map": True}, 108,
            "Performer with defaults: m = int(d_k ln d_k) = 44, key "
            "stabiliser 0, query stabiliser rowmax, eps 1e-4; one shared "
            "projection"),
    Fixture("linear_attn_performer_omega_bound", "linear_attn",
            {"feature_map": "performer", "norm_feature_map": True,
             "performer_nb_features": 24,
             "performer_key_stabilizer": "omega_bound",
             "performer_query_stabilizer": "none", "performer_eps": 1e-3},
            109,
            "Performer, m = 24, key stabiliser omega_bound, no query "
            "stabiliser, eps 1e-3, untied feature_map_k.projection",
            include_optional=True),
    # retnet.
    Fixture("retnet", "retnet", {}, 201,
            "defaults: output gate, fused norm (g_norm_swish_gate), "
            "expand_v 2, rotary"),
    Fixture("retnet_no_gate", "retnet",
            {"use_output_gate": False, "feature_map": "swish"}, 202,
            "no output gate (g_norm), swish feature map on q and k"),
    Fixture("retnet_gqa_unfused", "retnet",
            {"fuse_norm": False, "num_heads": 4, "num_kv_heads": 2}, 203,
            "fuse_norm false (g_norm with the gate), GQA 4/2 (d_k 8), 4 "
            "decay rates"),
    # gla.
    Fixture("gla", "gla", {}, 301,
            "defaults: no short conv, output gate, expand_k 0.5"),
    Fixture("gla_conv_clamp_gqa", "gla",
            {"use_short_conv": True, "clamp_min": -0.05, "hidden_size": 48,
             "num_heads": 4, "num_kv_heads": 2, "vocab_size": 100}, 302,
            "short convs, clamp_min -0.05 (clamps part of the gates), GQA "
            "4/2 on k, gk and v, odd sizes"),
    Fixture("gla_tied_unfused", "gla",
            {"fuse_norm": False, "tie_word_embeddings": True,
             "feature_map": "relu"}, 303,
            "tie_word_embeddings (no lm_head), fuse_norm false (g_norm), "
            "relu feature map on q and k"),
    # delta_net.
    Fixture("delta_net", "delta_net", {}, 401,
            "defaults: short convs, qk silu, l2 norm, beta"),
    Fixture("delta_net_gate_negeig", "delta_net",
            {"use_gate": True, "allow_neg_eigval": True, "conv_size": 3}, 402,
            "output gate (gated RMSNorm), allow_neg_eigval, conv_size 3"),
    Fixture("delta_net_relu_sum", "delta_net",
            {"qk_activation": "relu", "qk_norm": "sum"}, 403,
            "qk_activation relu (conv without activation), qk_norm sum"),
    Fixture("delta_net_noconv_elu", "delta_net",
            {"use_short_conv": False, "qk_activation": "elu",
             "use_beta": False}, 404,
            "no short conv (v through silu), qk_activation elu+1, "
            "use_beta false (beta = 1)"),
    # gated_deltanet.
    Fixture("gated_deltanet", "gated_deltanet", {}, 501,
            "defaults: output gate, short convs, head_dim 16, expand_v 2"),
    Fixture("gated_deltanet_gva_bf16", "gated_deltanet",
            {"num_v_heads": 4, "allow_neg_eigval": True,
             "intermediate_size": None}, 502,
            "GVA (2 q/k heads, 4 value heads), allow_neg_eigval, MLP width "
            "from hidden_ratio (256), BF16 weights with A_log and dt_bias "
            "in F32",
            dtype=torch.bfloat16,
            keep_fp32=("A_log", "dt_bias")),
    Fixture("gated_deltanet_nogate_noconv_f16", "gated_deltanet",
            {"use_gate": False, "use_short_conv": False}, 503,
            "no output gate (plain o_norm), no short conv, all weights F16",
            dtype=torch.float16),
]


def fixture_tokens(vocab_size):
    rng = np.random.default_rng(TOKEN_SEED)
    return [int(t) for t in rng.integers(0, vocab_size, NUM_TOKENS)]


def _round(value):
    """float32 value rounded to SIGNIFICANT_DIGITS, as the shortest repr."""
    return float(f"{float(np.float32(value)):.{SIGNIFICANT_DIGITS}g}")


def _golden_json(golden):
    """JSON text with one logits row per line (small diffs, readable)."""
    head = {k: v for k, v in golden.items() if k != "logits"}
    lines = ["{"]
    for key, value in head.items():
        lines.append(f"  {json.dumps(key)}: {json.dumps(value)},")
    rows = [json.dumps(row, separators=(",", ":")) for row in golden["logits"]]
    lines.append('  "logits": [')
    lines.append(",\n".join("    " + row for row in rows))
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def make_fixture(fixture, out_dir, dtype_math=torch.float64):
    """Writes one fixture directory. Returns its golden dict and the largest
    |fp32-math logit - golden| (machine-dependent, so not in the file)."""
    directory = os.path.join(out_dir, fixture.name)
    raw, tensors = checkpoint.random_checkpoint(
        fixture.model_type, fixture.overrides, seed=fixture.seed,
        include_optional=fixture.include_optional)
    tensors = {name: t for name, t in tensors.items()
               if not name.endswith(fixture.drop)}
    keep = [name for name in tensors if name.split(".")[-1] in fixture.keep_fp32]
    stored = checkpoint.save_checkpoint(directory, raw, tensors,
                                        dtype=fixture.dtype, keep_fp32=keep)

    # Goldens from the checkpoint as written (reloaded, to test the reader).
    config, _, loaded = checkpoint.load_checkpoint(directory)
    for name, t in stored.items():
        assert torch.equal(loaded[name], t), name
    tokens = fixture_tokens(config.vocab_size)
    model = ReferenceModel(config, loaded, dtype=dtype_math)
    state = model.new_state()
    golden_logits = model.forward(tokens, state)[0].double()
    if not torch.isfinite(golden_logits).all() or golden_logits.abs().max() > 100:
        raise FloatingPointError(f"{fixture.name}: logits out of range")
    # How far plain fp32 math lands from the goldens: a hint for tolerances.
    logits32 = checkpoint.logits(ReferenceModel(config, loaded), tokens)
    fp32_diff = (logits32.double() - golden_logits).abs().max().item()

    golden = {
        "description": fixture.description,
        "model_type": fixture.model_type,
        "weights_dtype": str(fixture.dtype).replace("torch.", ""),
        "dtype_math": str(dtype_math).replace("torch.", ""),
        "generator": GENERATOR,
        "seed": fixture.seed,
        "num_tokens": len(tokens),
        "final_state_summary": _round_summary(state_summary(state)),
        "tokens": tokens,
        "logits": [[_round(v) for v in row.tolist()] for row in golden_logits],
    }
    with open(os.path.join(directory, "golden.json"), "w") as f:
        f.write(_golden_json(golden))
    return golden, fp32_diff


def _round_summary(summary):
    def walk(x):
        if isinstance(x, float):
            return _round(x)
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        return x
    return walk(summary)


def write_fixtures(out_dir, only=None, dtype_math=torch.float64, log=None):
    """Writes the fixtures named in `only` (default: all) into out_dir."""
    torch.set_num_threads(1)  # one summation order, run after run
    for fixture in FIXTURES:
        if only and fixture.name not in only:
            continue
        _, fp32_diff = make_fixture(fixture, out_dir, dtype_math)
        if log:
            log(f"{fixture.name:40s} fp32 math vs goldens: max |diff| "
                f"{fp32_diff:.2e}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="output directory (default: tests/data)")
    parser.add_argument("--only", nargs="*", help="fixture names to write")
    parser.add_argument("--dtype", choices=("float64", "float32"),
                        default="float64", help="math dtype of the goldens")
    args = parser.parse_args(argv)
    names = {f.name for f in FIXTURES}
    for name in args.only or []:
        if name not in names:
            sys.exit(f"unknown fixture {name!r}; known: {sorted(names)}")
    write_fixtures(args.out, args.only, getattr(torch, args.dtype), log=print)


if __name__ == "__main__":
    main()
