#!/usr/bin/python3
"""Self-checks of the reference implementation (plain unittest).

    /usr/bin/python3 tools/reference/test_reference.py [-v]

Covers: safetensors round trips; building blocks against independent
formulations (torch conv1d, complex rotation, explicit DPFP indices); state
carried across calls equals one call; the chunkwise forms of spec §8.2 equal
the token-by-token recurrences (per core with random initial states, and for
whole models); checkpoint naming and validation; and that make_fixtures.py
reproduces the committed tests/data fixtures.
"""

import json
import math
import os
import sys
import tempfile
import unittest

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checkpoint  # noqa: E402
import chunkwise  # noqa: E402
import fla_config  # noqa: E402
import make_fixtures  # noqa: E402
import reference_model as rm  # noqa: E402
import safetensors_io  # noqa: E402

F64 = torch.float64


def _model(fixture, dtype=F64, **kwargs):
    raw, tensors = checkpoint.random_checkpoint(
        fixture.model_type, fixture.overrides, seed=fixture.seed,
        include_optional=fixture.include_optional)
    return rm.ReferenceModel(fla_config.resolve_config(raw), tensors,
                             dtype=dtype, **kwargs)


class SafetensorsTest(unittest.TestCase):

    def test_round_trip_every_dtype(self):
        g = torch.Generator().manual_seed(0)
        tensors = {"a.weight": torch.randn(3, 5, generator=g),
                   "b": torch.randn(7, generator=g),
                   "c.conv": torch.randn(4, 1, 3, generator=g),
                   "empty": torch.zeros(0, 4)}
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.safetensors")
            for dtype in (torch.float32, torch.bfloat16, torch.float16):
                safetensors_io.write_safetensors(path, tensors, dtype=dtype,
                                                 metadata={"format": "pt"})
                read, metadata = safetensors_io.read_safetensors(path)
                self.assertEqual(metadata, {"format": "pt"})
                self.assertEqual(sorted(read), sorted(tensors))
                for name, t in tensors.items():
                    self.assertEqual(read[name].dtype, dtype)
                    self.assertTrue(torch.equal(read[name], t.to(dtype)), name)
                with open(path, "rb") as f:
                    header_len = int.from_bytes(f.read(8), "little")
                self.assertEqual(header_len % 8, 0)

    def test_mixed_dtypes(self):
        tensors = {"x": torch.tensor([1.0, 2.5]), "y": torch.tensor([3.0])}
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.safetensors")
            safetensors_io.write_safetensors(
                path, tensors, dtype={"x": torch.bfloat16})
            self.assertEqual(safetensors_io.read_dtypes(path),
                             {"x": "BF16", "y": "F32"})

    def test_bf16_bits_are_round_to_nearest_even(self):
        # 1 + 2^-8 lies halfway between two bf16 values: rounds to even (1.0).
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.safetensors")
            safetensors_io.write_safetensors(
                path, {"x": torch.tensor([1 + 2 ** -8, 1 + 3 * 2 ** -8])},
                dtype=torch.bfloat16)
            with open(path, "rb") as f:
                blob = f.read()
            header_len = int.from_bytes(blob[:8], "little")
            bits = np.frombuffer(blob[8 + header_len:], dtype="<u2")
            self.assertEqual(list(bits), [0x3F80, 0x3F82])

    def test_rejects_bad_offsets(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.safetensors")
            header = json.dumps({"w": {"dtype": "F32", "shape": [2],
                                       "data_offsets": [0, 12]}}).encode()
            with open(path, "wb") as f:
                f.write(len(header).to_bytes(8, "little") + header + bytes(12))
            with self.assertRaisesRegex(ValueError, "data_offsets"):
                safetensors_io.read_safetensors(path)


class BuildingBlocksTest(unittest.TestCase):

    def test_short_conv_matches_torch_conv1d_and_carries_cache(self):
        g = torch.Generator().manual_seed(1)
        B, T, C, W = 2, 9, 5, 4
        x = torch.randn(B, T, C, generator=g, dtype=F64)
        weight = torch.randn(C, 1, W, generator=g, dtype=F64)
        # torch cross-correlation with W-1 zeros on the left: w[c, W-1]
        # multiplies the current input (§2.1).
        expected = F.conv1d(F.pad(x.transpose(1, 2), (W - 1, 0)), weight,
                            groups=C).transpose(1, 2)
        cache = torch.zeros(B, C, W, dtype=F64)
        pieces = []
        for rows in (slice(0, 2), slice(2, 3), slice(3, 9)):
            y, cache = rm.short_conv(x[:, rows], weight, cache, None)
            pieces.append(y)
        torch.testing.assert_close(torch.cat(pieces, 1), expected)
        torch.testing.assert_close(cache, x[:, -W:].transpose(1, 2))

    def test_rotary_is_a_complex_rotation(self):
        g = torch.Generator().manual_seed(2)
        d = 8
        x = torch.randn(1, 5, 3, d, generator=g, dtype=F64)
        positions = torch.arange(7, 12)
        y = rm.rotary(x, positions)
        theta = 10000.0 ** (-torch.arange(0, d, 2, dtype=F64) / d)
        z = torch.complex(x[..., :d // 2], x[..., d // 2:])
        z = z * torch.exp(1j * positions[None, :, None, None].to(F64) * theta)
        expected = torch.cat([z.real, z.imag], dim=-1)
        torch.testing.assert_close(y, expected, rtol=0, atol=1e-5)  # fp32 angles

    def test_dpfp_explicit_indices(self):
        x = torch.randn(3, 4, dtype=F64)
        phi = rm.dpfp(x)
        u = torch.cat([x.relu(), -x.relu()], dim=-1)
        n = u.shape[-1]
        for j in range(1, 5):
            for i in range(n):
                torch.testing.assert_close(phi[:, (j - 1) * n + i],
                                           u[:, i] * u[:, (i - j) % n])

    def test_repeat_heads_maps_head_h_to_kv_head_h_div_g(self):
        x = torch.arange(3)[None, None, :, None].expand(1, 1, 3, 2)
        y = rm.repeat_heads(x, 4)
        self.assertEqual(y[0, 0, :, 0].tolist(), [h // 4 for h in range(12)])

    def test_softplus_threshold(self):
        y = torch.tensor([-30.0, 0.0, 19.5, 20.0, 20.5, 80.0], dtype=F64)
        expected = torch.tensor([math.log1p(math.exp(v)) if v <= 20 else v
                                 for v in y.tolist()], dtype=F64)
        torch.testing.assert_close(rm.softplus_threshold20(y), expected)

    def test_performer_key_features_bounded_by_omega_bound(self):
        g = torch.Generator().manual_seed(3)
        omega = torch.randn(24, 16, generator=g, dtype=F64)
        x = 5 * torch.randn(100, 16, generator=g, dtype=F64)
        options = fla_config.PerformerOptions(24, 1e-4, "omega_bound", "none")
        phi = rm.performer_features(x, omega, options, is_query=False)
        self.assertLessEqual(phi.max().item(), 24 ** -0.5 * (1 + 1e-4))
        self.assertGreater(phi.min().item(), 0)


class ConfigTest(unittest.TestCase):

    def test_mlp_width_rule(self):
        self.assertEqual(fla_config.mlp_width(2048, 4), 5632)
        self.assertEqual(fla_config.mlp_width(2048, 2), 2816)
        self.assertEqual(fla_config.mlp_width(2048, None), 5632)

    def test_family_defaults(self):
        gdn = fla_config.resolve_config({"model_type": "gated_deltanet"})
        self.assertEqual((gdn.key_dim, gdn.head_v_dim, gdn.value_dim,
                          gdn.num_hidden_layers), (1536, 512, 3072, 21))
        retnet = fla_config.resolve_config({"model_type": "retnet"})
        self.assertEqual((retnet.intermediate_size, retnet.head_k_dim,
                          retnet.head_v_dim), (2816, 256, 512))
        gla = fla_config.resolve_config({"model_type": "gla"})
        self.assertEqual((gla.head_k_dim, gla.use_short_conv), (256, False))
        performer = fla_config.resolve_config(
            {"model_type": "linear_attn", "hidden_size": 64, "num_heads": 4,
             "feature_map": "performer", "norm_feature_map": True})
        self.assertEqual(performer.feature_dim, int(16 * math.log(16)))

    def test_output_norm_name_rule(self):
        def names(**overrides):
            raw = {"model_type": "retnet", "hidden_size": 32, "num_heads": 2,
                   "num_hidden_layers": 1, **overrides}
            return {n for n, _, _ in fla_config.expected_tensors(
                fla_config.resolve_config(raw)) if "g_norm" in n}
        self.assertEqual(names(), {"model.layers.0.attn.g_norm_swish_gate.weight"})
        self.assertEqual(names(fuse_norm=False), {"model.layers.0.attn.g_norm.weight"})
        self.assertEqual(names(use_output_gate=False),
                         {"model.layers.0.attn.g_norm.weight"})
        self.assertEqual(names(hidden_act="silu"), {"model.layers.0.attn.g_norm.weight"})
        self.assertEqual(names(elementwise_affine=None), set())

    def test_refusals_name_the_field(self):
        for raw, field in [
                ({"model_type": "gla", "attn": {"layers": [0], "num_heads": 2}}, "attn"),
                ({"model_type": "gla", "attnres_block_size": 2}, "attnres_block_size"),
                ({"model_type": "delta_net", "hidden_act": "powlu"}, "hidden_act"),
                ({"model_type": "linear_attn", "feature_map": "performer"},
                 "norm_feature_map"),
                ({"model_type": "retnet", "num_kv_heads": 3}, "num_kv_heads")]:
            with self.assertRaisesRegex(fla_config.ConfigError, field):
                fla_config.resolve_config(raw)


class CheckpointTest(unittest.TestCase):

    def test_save_load_and_validation(self):
        raw, tensors = checkpoint.random_checkpoint(
            "linear_attn", {"feature_map": "hedgehog", "tie_feature_map_qk": True})
        with tempfile.TemporaryDirectory() as d:
            # A tied map stored under one name only is accepted.
            only_k = {n: t for n, t in tensors.items()
                      if "feature_map_q" not in n}
            checkpoint.save_checkpoint(d, raw, only_k)
            config, _, loaded = checkpoint.load_checkpoint(d)
            out = checkpoint.logits(d, [1, 2, 3])
            self.assertEqual(tuple(out.shape), (3, config.vocab_size))

            broken = dict(only_k)
            del broken["model.norm.weight"]
            checkpoint.save_checkpoint(d, raw, broken)
            with self.assertRaisesRegex(ValueError, "missing tensor model.norm"):
                checkpoint.load_checkpoint(d)
            broken = dict(only_k, **{"model.extra": torch.zeros(1)})
            checkpoint.save_checkpoint(d, raw, broken)
            with self.assertRaisesRegex(ValueError, "unexpected"):
                checkpoint.load_checkpoint(d)
            broken = dict(only_k, **{"model.norm.weight": torch.zeros(3)})
            checkpoint.save_checkpoint(d, raw, broken)
            with self.assertRaisesRegex(ValueError, "shape"):
                checkpoint.load_checkpoint(d)

    def test_tied_embeddings_have_no_lm_head(self):
        raw, tensors = checkpoint.random_checkpoint("gla", {"tie_word_embeddings": True})
        self.assertNotIn("lm_head.weight", tensors)


class StateCarryTest(unittest.TestCase):
    """A sequence fed in pieces with the carried state equals one call."""

    def test_pieces_equal_one_call_for_every_fixture_config(self):
        tokens = make_fixtures.fixture_tokens(64)[:50]
        for fixture in make_fixtures.FIXTURES:
            with self.subTest(fixture.name):
                model = _model(fixture)
                tokens_v = [t % model.config.vocab_size for t in tokens]
                whole = model.forward(tokens_v)
                state = model.new_state()
                # Pieces shorter than the conv width exercise the cache shift.
                pieces = [model.forward(tokens_v[a:b], state)
                          for a, b in ((0, 2), (2, 3), (3, 20), (20, 50))]
                torch.testing.assert_close(torch.cat(pieces, 1), whole,
                                           rtol=1e-12, atol=1e-12)
                self.assertEqual(state.layers[0].offset, 50)

    def test_batched_sequences_are_independent(self):
        fixture = make_fixtures.FIXTURES[-3]  # gated_deltanet
        model = _model(fixture)
        a, b = list(range(10)), list(range(20, 30))
        both = model.forward([a, b])
        torch.testing.assert_close(both[0], model.forward(a)[0])
        torch.testing.assert_close(both[1], model.forward(b)[0])

    def test_fork_by_clone(self):
        model = _model(make_fixtures.FIXTURES[0])
        state = model.new_state()
        model.forward([1, 2, 3], state)
        fork = state.clone()
        torch.testing.assert_close(model.forward([4, 5], state),
                                   model.forward([4, 5], fork))


class ChunkwiseTest(unittest.TestCase):
    """Spec §8.2 chunk equations against the token-by-token recurrences."""

    def _inputs(self, seed, B=2, n=3, T=37, K=8, V=6):
        g = torch.Generator().manual_seed(seed)
        randn = lambda *s: torch.randn(*s, generator=g, dtype=F64)  # noqa: E731
        q, k, v = randn(B, n, T, K), randn(B, n, T, K), randn(B, n, T, V)
        S = randn(B, n, K, V)
        return g, randn, q, k, v, S

    def _check(self, recurrent, chunk, args, state_args):
        expected = recurrent(*args, *state_args)
        for chunk_size in (1, 5, 16, 64):
            got = chunk(*args, *state_args, chunk_size=chunk_size)
            for e, o in zip(expected, got):
                if e is not None:
                    torch.testing.assert_close(o, e, rtol=1e-10, atol=1e-10)

    def test_linear_attn(self):
        _, randn, q, k, v, S = self._inputs(10)
        phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1  # positive, like a real map
        z = randn(*phi_k.shape[:2], phi_k.shape[-1]).abs()
        self._check(rm.recurrent_linear_attn, chunkwise.chunk_linear_attn,
                    (phi_q, phi_k, v), (S, z))
        self._check(rm.recurrent_linear_attn, chunkwise.chunk_linear_attn,
                    (q, k, v), (S, None))

    def test_retention(self):
        _, _, q, k, v, S = self._inputs(11)
        log_decay = torch.log(1 - 2.0 ** (-5.0 - torch.arange(3, dtype=F64)))
        self._check(rm.recurrent_retention, chunkwise.chunk_retention,
                    (q, k, v, log_decay), (S,))

    def test_gla(self):
        g, randn, q, k, v, S = self._inputs(12)
        gk = F.logsigmoid(2 * randn(*k.shape)) / 4  # some strongly negative
        self._check(rm.recurrent_gla, chunkwise.chunk_gla, (q, k, v, gk), (S,))

    def test_delta_rule(self):
        g, randn, q, k, v, S = self._inputs(13)
        k = rm.l2norm(k)
        beta = 2 * torch.sigmoid(randn(*k.shape[:3]))  # allow_neg_eigval range
        self._check(rm.recurrent_delta_rule, chunkwise.chunk_delta_rule,
                    (q, k, v, beta), (S,))

    def test_gated_delta_rule(self):
        g, randn, q, k, v, S = self._inputs(14)
        k = rm.l2norm(k)
        beta = torch.sigmoid(randn(*k.shape[:3]))
        A = torch.rand(3, generator=g, dtype=F64)[None, :, None] * 15 + 1
        gdec = -A * rm.softplus_threshold20(randn(*k.shape[:3]) - 3)
        self._check(rm.recurrent_gated_delta_rule,
                    chunkwise.chunk_gated_delta_rule, (q, k, v, beta, gdec), (S,))

    def test_whole_models_chunked_equal_recurrent(self):
        tokens = make_fixtures.fixture_tokens(64)
        for fixture in make_fixtures.FIXTURES:
            with self.subTest(fixture.name):
                recurrent = _model(fixture)
                chunked = _model(fixture, core="chunk", chunk_size=16)
                tokens_v = [t % recurrent.config.vocab_size for t in tokens]
                # A prefix first, so that the chunked call starts from a
                # non-zero state (and the retnet offset is non-zero).
                s1, s2 = recurrent.new_state(), chunked.new_state()
                recurrent.forward(tokens_v[:9], s1)
                chunked.forward(tokens_v[:9], s2)
                torch.testing.assert_close(
                    chunked.forward(tokens_v[9:], s2),
                    recurrent.forward(tokens_v[9:], s1), rtol=1e-9, atol=1e-9)


class DeviceTest(unittest.TestCase):

    @unittest.skipUnless(torch.cuda.is_available(), "no CUDA device")
    def test_cuda_matches_cpu(self):
        fixture = make_fixtures.FIXTURES[-3]
        tokens = make_fixtures.fixture_tokens(64)
        cpu = _model(fixture).forward(tokens)
        gpu = _model(fixture, device="cuda").forward(tokens).cpu()
        torch.testing.assert_close(gpu, cpu, rtol=1e-9, atol=1e-9)


class FixturesTest(unittest.TestCase):
    """tests/data matches what make_fixtures.py writes now."""

    def setUp(self):
        if not os.path.isdir(make_fixtures.DEFAULT_OUT) or not any(
                os.path.isdir(os.path.join(make_fixtures.DEFAULT_OUT, f.name))
                for f in make_fixtures.FIXTURES):
            self.skipTest("no committed fixtures in tests/data")

    def test_regeneration_reproduces_committed_files(self):
        with tempfile.TemporaryDirectory() as out:
            make_fixtures.write_fixtures(out)
            for fixture in make_fixtures.FIXTURES:
                committed = os.path.join(make_fixtures.DEFAULT_OUT, fixture.name)
                fresh = os.path.join(out, fixture.name)
                for name in ("config.json", "model.safetensors", "golden.json"):
                    with self.subTest(fixture=fixture.name, file=name):
                        with open(os.path.join(committed, name), "rb") as f:
                            old = f.read()
                        with open(os.path.join(fresh, name), "rb") as f:
                            new = f.read()
                        self.assertTrue(old == new, self._describe(name, old, new))

    @staticmethod
    def _describe(name, old, new):
        """Where two versions of a fixture file differ (for the failure)."""
        if name != "golden.json":
            return f"{name} differs"
        old, new = json.loads(old), json.loads(new)
        keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        message = f"golden.json differs in {keys}"
        if "logits" in keys and len(old["logits"]) == len(new["logits"]):
            diff = np.abs(np.array(old["logits"]) - np.array(new["logits"])).max()
            message += f"; max |logit difference| {diff:.3g}"
        return message

    def test_goldens_match_fp32_math(self):
        for fixture in make_fixtures.FIXTURES:
            with self.subTest(fixture.name):
                directory = os.path.join(make_fixtures.DEFAULT_OUT, fixture.name)
                with open(os.path.join(directory, "golden.json")) as f:
                    golden = json.load(f)
                out = checkpoint.logits(directory, golden["tokens"])
                np.testing.assert_allclose(out.numpy(), np.array(golden["logits"]),
                                           rtol=0, atol=1e-4)


if __name__ == "__main__":
    unittest.main()
