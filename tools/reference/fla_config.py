"""config.json of the five fla families: fla's defaults, validation, derived sizes.

Spec (../shared/spec/model-families.md from the repository root): §1.1,
§1.4, §3.1, §4.1, §5.1, §6.1, §7.1 and §10.3 (Performer). `resolve_config(raw)` turns a config.json
dict into a `ModelConfig` holding the values the layers use;
`full_config(model_type, overrides)` writes out every field of a family the
way fla's `config.to_dict()` does, for new checkpoints.

    config = resolve_config(json.load(open("config.json")))
    config.head_k_dim, config.feature_dim, config.intermediate_size
"""

import dataclasses
import math

FAMILIES = ("linear_attn", "retnet", "gla", "delta_net", "gated_deltanet")

ARCHITECTURES = {
    "linear_attn": "LinearAttentionForCausalLM",
    "retnet": "RetNetForCausalLM",
    "gla": "GLAForCausalLM",
    "delta_net": "DeltaNetForCausalLM",
    "gated_deltanet": "GatedDeltaNetForCausalLM",
}

# Fields every family's config class stores, with fla's defaults (§1.1).
_SHARED_DEFAULTS = {
    "vocab_size": 32000,
    "hidden_size": 2048,
    "num_hidden_layers": 24,
    "hidden_ratio": 4,
    "intermediate_size": None,
    "hidden_act": "swish",
    "norm_eps": 1e-6,
    "fuse_norm": True,
    "fuse_swiglu": True,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": None,
    "attn": None,
    "max_position_embeddings": 2048,
    "use_cache": True,
    "initializer_range": 0.02,
    "fuse_cross_entropy": True,
}

# Per-family mixer fields and overrides of the shared ones (§3.1-§7.1).
_FAMILY_DEFAULTS = {
    "linear_attn": {
        "attn_mode": "fused_chunk",
        "expand_k": 1.0,
        "expand_v": 1.0,
        "num_heads": 4,
        "num_kv_heads": None,
        "feature_map": "elementwise_product",
        "tie_feature_map_qk": False,
        "norm_q": False,
        "norm_k": False,
        "norm_feature_map": False,
        "elementwise_affine": True,
    },
    "retnet": {
        "attn_mode": "chunk",
        "expand_k": 1.0,
        "expand_v": 2.0,
        "num_heads": 8,
        "num_kv_heads": None,
        "feature_map": None,
        "use_output_gate": True,
        "elementwise_affine": True,
        "hidden_ratio": 2,
    },
    "gla": {
        "attn_mode": "chunk",
        "expand_k": 0.5,
        "expand_v": 1.0,
        "num_heads": 4,
        "num_kv_heads": None,
        "feature_map": None,
        "use_short_conv": False,
        "conv_size": 4,
        "use_output_gate": True,
        "clamp_min": None,
        "elementwise_affine": True,
    },
    "delta_net": {
        "attn_mode": "chunk",
        "expand_k": 1.0,
        "expand_v": 1.0,
        "num_heads": 16,
        "use_beta": True,
        "use_gate": False,
        "use_short_conv": True,
        "conv_size": 4,
        "allow_neg_eigval": False,
        "qk_activation": "silu",
        "qk_norm": "l2",
    },
    "gated_deltanet": {
        "attn_mode": "chunk",
        "head_dim": 256,
        "num_heads": 6,
        "num_v_heads": None,
        "expand_v": 2.0,
        "use_gate": True,
        "use_short_conv": True,
        "conv_size": 4,
        "allow_neg_eigval": False,
        "num_hidden_layers": 21,
    },
}

_ATTN_MODES = {
    "linear_attn": ("chunk", "fused_chunk", "fused_recurrent"),
    "retnet": ("chunk", "fused_chunk", "parallel", "fused_recurrent"),
    "gla": ("chunk", "fused_recurrent", "fused_chunk"),
    "delta_net": ("chunk", "fused_recurrent", "fused_chunk"),
    "gated_deltanet": ("chunk", "fused_recurrent"),
}

LINEAR_FEATURE_MAPS = ("elementwise_product", "hedgehog", "t2r", "dpfp", "elu",
                       "relu", "identity", "performer")
# retnet/gla `feature_map`: HF ACT2FN names this reference implements.
QK_ACTIVATIONS = ("relu", "silu", "swish", "sigmoid", "linear")


class ConfigError(ValueError):
    """A config.json field is invalid or not supported; the message names it."""


def family_defaults(model_type):
    """Every config field of a family with fla's default value."""
    if model_type not in FAMILIES:
        raise ConfigError(f'field "model_type": unknown model type '
                          f'{model_type!r} (expected one of {FAMILIES})')
    return {**_SHARED_DEFAULTS, **_FAMILY_DEFAULTS[model_type]}


def full_config(model_type, overrides=None):
    """config.json content for a new checkpoint: defaults plus `overrides`."""
    config = {"architectures": [ARCHITECTURES[model_type]],
              "model_type": model_type}
    config.update(family_defaults(model_type))
    config.update(overrides or {})
    resolve_config(config)  # fail early on a bad combination
    return config


def mlp_width(hidden_size, hidden_ratio):
    """§1.4: int(D * ratio * 2/3) rounded up to a multiple of 256."""
    ratio = 4 if hidden_ratio is None else hidden_ratio
    width = int(hidden_size * ratio * 2 / 3)
    return 256 * ((width + 255) // 256)


@dataclasses.dataclass
class PerformerOptions:
    """§10.3. key_stabilizer is a number or the string "omega_bound"."""
    num_features: int = 0
    eps: float = 1e-4
    key_stabilizer: object = 0.0
    query_stabilizer: str = "rowmax"


@dataclasses.dataclass
class ModelConfig:
    model_type: str
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    intermediate_size: int
    hidden_act: str
    norm_eps: float
    fuse_norm: bool
    tie_word_embeddings: bool
    # Token mixer.
    num_heads: int = 0          # H: q (and GDN k) heads
    num_kv_heads: int = 0       # H_kv: k/v heads (linear_attn, retnet, gla)
    num_v_heads: int = 0        # HV: gated_deltanet value heads
    key_dim: int = 0            # H * d_k
    value_dim: int = 0          # H * d_v (GDN: HV * d_v)
    head_k_dim: int = 0         # d_k
    head_v_dim: int = 0         # d_v
    feature_dim: int = 0        # K_f: rows of the state per head
    elementwise_affine: bool = True
    use_output_gate: bool = False
    fused_norm_gate: bool = False   # retnet/gla: g_norm_swish_gate naming
    qk_feature_activation: str = None  # retnet/gla ACT2FN name or None
    clamp_min: float = None
    use_short_conv: bool = False
    conv_size: int = 4
    use_beta: bool = True
    use_gate: bool = False
    allow_neg_eigval: bool = False
    qk_activation: str = "silu"
    qk_norm: str = "l2"
    feature_map: str = None     # linear_attn
    tie_feature_map_qk: bool = False
    norm_q: bool = False
    norm_k: bool = False
    norm_feature_map: bool = False
    performer: PerformerOptions = None

    @property
    def kv_key_dim(self):
        return self.num_kv_heads * self.head_k_dim

    @property
    def kv_value_dim(self):
        return self.num_kv_heads * self.head_v_dim


def _require(condition, field, message):
    if not condition:
        raise ConfigError(f'field "{field}": {message}')


def resolve_config(raw):
    """Validates a config.json dict and returns a ModelConfig."""
    model_type = raw.get("model_type")
    defaults = family_defaults(model_type)

    def get(name):
        return raw[name] if name in raw else defaults[name]

    # What linserve does not support yet (spec preamble).
    _require(raw.get("attn") is None, "attn",
             "hybrid softmax-attention layers are not supported")
    _require(raw.get("attnres_block_size") is None, "attnres_block_size",
             "attention residuals are not supported")
    hidden_act = get("hidden_act")
    _require(hidden_act in ("swish", "silu"), "hidden_act",
             f"{hidden_act!r} is not supported (expected swish or silu)")
    if raw.get("share_conv_kernel") and raw.get("use_short_conv"):
        raise ConfigError('field "share_conv_kernel": not supported')

    D = get("hidden_size")
    intermediate = get("intermediate_size")
    if intermediate is None:
        intermediate = mlp_width(D, get("hidden_ratio"))
    c = ModelConfig(
        model_type=model_type,
        vocab_size=get("vocab_size"),
        hidden_size=D,
        num_hidden_layers=get("num_hidden_layers"),
        intermediate_size=intermediate,
        hidden_act=hidden_act,
        norm_eps=float(get("norm_eps")),
        fuse_norm=bool(get("fuse_norm")),
        tie_word_embeddings=bool(get("tie_word_embeddings")),
    )
    _require(get("attn_mode") in _ATTN_MODES[model_type], "attn_mode",
             f"unknown value {get('attn_mode')!r}")
    H = c.num_heads = get("num_heads")
    _require(isinstance(H, int) and H >= 1, "num_heads", "must be >= 1")

    if model_type in ("gla", "delta_net", "gated_deltanet"):
        c.use_short_conv = bool(get("use_short_conv"))
        c.conv_size = get("conv_size")
        _require(c.conv_size >= 1, "conv_size", "must be >= 1")

    if model_type == "gated_deltanet":
        head_dim = get("head_dim")
        c.num_v_heads = get("num_v_heads") or H
        _require(c.num_v_heads % H == 0, "num_v_heads",
                 f"{c.num_v_heads} must be a multiple of num_heads {H}")
        dv = head_dim * float(get("expand_v"))
        _require(dv == int(dv) and dv >= 1, "expand_v",
                 "head_dim * expand_v must be a whole number")
        c.num_kv_heads = H
        c.head_k_dim, c.head_v_dim = head_dim, int(dv)
        c.key_dim, c.value_dim = H * head_dim, c.num_v_heads * int(dv)
        c.feature_dim = head_dim
        c.use_gate = bool(get("use_gate"))
        c.allow_neg_eigval = bool(get("allow_neg_eigval"))
        return c

    c.key_dim = int(D * float(get("expand_k")))
    c.value_dim = int(D * float(get("expand_v")))
    _require(c.key_dim % H == 0 and c.value_dim % H == 0, "num_heads",
             f"key_dim {c.key_dim} and value_dim {c.value_dim} must be "
             f"divisible by num_heads {H}")
    c.head_k_dim, c.head_v_dim = c.key_dim // H, c.value_dim // H
    c.feature_dim = c.head_k_dim
    c.num_v_heads = H

    if model_type == "delta_net":
        c.num_kv_heads = H
        c.use_beta = bool(get("use_beta"))
        c.use_gate = bool(get("use_gate"))
        c.allow_neg_eigval = bool(get("allow_neg_eigval"))
        c.qk_activation = get("qk_activation")
        _require(c.qk_activation in ("silu", "relu", "elu", "identity"),
                 "qk_activation", f"unknown value {c.qk_activation!r}")
        c.qk_norm = get("qk_norm")
        _require(c.qk_norm in ("l2", "sum"), "qk_norm",
                 f"unknown value {c.qk_norm!r}")
        return c

    c.num_kv_heads = get("num_kv_heads") or H
    _require(H % c.num_kv_heads == 0, "num_kv_heads",
             f"num_heads {H} must be divisible by num_kv_heads "
             f"{c.num_kv_heads}")
    # fla's `elementwise_affine: bool | None`; None means no weight.
    c.elementwise_affine = bool(get("elementwise_affine"))

    if model_type == "linear_attn":
        _resolve_linear_attn(raw, get, c)
        return c

    c.qk_feature_activation = get("feature_map")
    _require(c.qk_feature_activation in (None,) + QK_ACTIVATIONS,
             "feature_map", f"unsupported activation "
             f"{c.qk_feature_activation!r}")
    c.use_output_gate = bool(get("use_output_gate"))
    c.fused_norm_gate = (hidden_act == "swish" and c.fuse_norm
                         and c.use_output_gate)
    if model_type == "retnet":
        _require(c.head_k_dim % 2 == 0 and c.head_k_dim <= 256, "num_heads",
                 "retnet needs an even head_k_dim <= 256 (rotary)")
    else:  # gla
        c.clamp_min = get("clamp_min")
    return c


def _resolve_linear_attn(raw, get, c):
    c.feature_map = get("feature_map")
    _require(c.feature_map in LINEAR_FEATURE_MAPS, "feature_map",
             f"unknown feature map {c.feature_map!r}")
    c.tie_feature_map_qk = bool(get("tie_feature_map_qk"))
    c.norm_q, c.norm_k = bool(get("norm_q")), bool(get("norm_k"))
    c.norm_feature_map = bool(get("norm_feature_map"))
    dk = c.head_k_dim
    c.feature_dim = {"hedgehog": 2 * dk, "dpfp": 8 * dk}.get(c.feature_map, dk)
    if c.feature_map != "performer":
        return
    _require(c.norm_feature_map, "norm_feature_map",
             'feature_map "performer" requires norm_feature_map: true')
    m = raw.get("performer_nb_features")
    if m is None:
        m = int(dk * math.log(dk))
    _require(isinstance(m, int) and m >= 1, "performer_nb_features",
             "must be a positive integer")
    key_stabilizer = raw.get("performer_key_stabilizer", 0.0)
    _require(key_stabilizer == "omega_bound" or (
        isinstance(key_stabilizer, (int, float))
        and not isinstance(key_stabilizer, bool)), "performer_key_stabilizer",
        'expected a number or "omega_bound"')
    query_stabilizer = raw.get("performer_query_stabilizer", "rowmax")
    _require(query_stabilizer in ("rowmax", "none"),
             "performer_query_stabilizer", 'expected "rowmax" or "none"')
    c.performer = PerformerOptions(
        num_features=m, eps=float(raw.get("performer_eps", 1e-4)),
        key_stabilizer=key_stabilizer, query_stabilizer=query_stabilizer)
    c.feature_dim = m


def expected_tensors(c):
    """[(name, shape, kind)] of every checkpoint tensor (§1.2 and §3-§7).

    kind is "required", "optional" (performer feature_map_k.projection) or
    "tied:<other name>" (a tied linear_attn feature-map tensor: either of
    the two names satisfies it). lm_head.weight is left out when tied.
    """
    D = c.hidden_size
    out = [("model.embeddings.weight", [c.vocab_size, D], "required")]
    for i in range(c.num_hidden_layers):
        layer = f"model.layers.{i}."
        attn = layer + "attn."

        def add(name, shape, kind="required", attn=attn):
            out.append((attn + name, shape, kind))

        def convs(q_width, k_width, v_width):
            if c.use_short_conv:
                add("q_conv1d.weight", [q_width, 1, c.conv_size])
                add("k_conv1d.weight", [k_width, 1, c.conv_size])
                add("v_conv1d.weight", [v_width, 1, c.conv_size])

        out.append((layer + "attn_norm.weight", [D], "required"))
        output_norm_name = ("g_norm_swish_gate.weight" if c.fused_norm_gate
                            else "g_norm.weight")

        if c.model_type == "linear_attn":
            add("q_proj.weight", [c.key_dim, D])
            add("k_proj.weight", [c.kv_key_dim, D])
            add("v_proj.weight", [c.kv_value_dim, D])
            dk = c.head_k_dim
            params = {
                "elementwise_product": [("layer1.weight", [dk, dk]),
                                        ("layer1.bias", [dk]),
                                        ("layer2.weight", [dk, dk]),
                                        ("layer2.bias", [dk])],
                "hedgehog": [("layer.weight", [dk, dk]),
                             ("layer.bias", [dk])],
                "t2r": [("layer.weight", [dk, dk])],
            }.get(c.feature_map, [])
            for qk, other in (("q", "k"), ("k", "q")):
                for param, shape in params:
                    kind = (f"tied:{attn}feature_map_{other}.{param}"
                            if c.tie_feature_map_qk else "required")
                    add(f"feature_map_{qk}.{param}", shape, kind)
            if c.feature_map == "performer":
                omega = [c.performer.num_features, dk]
                add("feature_map_q.projection", omega)
                add("feature_map_k.projection", omega, "optional")
            if c.elementwise_affine:
                add("norm.weight", [c.head_v_dim])
            add("o_proj.weight", [D, c.value_dim])
        elif c.model_type == "retnet":
            add("q_proj.weight", [c.key_dim, D])
            add("k_proj.weight", [c.kv_key_dim, D])
            add("v_proj.weight", [c.kv_value_dim, D])
            if c.use_output_gate:
                add("g_proj.weight", [c.value_dim, D])
            if c.elementwise_affine:
                add(output_norm_name, [c.head_v_dim])
            add("o_proj.weight", [D, c.value_dim])
        elif c.model_type == "gla":
            add("q_proj.weight", [c.key_dim, D])
            add("k_proj.weight", [c.kv_key_dim, D])
            add("v_proj.weight", [c.kv_value_dim, D])
            if c.use_output_gate:
                add("g_proj.weight", [c.value_dim, D])
            add("gk_proj.0.weight", [16, D])
            add("gk_proj.1.weight", [c.kv_key_dim, 16])
            add("gk_proj.1.bias", [c.kv_key_dim])
            convs(c.key_dim, c.kv_key_dim, c.kv_value_dim)
            if c.elementwise_affine:
                add(output_norm_name, [c.head_v_dim])
            add("o_proj.weight", [D, c.value_dim])
        elif c.model_type == "delta_net":
            add("q_proj.weight", [c.key_dim, D])
            add("k_proj.weight", [c.key_dim, D])
            add("v_proj.weight", [c.value_dim, D])
            if c.use_beta:
                add("b_proj.weight", [c.num_heads, D])
            convs(c.key_dim, c.key_dim, c.value_dim)
            if c.use_gate:
                add("g_proj.weight", [c.value_dim, D])
            add("o_norm.weight", [c.head_v_dim])
            add("o_proj.weight", [D, c.value_dim])
        else:  # gated_deltanet
            add("q_proj.weight", [c.key_dim, D])
            add("k_proj.weight", [c.key_dim, D])
            add("v_proj.weight", [c.value_dim, D])
            add("a_proj.weight", [c.num_v_heads, D])
            add("b_proj.weight", [c.num_v_heads, D])
            add("A_log", [c.num_v_heads])
            add("dt_bias", [c.num_v_heads])
            convs(c.key_dim, c.key_dim, c.value_dim)
            if c.use_gate:
                add("g_proj.weight", [c.value_dim, D])
            add("o_norm.weight", [c.head_v_dim])
            add("o_proj.weight", [D, c.value_dim])

        out.append((layer + "mlp_norm.weight", [D], "required"))
        out.append((layer + "mlp.gate_proj.weight", [c.intermediate_size, D],
                    "required"))
        out.append((layer + "mlp.up_proj.weight", [c.intermediate_size, D],
                    "required"))
        out.append((layer + "mlp.down_proj.weight", [D, c.intermediate_size],
                    "required"))
    out.append(("model.norm.weight", [D], "required"))
    if not c.tie_word_embeddings:
        out.append(("lm_head.weight", [c.vocab_size, D], "required"))
    return out
