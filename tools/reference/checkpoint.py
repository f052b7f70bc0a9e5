"""Checkpoints in fla's Hugging Face format: random ones, saving, loading.

A checkpoint directory holds config.json and model.safetensors with the exact
tensor names of spec §1.2 and §3-§7 (and §10.3 for Performer).

    config, tensors = random_checkpoint("gated_deltanet", {"num_v_heads": 4}, seed=1)
    save_checkpoint("/tmp/gdn", config, tensors, dtype=torch.bfloat16)
    out = logits("/tmp/gdn", [5, 7, 11], dtype=torch.float64)   # [3, vocab]
"""

import json
import math
import os

import numpy as np
import torch

import fla_config
import safetensors_io
from reference_model import ReferenceModel

# Small sizes for random checkpoints; `overrides` replace them.
SMALL_CONFIG = {
    "vocab_size": 64,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "intermediate_size": 32,
    "num_heads": 2,
}
SMALL_FAMILY_CONFIG = {
    "gated_deltanet": {"head_dim": 16},
}

_NORM_WEIGHTS = {"attn_norm", "mlp_norm", "norm", "g_norm",
                 "g_norm_swish_gate", "o_norm"}

_TORCH_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16",
                      torch.float16: "float16"}


def orthogonal_random_features(rng, num_features, dim):
    """Performer's Omega [m, d] (§10.1): stacked transposed Q factors of
    Gaussian d x d matrices, rows rescaled by the norms of independent
    N(0, I_d) vectors (lucidrains' scaling=0)."""
    blocks = []
    for _ in range(math.ceil(num_features / dim)):
        q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        blocks.append(q.T)
    omega = np.concatenate(blocks)[:num_features]
    norms = np.linalg.norm(rng.standard_normal((num_features, dim)), axis=1)
    return norms[:, None] * omega


def _random_tensor(rng, name, shape, config):
    """Values for one tensor: O(1) activations everywhere (fan-in scaled
    weights, norm weights near 1) and fla-like gate parameters."""
    last = name.split(".")
    if last[-1] == "A_log":  # A ~ U(1, 16), as fla's init
        return np.log(rng.uniform(1, 16, shape))
    if last[-1] == "dt_bias":  # inverse softplus of dt ~ exp(U(ln 1e-3, ln 0.1))
        dt = np.exp(rng.uniform(math.log(1e-3), math.log(1e-1), shape))
        return dt + np.log(-np.expm1(-dt))
    if last[-1] == "projection":
        return orthogonal_random_features(rng, shape[0], shape[1])
    if last[-2] in _NORM_WEIGHTS and last[-1] == "weight":
        return 1 + 0.1 * rng.standard_normal(shape)
    if name == "model.embeddings.weight":
        return 0.5 * rng.standard_normal(shape)
    if name.endswith("gk_proj.1.bias"):  # mostly slow decays, some fast
        return rng.uniform(-1, 3, shape)
    if last[-1] == "bias":
        return 0.1 * rng.standard_normal(shape)
    if "conv1d" in name:  # [C, 1, W]
        return rng.standard_normal(shape) / math.sqrt(shape[-1])
    return rng.standard_normal(shape) / math.sqrt(shape[-1])  # [out, in]


def random_checkpoint(model_type, overrides=None, seed=0,
                      include_optional=False):
    """(config.json dict, name -> fp32 tensor) of a small random model.

    Sizes default to SMALL_CONFIG; every other field takes fla's default
    unless `overrides` sets it. A tied linear_attn feature map appears under
    both names (the same tensor), as in a torch state_dict. Optional tensors
    (Performer's untied feature_map_k.projection) only with include_optional.
    """
    overrides = {**SMALL_CONFIG, **SMALL_FAMILY_CONFIG.get(model_type, {}),
                 **(overrides or {})}
    raw = fla_config.full_config(model_type, overrides)
    config = fla_config.resolve_config(raw)
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape, kind in fla_config.expected_tensors(config):
        if kind.startswith("tied:") and kind[5:] in tensors:
            tensors[name] = tensors[kind[5:]]
            continue
        if kind == "optional" and not include_optional:
            continue
        values = _random_tensor(rng, name, shape, config)
        tensors[name] = torch.from_numpy(np.asarray(values, dtype=np.float64)
                                         .reshape(shape)).to(torch.float32)
    return raw, tensors


def save_checkpoint(directory, config, tensors, dtype=torch.float32,
                    keep_fp32=()):
    """Writes config.json and model.safetensors into `directory`.

    Every tensor is stored in `dtype` except the names in `keep_fp32` (e.g.
    GDN's A_log/dt_bias, which fla creates in fp32). Returns the tensors as
    stored (rounded), for computing goldens from exactly what is on disk.
    """
    os.makedirs(directory, exist_ok=True)
    config = dict(config)
    config["torch_dtype"] = _TORCH_DTYPE_NAMES[dtype]
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    dtypes = {name: torch.float32 if name in keep_fp32 else dtype
              for name in tensors}
    safetensors_io.write_safetensors(
        os.path.join(directory, "model.safetensors"), tensors, dtype=dtypes,
        metadata={"format": "pt"})
    return {name: t.to(dtypes[name]) for name, t in tensors.items()}


def check_tensors(config, tensors):
    """Raises ValueError on a missing, unexpected or wrongly shaped tensor."""
    expected = {name: (shape, kind)
                for name, shape, kind in fla_config.expected_tensors(config)}
    ignored = set()
    if config.tie_word_embeddings:
        ignored.add("lm_head.weight")
    for i in range(config.num_hidden_layers):
        if config.model_type == "gated_deltanet":  # legacy attn.D (§9.6)
            ignored.add(f"model.layers.{i}.attn.D")
    for name, (shape, kind) in expected.items():
        if name in tensors:
            if list(tensors[name].shape) != shape:
                raise ValueError(f"tensor {name}: shape {list(tensors[name].shape)}"
                                 f", expected {shape}")
        elif kind == "required" or (kind.startswith("tied:")
                                    and kind[5:] not in tensors):
            raise ValueError(f"missing tensor {name}")
    extra = sorted(set(tensors) - set(expected) - ignored)
    if extra:
        raise ValueError(f"unexpected tensors: {extra}")


def load_checkpoint(directory):
    """(ModelConfig, config.json dict, name -> tensor in its stored dtype)."""
    with open(os.path.join(directory, "config.json")) as f:
        raw = json.load(f)
    config = fla_config.resolve_config(raw)
    tensors, _ = safetensors_io.read_safetensors(
        os.path.join(directory, "model.safetensors"))
    check_tensors(config, tensors)
    return config, raw, tensors


def load_model(directory, dtype=torch.float32, device="cpu", **kwargs):
    config, _, tensors = load_checkpoint(directory)
    return ReferenceModel(config, tensors, dtype=dtype, device=device, **kwargs)


def logits(checkpoint, token_ids, dtype=torch.float32, device="cpu"):
    """Logits [T, vocab] (in `dtype`, on the CPU) of one sequence from a fresh
    state. `checkpoint` is a directory or a ReferenceModel."""
    model = checkpoint
    if not isinstance(model, ReferenceModel):
        model = load_model(checkpoint, dtype=dtype, device=device)
    return model.forward(token_ids, model.new_state(1))[0].cpu()
