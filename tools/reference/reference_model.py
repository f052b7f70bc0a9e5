"""Reference forward pass of the five fla families, token by token.

An independent PyTorch implementation of the spec
(../shared/spec/model-families.md from the repository root, §1-§7, §10): every recurrence is the naive per-token form, the golden
reference for exactness (§1.5). Position-wise work (projections, norms, MLP)
is done for all tokens of a call at once; the short convs and the state
recurrences step through the tokens one by one.

All math runs in one dtype (float32 by default, float64 for extra trust) on
one device. A `ModelState` holds one batch of sequences' state between calls:
per layer the recurrent state S in [K, V] layout (rows = key features), the
linear_attn normaliser z, the conv caches and retnet's position offset. Calls
with the carried state continue the sequences exactly.

    model = ReferenceModel(config, tensors, dtype=torch.float64)
    state = model.new_state()
    logits = model.forward(tokens[:10], state)   # [1, 10, vocab]
    logits = model.forward(tokens[10:], state)   # continues the sequence

`core="chunk"` swaps the token-by-token recurrences for the chunkwise forms
of spec §8.2 (chunkwise.py), everything else unchanged.
"""

import copy
import dataclasses

import torch
import torch.nn.functional as F

import chunkwise

# ---------------------------------------------------------------------------
# Elementwise building blocks (§0, §2).


def silu(x):
    return x * torch.sigmoid(x)


def rms_norm(x, weight, eps):
    """y = x / sqrt(mean(x^2) + eps) * w over the last axis (§1.3)."""
    y = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y if weight is None else y * weight


def l2norm(x):
    """x / sqrt(sum(x^2) + 1e-6) over the last axis; eps inside (§2.3)."""
    return x / torch.sqrt(x.pow(2).sum(-1, keepdim=True) + 1e-6)


def softplus_threshold20(y):
    """GDN softplus (§9.1): y itself above 20, else ln(1 + e^y)."""
    return torch.where(y > 20, y, torch.log1p(torch.exp(torch.clamp(y, max=20))))


def hf_activation(name, x):
    """The HF ACT2FN subset used by retnet/gla `feature_map` and gates."""
    if name in ("silu", "swish"):
        return silu(x)
    if name == "relu":
        return torch.relu(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "linear":
        return x
    raise ValueError(f"unsupported activation {name!r}")


def split_heads(x, num_heads):
    """[B, T, n*d] -> [B, T, n, d]; head h owns features [h*d, (h+1)*d)."""
    return x.reshape(*x.shape[:-1], num_heads, x.shape[-1] // num_heads)


def merge_heads(x):
    """[B, T, n, d] -> [B, T, n*d]."""
    return x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])


def repeat_heads(x, groups):
    """[B, T, n, d] -> [B, T, n*groups, d]: each head repeated `groups` times
    consecutively, so head h of the result is input head h // groups (§0)."""
    return x.repeat_interleave(groups, dim=-2)


def short_conv(x, weight, cache, activation):
    """Causal depthwise conv (§2.1), one token at a time.

    x [B, T, C]; weight [C, 1, W]; cache [B, C, W], the last W conv inputs
    (oldest first, zeros before the session). Returns (y [B, T, C], new
    cache). w[c, W-1] multiplies the current input.
    """
    w = weight[:, 0, :]
    outputs = []
    for t in range(x.shape[1]):
        cache = torch.cat([cache[:, :, 1:], x[:, t, :, None]], dim=-1)
        y = (cache * w).sum(-1)
        outputs.append(silu(y) if activation == "silu" else y)
    return torch.stack(outputs, dim=1), cache


def rotary(x, positions):
    """Rotate-half RoPE, base 10000, over the full head dim (§4.3).

    x [B, T, n, d]; positions [T] absolute. As in fla, inv_freq and the
    angles p * inv_freq are fp32. inv_freq is 1 / 10000^(2i/d) rounded once
    to fp32, and cos/sin are evaluated in x's dtype: fla's fp32 pow, cos and
    sin may differ by an ulp between libraries, and the goldens must not
    depend on which one ran.
    """
    d = x.shape[-1]
    exponents = torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d
    inv_freq = (1.0 / 10000.0 ** exponents).to(torch.float32)
    angles = torch.outer(positions.to(torch.float32), inv_freq)  # [T, d/2], fp32
    cos = angles.to(x.dtype).cos()[None, :, None, :]
    sin = angles.to(x.dtype).sin()[None, :, None, :]
    x1, x2 = x[..., :d // 2], x[..., d // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


# ---------------------------------------------------------------------------
# linear_attn feature maps (§3.3) and Performer (§10).


def dpfp(x, nu=4):
    """fla's DPFP: u = [relu(x), -relu(x)]; block j: u[i] * u[(i - j) mod 2d]."""
    r = torch.relu(x)
    u = torch.cat([r, -r], dim=-1)
    blocks = [u * torch.roll(u, shifts=j, dims=-1) for j in range(1, nu + 1)]
    return torch.cat(blocks, dim=-1)


def performer_features(x, omega, options, is_query):
    """FAVOR+ positive features (§10.1-§10.2) of x [..., d] with Omega [m, d].

    phi = m^-1/2 * (exp(a - h - c) + eps), a = Omega x~, h = |x~|^2 / 2,
    x~ = d^-1/4 x. Queries: c = max_j a_j of the token ("rowmax") or 0.
    Keys: c is the fixed performer_key_stabilizer, or max_i |omega_i|^2 / 2.
    """
    d = x.shape[-1]
    m = omega.shape[0]
    xt = x * d ** -0.25
    a = xt @ omega.T
    h = xt.pow(2).sum(-1, keepdim=True) / 2
    if is_query:
        if options.query_stabilizer == "rowmax":
            c = a.amax(-1, keepdim=True)
        else:
            c = 0.0
    elif options.key_stabilizer == "omega_bound":
        c = omega.pow(2).sum(-1).max() / 2
    else:
        c = float(options.key_stabilizer)
    return m ** -0.5 * (torch.exp(a - h - c) + options.eps)


# ---------------------------------------------------------------------------
# Token-by-token recurrences. Inputs are per head, [B, n, T, d]; the state S
# is [B, n, K, V]. q already carries its scale. Each returns the outputs
# [B, n, T, d_v] and the new state; the inputs are not modified.


def _read(S, q_t):
    """o = S^T q for every (batch, head): [B, n, K, V], [B, n, K] -> [B, n, V]."""
    return torch.einsum("bnkv,bnk->bnv", S, q_t)


def _outer(k_t, v_t):
    return k_t[..., :, None] * v_t[..., None, :]


def recurrent_linear_attn(q, k, v, S, z=None):
    """§3.4: S += k v^T; o = S^T q, divided by (q . z + 1e-10) when z is given
    (z accumulates k, including the current token)."""
    outputs = []
    for t in range(q.shape[2]):
        S = S + _outer(k[:, :, t], v[:, :, t])
        o = _read(S, q[:, :, t])
        if z is not None:
            z = z + k[:, :, t]
            o = o / ((q[:, :, t] * z).sum(-1, keepdim=True) + 1e-10)
        outputs.append(o)
    return torch.stack(outputs, dim=2), S, z


def recurrent_retention(q, k, v, log_decay, S):
    """§4.4: S = gamma_h S + k v^T, gamma_h = exp(log_decay[h]); o = S^T q."""
    decay = torch.exp(log_decay)[None, :, None, None]
    outputs = []
    for t in range(q.shape[2]):
        S = decay * S + _outer(k[:, :, t], v[:, :, t])
        outputs.append(_read(S, q[:, :, t]))
    return torch.stack(outputs, dim=2), S


def recurrent_gla(q, k, v, gk, S):
    """§5.3: S = diag(exp(gk_t)) S + k v^T (the gate scales key rows)."""
    outputs = []
    for t in range(q.shape[2]):
        S = torch.exp(gk[:, :, t])[..., None] * S + _outer(k[:, :, t], v[:, :, t])
        outputs.append(_read(S, q[:, :, t]))
    return torch.stack(outputs, dim=2), S


def recurrent_delta_rule(q, k, v, beta, S):
    """§6.3: u = beta (v - S^T k); S += k u^T; o = S^T q. beta [B, n, T]."""
    outputs = []
    for t in range(q.shape[2]):
        k_t = k[:, :, t]
        u = beta[:, :, t, None] * (v[:, :, t] - _read(S, k_t))
        S = S + _outer(k_t, u)
        outputs.append(_read(S, q[:, :, t]))
    return torch.stack(outputs, dim=2), S


def recurrent_gated_delta_rule(q, k, v, beta, gdec, S):
    """§7.3: S~ = exp(gdec) S; u = beta (v - S~^T k); S = S~ + k u^T."""
    outputs = []
    for t in range(q.shape[2]):
        k_t = k[:, :, t]
        S = torch.exp(gdec[:, :, t])[..., None, None] * S
        u = beta[:, :, t, None] * (v[:, :, t] - _read(S, k_t))
        S = S + _outer(k_t, u)
        outputs.append(_read(S, q[:, :, t]))
    return torch.stack(outputs, dim=2), S


RECURRENT_CORES = {
    "linear_attn": recurrent_linear_attn,
    "retention": recurrent_retention,
    "gla": recurrent_gla,
    "delta_rule": recurrent_delta_rule,
    "gated_delta_rule": recurrent_gated_delta_rule,
}
CHUNK_CORES = {
    "linear_attn": chunkwise.chunk_linear_attn,
    "retention": chunkwise.chunk_retention,
    "gla": chunkwise.chunk_gla,
    "delta_rule": chunkwise.chunk_delta_rule,
    "gated_delta_rule": chunkwise.chunk_gated_delta_rule,
}

# ---------------------------------------------------------------------------
# State.


@dataclasses.dataclass
class LayerState:
    S: torch.Tensor            # [B, heads, K_f, d_v], [K, V] layout
    z: torch.Tensor = None     # [B, H, K_f]: linear_attn normaliser
    conv: dict = None          # "q"/"k"/"v" -> [B, C, W], oldest input first
    offset: int = 0            # tokens processed so far (retnet rotary)


@dataclasses.dataclass
class ModelState:
    layers: list

    def clone(self):
        return copy.deepcopy(self)


# ---------------------------------------------------------------------------
# The model.


def _heads_first(x):
    """[B, T, n, d] -> [B, n, T, d] (the layout of the recurrences)."""
    return x.transpose(1, 2)


def _tokens_first(x):
    return x.transpose(1, 2)


class ReferenceModel:
    """The fla model of `config` (a fla_config.ModelConfig) with `tensors`
    (checkpoint name -> tensor, any float dtype), computing in `dtype`.

    core: "recurrent" (token by token, the reference) or "chunk" (the §8.2
    chunkwise forms with chunks of `chunk_size` tokens).
    """

    def __init__(self, config, tensors, dtype=torch.float32, device="cpu",
                 core="recurrent", chunk_size=64):
        if core not in ("recurrent", "chunk"):
            raise ValueError(f"unknown core {core!r}")
        self.config = config
        self.dtype = dtype
        self.device = torch.device(device)
        self.core = core
        self.chunk_size = chunk_size
        self.w = {name: t.to(device=self.device, dtype=dtype)
                  for name, t in tensors.items()}
        if config.tie_word_embeddings:
            self.w["lm_head.weight"] = self.w["model.embeddings.weight"]

    # -- state --------------------------------------------------------------

    def new_state(self, batch_size=1):
        """Zero state for `batch_size` sequences."""
        c = self.config
        heads = c.num_v_heads if c.model_type == "gated_deltanet" else c.num_heads

        def zeros(*shape):
            return torch.zeros(batch_size, *shape, dtype=self.dtype,
                               device=self.device)

        layers = []
        for _ in range(c.num_hidden_layers):
            layer = LayerState(S=zeros(heads, c.feature_dim, c.head_v_dim))
            if c.model_type == "linear_attn" and c.norm_feature_map:
                layer.z = zeros(c.num_heads, c.feature_dim)
            if c.use_short_conv:
                if c.model_type == "gla":
                    widths = (c.key_dim, c.kv_key_dim, c.kv_value_dim)
                else:
                    widths = (c.key_dim, c.key_dim, c.value_dim)
                layer.conv = {name: zeros(width, c.conv_size)
                              for name, width in zip("qkv", widths)}
            layers.append(layer)
        return ModelState(layers)

    # -- helpers -------------------------------------------------------------

    def _linear(self, x, name):
        y = x @ self.w[name + ".weight"].T
        bias = self.w.get(name + ".bias")
        return y if bias is None else y + bias

    def _run_core(self, name, *args):
        """Runs the recurrent or the chunkwise form of a core."""
        if self.core == "recurrent":
            return RECURRENT_CORES[name](*args)
        return CHUNK_CORES[name](*args, chunk_size=self.chunk_size)

    def _conv(self, x, attn, which, st, activation):
        y, st.conv[which] = short_conv(
            x, self.w[f"{attn}{which}_conv1d.weight"], st.conv[which], activation)
        return y

    # -- forward -------------------------------------------------------------

    def forward(self, tokens, state=None):
        """tokens: [T] or [B, T] ints. Returns fp-`dtype` logits [B, T, vocab]
        and updates `state` (a ModelState from new_state) in place."""
        c = self.config
        tokens = torch.as_tensor(tokens, dtype=torch.long, device=self.device)
        if tokens.dim() == 1:
            tokens = tokens[None]
        if state is None:
            state = self.new_state(tokens.shape[0])
        h = self.w["model.embeddings.weight"][tokens]
        mixers = {
            "linear_attn": self._linear_attn,
            "retnet": self._retnet,
            "gla": self._gla,
            "delta_net": self._delta_net,
            "gated_deltanet": self._gated_deltanet,
        }
        mixer = mixers[c.model_type]
        for i, st in enumerate(state.layers):
            prefix = f"model.layers.{i}."
            x = rms_norm(h, self.w[prefix + "attn_norm.weight"], c.norm_eps)
            h = h + mixer(x, prefix + "attn.", st)
            st.offset += tokens.shape[1]
            x = rms_norm(h, self.w[prefix + "mlp_norm.weight"], c.norm_eps)
            h = h + self._mlp(x, prefix + "mlp.")
        h = rms_norm(h, self.w["model.norm.weight"], c.norm_eps)
        return h @ self.w["lm_head.weight"].T

    def _mlp(self, x, prefix):
        """SwiGLU (§1.4)."""
        gate = self._linear(x, prefix + "gate_proj")
        up = self._linear(x, prefix + "up_proj")
        return self._linear(silu(gate) * up, prefix + "down_proj")

    def _gated_output(self, o, x, attn):
        """retnet/gla output (§4.4): per-head RMSNorm, times act(g) if gated."""
        c = self.config
        norm_name = "g_norm_swish_gate" if c.fused_norm_gate else "g_norm"
        weight = self.w[f"{attn}{norm_name}.weight"] if c.elementwise_affine else None
        o = rms_norm(o, weight, c.norm_eps)
        if c.use_output_gate:
            g = split_heads(self._linear(x, attn + "g_proj"), c.num_heads)
            o = o * hf_activation(c.hidden_act, g)
        return self._linear(merge_heads(o), attn + "o_proj")

    def _delta_output(self, o, x, attn, heads):
        """delta_net/GDN output: RMSNorm(o; o_norm), times silu(g) if use_gate."""
        c = self.config
        o = rms_norm(o, self.w[attn + "o_norm.weight"], c.norm_eps)
        if c.use_gate:
            o = o * silu(split_heads(self._linear(x, attn + "g_proj"), heads))
        return self._linear(merge_heads(o), attn + "o_proj")

    def _linear_attn(self, x, attn, st):
        """§3.4 (and §10 for the performer feature map)."""
        c = self.config
        groups = c.num_heads // c.num_kv_heads
        q = split_heads(self._linear(x, attn + "q_proj"), c.num_heads)
        k = split_heads(self._linear(x, attn + "k_proj"), c.num_kv_heads)
        v = split_heads(self._linear(x, attn + "v_proj"), c.num_kv_heads)
        k, v = repeat_heads(k, groups), repeat_heads(v, groups)
        q = self._feature_map(q, attn, "q")
        k = self._feature_map(k, attn, "k")
        if c.norm_q:
            q = q / (q.sum(-1, keepdim=True) + 1e-4)
        if c.norm_k:
            k = k / (k.sum(-1, keepdim=True) + 1e-4)
        scale = c.feature_dim ** -0.5  # the FEATURE dim, not d_k
        o, st.S, st.z = self._run_core(
            "linear_attn", _heads_first(q * scale), _heads_first(k),
            _heads_first(v), st.S, st.z)
        weight = self.w[attn + "norm.weight"] if c.elementwise_affine else None
        o = rms_norm(_tokens_first(o), weight, c.norm_eps)
        return self._linear(merge_heads(o), attn + "o_proj")

    def _feature_map_param(self, attn, which, param):
        """feature_map_{which}.{param}; a tied map may be stored under either
        name (§3.2 tie note)."""
        name = f"{attn}feature_map_{which}.{param}"
        if name not in self.w and self.config.tie_feature_map_qk:
            other = "k" if which == "q" else "q"
            name = f"{attn}feature_map_{other}.{param}"
        return self.w[name]

    def _feature_map(self, x, attn, which):
        c = self.config
        kind = c.feature_map

        def p(param):
            return self._feature_map_param(attn, which, param)

        if kind == "elementwise_product":
            return ((x @ p("layer1.weight").T + p("layer1.bias"))
                    * (x @ p("layer2.weight").T + p("layer2.bias")))
        if kind == "hedgehog":
            y = x @ p("layer.weight").T + p("layer.bias")
            return torch.softmax(torch.cat([2 * y, -2 * y], dim=-1), dim=-1)
        if kind == "t2r":
            return torch.relu(x @ p("layer.weight").T)
        if kind == "dpfp":
            return dpfp(x)
        if kind == "elu":
            return F.elu(x) + 1
        if kind == "relu":
            return torch.relu(x)
        if kind == "identity":
            return x
        if kind == "performer":
            omega = self.w.get(f"{attn}feature_map_{which}.projection",
                               self.w[f"{attn}feature_map_q.projection"])
            return performer_features(x, omega, c.performer, which == "q")
        raise ValueError(f"unknown feature map {kind!r}")

    def _retnet(self, x, attn, st):
        """§4.4."""
        c = self.config
        groups = c.num_heads // c.num_kv_heads
        q = split_heads(self._linear(x, attn + "q_proj"), c.num_heads)
        k = split_heads(self._linear(x, attn + "k_proj"), c.num_kv_heads)
        v = split_heads(self._linear(x, attn + "v_proj"), c.num_kv_heads)
        if c.qk_feature_activation is not None:
            q = hf_activation(c.qk_feature_activation, q)
            k = hf_activation(c.qk_feature_activation, k)
        positions = st.offset + torch.arange(x.shape[1], device=self.device)
        q, k = rotary(q, positions), rotary(k, positions)
        k, v = repeat_heads(k, groups), repeat_heads(v, groups)
        # gamma_h = 1 - 2^(-5-h); fla hands the kernel ln(gamma_h) in fp32
        # (here rounded once from float64, independent of the fp32 libm).
        h = torch.arange(c.num_heads, dtype=torch.float64, device=self.device)
        log_decay = torch.log(1 - torch.pow(2.0, -5.0 - h)).to(torch.float32)
        log_decay = log_decay.to(self.dtype)
        o, st.S = self._run_core(
            "retention", _heads_first(q * c.head_k_dim ** -0.5),
            _heads_first(k), _heads_first(v), log_decay, st.S)
        return self._gated_output(_tokens_first(o), x, attn)

    def _gla(self, x, attn, st):
        """§5.3."""
        c = self.config
        groups = c.num_heads // c.num_kv_heads
        q = self._linear(x, attn + "q_proj")
        k = self._linear(x, attn + "k_proj")
        v = self._linear(x, attn + "v_proj")
        if c.use_short_conv:
            q = self._conv(q, attn, "q", st, "silu")
            k = self._conv(k, attn, "k", st, "silu")
            v = self._conv(v, attn, "v", st, "silu")
        # The gate comes from the block input x, not from the conv outputs.
        gk = F.logsigmoid(self._linear(self._linear(x, attn + "gk_proj.0"),
                                       attn + "gk_proj.1")) / 16
        if c.clamp_min is not None:
            gk = torch.clamp(gk, min=c.clamp_min)
        q = split_heads(q, c.num_heads)
        k = repeat_heads(split_heads(k, c.num_kv_heads), groups)
        gk = repeat_heads(split_heads(gk, c.num_kv_heads), groups)
        v = repeat_heads(split_heads(v, c.num_kv_heads), groups)
        if c.qk_feature_activation is not None:
            q = hf_activation(c.qk_feature_activation, q)
            k = hf_activation(c.qk_feature_activation, k)
        o, st.S = self._run_core(
            "gla", _heads_first(q * c.head_k_dim ** -0.5), _heads_first(k),
            _heads_first(v), _heads_first(gk), st.S)
        return self._gated_output(_tokens_first(o), x, attn)

    def _delta_net(self, x, attn, st):
        """§6.3."""
        c = self.config
        q = self._linear(x, attn + "q_proj")
        k = self._linear(x, attn + "k_proj")
        v = self._linear(x, attn + "v_proj")
        if c.use_short_conv:
            qk_act = "silu" if c.qk_activation == "silu" else None
            q = self._conv(q, attn, "q", st, qk_act)
            k = self._conv(k, attn, "k", st, qk_act)
            v = self._conv(v, attn, "v", st, "silu")
        else:
            if c.qk_activation == "silu":
                q, k = silu(q), silu(k)
            v = silu(v)
        q, k = split_heads(q, c.num_heads), split_heads(k, c.num_heads)
        v = split_heads(v, c.num_heads)
        if c.qk_activation == "relu":
            q, k = torch.relu(q), torch.relu(k)
        elif c.qk_activation == "elu":
            q, k = F.elu(q) + 1, F.elu(k) + 1
        if c.qk_norm == "sum":
            q = q / q.sum(-1, keepdim=True)
            k = k / k.sum(-1, keepdim=True)
        if c.use_beta:
            beta = torch.sigmoid(self._linear(x, attn + "b_proj"))
        else:
            beta = torch.ones(*x.shape[:2], c.num_heads, dtype=self.dtype,
                              device=self.device)
        if c.allow_neg_eigval:
            beta = 2 * beta
        if c.qk_norm == "l2":
            q, k = l2norm(q), l2norm(k)
        o, st.S = self._run_core(
            "delta_rule", _heads_first(q * c.head_k_dim ** -0.5),
            _heads_first(k), _heads_first(v), beta.transpose(1, 2), st.S)
        return self._delta_output(_tokens_first(o), x, attn, c.num_heads)

    def _gated_deltanet(self, x, attn, st):
        """§7.3, with GVA: value head j uses q/k head j // (HV / H)."""
        c = self.config
        q = self._linear(x, attn + "q_proj")
        k = self._linear(x, attn + "k_proj")
        v = self._linear(x, attn + "v_proj")
        if c.use_short_conv:
            q = self._conv(q, attn, "q", st, "silu")
            k = self._conv(k, attn, "k", st, "silu")
            v = self._conv(v, attn, "v", st, "silu")
        else:
            q, k, v = silu(q), silu(k), silu(v)
        groups = c.num_v_heads // c.num_heads
        q = repeat_heads(split_heads(q, c.num_heads), groups)
        k = repeat_heads(split_heads(k, c.num_heads), groups)
        v = split_heads(v, c.num_v_heads)
        q = l2norm(q) * c.head_k_dim ** -0.5
        k = l2norm(k)
        beta = torch.sigmoid(self._linear(x, attn + "b_proj"))
        if c.allow_neg_eigval:
            beta = 2 * beta
        a = self._linear(x, attn + "a_proj")
        gdec = -torch.exp(self.w[attn + "A_log"]) * softplus_threshold20(
            a + self.w[attn + "dt_bias"])
        o, st.S = self._run_core(
            "gated_delta_rule", _heads_first(q), _heads_first(k),
            _heads_first(v), beta.transpose(1, 2), gdec.transpose(1, 2), st.S)
        return self._delta_output(_tokens_first(o), x, attn, c.num_v_heads)


def state_summary(state, batch_index=0):
    """Layout-independent numbers describing one sequence's state: per layer
    and head the Frobenius norm of S (same for [K, V] and [V, K] storage), z
    sums, conv-cache norms and the position offset."""
    layers = []
    for st in state.layers:
        entry = {
            "offset": st.offset,
            "recurrent_frobenius_norm_per_head": [
                float(x) for x in st.S[batch_index].double().flatten(1).norm(dim=1)],
        }
        if st.z is not None:
            entry["z_sum_per_head"] = [
                float(x) for x in st.z[batch_index].double().sum(-1)]
        if st.conv is not None:
            entry["conv_frobenius_norm"] = {
                name: float(cache[batch_index].double().norm())
                for name, cache in sorted(st.conv.items())}
        layers.append(entry)
    return {"layers": layers}
