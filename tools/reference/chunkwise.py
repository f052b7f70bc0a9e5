"""Chunkwise-parallel forms of the five recurrences (spec §8.2).

Written from the chunk equations, not from the per-token recurrences, so that
comparing the two (test_reference.py) checks the spec's math independently.
Same signatures and layouts as the recurrent_* functions in reference_model.py
plus `chunk_size`: per head [B, n, T, d] inputs, state S [B, n, K, V], q
already scaled. The last chunk may be shorter than chunk_size.

Notation per chunk of C rows: M = lower-triangular mask with the diagonal,
M- = strictly lower; S is the state entering the chunk.
"""

import torch


def _chunks(length, chunk_size):
    for start in range(0, length, chunk_size):
        yield slice(start, min(start + chunk_size, length))


def _masks(size, device):
    ones = torch.ones(size, size, dtype=torch.bool, device=device)
    return torch.tril(ones), torch.tril(ones, diagonal=-1)


def _masked_exp(diff, mask):
    """exp(diff) where mask, else 0 (never exponentiates masked entries)."""
    return torch.where(mask, diff, torch.full_like(diff, float("-inf"))).exp()


def chunk_linear_attn(q, k, v, S, z=None, chunk_size=64):
    """O = Q S + (Q K^T . M) V;  S' = S + K^T V. With the normaliser:
    z_i = z_in + sum_{j<=i} k_j, o_i /= (q_i . z_i + 1e-10)."""
    outputs = []
    for rows in _chunks(q.shape[2], chunk_size):
        Q, K, V = q[:, :, rows], k[:, :, rows], v[:, :, rows]
        M, _ = _masks(Q.shape[2], Q.device)
        O = Q @ S + ((Q @ K.transpose(-1, -2)) * M) @ V
        if z is not None:
            z_rows = z[:, :, None, :] + torch.cumsum(K, dim=2)
            O = O / ((Q * z_rows).sum(-1, keepdim=True) + 1e-10)
            z = z_rows[:, :, -1]
        S = S + K.transpose(-1, -2) @ V
        outputs.append(O)
    return torch.cat(outputs, dim=2), S, z


def chunk_retention(q, k, v, log_decay, S, chunk_size=64):
    """b_i = (i+1) lambda_h; O = diag(e^b) Q S + (Q K^T . Gamma) V with
    Gamma_ij = e^(b_i - b_j) (j <= i); S' = e^(b_last) S + (diag(e^(b_last - b)) K)^T V."""
    outputs = []
    for rows in _chunks(q.shape[2], chunk_size):
        Q, K, V = q[:, :, rows], k[:, :, rows], v[:, :, rows]
        C = Q.shape[2]
        M, _ = _masks(C, Q.device)
        b = torch.arange(1, C + 1, dtype=q.dtype, device=q.device)[None, None, :] \
            * log_decay[None, :, None]                                # [1, n, C]
        gamma = _masked_exp(b[..., :, None] - b[..., None, :], M)     # [1, n, C, C]
        O = b.exp()[..., None] * (Q @ S) + ((Q @ K.transpose(-1, -2)) * gamma) @ V
        b_last = b[..., -1:]
        S = b_last.exp()[..., None] * S \
            + ((b_last - b).exp()[..., None] * K).transpose(-1, -2) @ V
        outputs.append(O)
    return torch.cat(outputs, dim=2), S


def chunk_gla(q, k, v, gk, S, chunk_size=64):
    """B_i = sum_{t<=i} gk_t (per key feature);
    o_i = (q_i . e^B_i)^T S + sum_{j<=i} [sum_d q_id k_jd e^(B_id - B_jd)] v_j;
    S' = diag(e^B_last) S + sum_j (k_j . e^(B_last - B_j)) v_j^T."""
    outputs = []
    for rows in _chunks(q.shape[2], chunk_size):
        Q, K, V = q[:, :, rows], k[:, :, rows], v[:, :, rows]
        M, _ = _masks(Q.shape[2], Q.device)
        B = torch.cumsum(gk[:, :, rows], dim=2)                       # [B, n, C, K]
        decay = _masked_exp(B[:, :, :, None, :] - B[:, :, None, :, :],
                            M[:, :, None])                            # [B, n, C, C, K]
        A = (Q[:, :, :, None, :] * K[:, :, None, :, :] * decay).sum(-1)
        O = (Q * B.exp()) @ S + A @ V
        B_last = B[:, :, -1:]
        S = B_last.exp().transpose(-1, -2) * S \
            + (K * (B_last - B).exp()).transpose(-1, -2) @ V
        outputs.append(O)
    return torch.cat(outputs, dim=2), S


def _unit_lower_solve(strict_lower, rhs):
    """Solves (I + L) X = rhs for a strictly lower L (forward substitution)."""
    eye = torch.eye(strict_lower.shape[-1], dtype=rhs.dtype, device=rhs.device)
    return torch.linalg.solve_triangular(eye + strict_lower, rhs, upper=False,
                                         unitriangular=True)


def chunk_delta_rule(q, k, v, beta, S, chunk_size=64):
    """WY form: A = (I + M- . (diag(beta) K K^T))^-1, W = A diag(beta) K,
    U = A diag(beta) V; V_new = U - W S; O = Q S + (Q K^T . M) V_new;
    S' = S + K^T V_new."""
    outputs = []
    for rows in _chunks(q.shape[2], chunk_size):
        Q, K, V = q[:, :, rows], k[:, :, rows], v[:, :, rows]
        b = beta[:, :, rows, None]
        M, M_strict = _masks(Q.shape[2], Q.device)
        L = (b * K) @ K.transpose(-1, -2) * M_strict
        W = _unit_lower_solve(L, b * K)
        U = _unit_lower_solve(L, b * V)
        V_new = U - W @ S
        O = Q @ S + ((Q @ K.transpose(-1, -2)) * M) @ V_new
        S = S + K.transpose(-1, -2) @ V_new
        outputs.append(O)
    return torch.cat(outputs, dim=2), S


def chunk_gated_delta_rule(q, k, v, beta, gdec, S, chunk_size=64):
    """gamma_i = sum_{t<=i} gdec_t, Gamma_ij = e^(gamma_i - gamma_j) (j <= i);
    A = (I + M- . (diag(beta) K K^T . Gamma))^-1; U = A diag(beta) V;
    W = A diag(beta) diag(e^gamma) K; V_new = U - W S;
    O = diag(e^gamma) Q S + (Q K^T . Gamma . M) V_new;
    S' = e^(gamma_last) S + (diag(e^(gamma_last - gamma)) K)^T V_new."""
    outputs = []
    for rows in _chunks(q.shape[2], chunk_size):
        Q, K, V = q[:, :, rows], k[:, :, rows], v[:, :, rows]
        b = beta[:, :, rows, None]
        M, M_strict = _masks(Q.shape[2], Q.device)
        g = torch.cumsum(gdec[:, :, rows], dim=2)[..., None]         # [B, n, C, 1]
        gamma = _masked_exp(g - g.transpose(-1, -2), M)               # [B, n, C, C]
        L = (b * K) @ K.transpose(-1, -2) * gamma * M_strict
        U = _unit_lower_solve(L, b * V)
        W = _unit_lower_solve(L, b * g.exp() * K)
        V_new = U - W @ S
        O = g.exp() * (Q @ S) + ((Q @ K.transpose(-1, -2)) * gamma) @ V_new
        g_last = g[:, :, -1:]
        S = g_last.exp() * S + ((g_last - g).exp() * K).transpose(-1, -2) @ V_new
        outputs.append(O)
    return torch.cat(outputs, dim=2), S
