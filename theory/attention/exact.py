r"""Exact softmax and tensor attention, naive and blocked (streaming, online softmax).

Matrix (softmax) attention, with scale s (default 1/d, the convention of Alman & Song):

    Att(Q, K, V) = D⁻¹ A V,    A = exp(s Q Kᵀ) ∈ R^(n × m),   D = diag(A 1).

Tensor attention (Alman & Song, "How to capture higher-order correlations? Generalizing matrix
softmax attention to Kronecker computation", ICLR 2024): with the column-wise Kronecker
(Khatri–Rao) product ⊘, row j1 + m·j2 of K1 ⊘ K2 being K1[j1] ∘ K2[j2],

    Att(Q, K1, K2, V1, V2) = D⁻¹ A (V1 ⊘ V2),   A = exp(s Q (K1 ⊘ K2)ᵀ) ∈ R^(n × m²),

i.e. out[i] = Σ_{j1,j2} exp(s Σ_l q_il k1_j1l k2_j2l) v1[j1] ∘ v2[j2] / Σ_{j1,j2} exp(…).
The straightforward algorithm costs n·m²·d; this module never forms more than a block.

Naive versions materialise the scores (n × m, or n × m × m); the blocked versions stream over
key blocks with an online softmax (running max, running normaliser, running numerator:
Milakov & Gimelshein 2018; FlashAttention), so memory is O(block_q · block_k · m) for the tensor
case (the full second key set per block) and O(block_q · block_k) for the matrix case. Every
function is differentiable with `jax.grad`; the blocked ones recompute each block in the
backward pass (`jax.checkpoint`), keeping that memory bound. ``block=None`` picks the naive
version at small sizes and the blocked one above.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# Above these sizes block=None streams: n·m scores (matrix), n·m² scores (tensor).
NAIVE_MAX_SCORES = 1 << 22


# ---------------------------------------------------------------------------- validation


def _as_float(name: str, a) -> jax.Array:
    a = jnp.asarray(a)
    if not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(jnp.result_type(float))
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (tokens, features), got shape {a.shape}")
    if not isinstance(a, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(a))):
        raise ValueError(f"{name} contains non-finite values")
    return a


def _scale(scale, d: int) -> float:
    if scale is None:
        return 1.0 / d
    s = float(scale)
    if not math.isfinite(s):
        raise ValueError(f"scale must be finite, got {scale!r}")
    return s


def _check_block(block) -> int | None:
    if block is None:
        return None
    if isinstance(block, bool) or int(block) != block or block < 1:
        raise ValueError(f"block must be a positive integer or None, got {block!r}")
    return int(block)


def check_matrix(q, k, v):
    """Validated (q, k, v): q (n, d), k (m, d), v (m, d_v), finite, one float dtype."""
    q, k, v = _as_float("q", q), _as_float("k", k), _as_float("v", v)
    if k.shape[1] != q.shape[1]:
        raise ValueError(f"q and k must have the same width d, got {q.shape} and {k.shape}")
    if v.shape[0] != k.shape[0]:
        raise ValueError(f"k and v must have the same length m, got {k.shape} and {v.shape}")
    if k.shape[0] < 1:
        raise ValueError("k must hold at least one key")
    dtype = jnp.result_type(q, k, v)
    return q.astype(dtype), k.astype(dtype), v.astype(dtype)


def check_tensor(q, k1, k2, v1, v2):
    """Validated (q, k1, k2, v1, v2): widths d equal, k1/v1 and k2/v2 of equal lengths."""
    q, k1, k2 = _as_float("q", q), _as_float("k1", k1), _as_float("k2", k2)
    v1, v2 = _as_float("v1", v1), _as_float("v2", v2)
    for name, a in (("k1", k1), ("k2", k2)):
        if a.shape[1] != q.shape[1]:
            raise ValueError(f"q and {name} must have the same width d, got {q.shape}, {a.shape}")
    if v1.shape[0] != k1.shape[0] or v2.shape[0] != k2.shape[0]:
        raise ValueError(
            f"k1/v1 and k2/v2 must have equal lengths, got {k1.shape}/{v1.shape} and "
            f"{k2.shape}/{v2.shape}"
        )
    if v1.shape[1] != v2.shape[1]:
        raise ValueError(f"v1 and v2 must have the same width, got {v1.shape} and {v2.shape}")
    if k1.shape[0] < 1 or k2.shape[0] < 1:
        raise ValueError("k1 and k2 must hold at least one key each")
    dtype = jnp.result_type(q, k1, k2, v1, v2)
    return tuple(a.astype(dtype) for a in (q, k1, k2, v1, v2))


def _finite_or_raise(out: jax.Array, what: str) -> jax.Array:
    if not isinstance(out, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(out))):
        raise FloatingPointError(f"{what}: non-finite output from finite inputs")
    return out


# ---------------------------------------------------------------------------- matrix


@jax.jit
def _softmax_naive(q, k, v, scale):
    s = scale * (q @ k.T)
    p = jnp.exp(s - jnp.max(s, axis=1, keepdims=True))
    return (p @ v) / jnp.sum(p, axis=1, keepdims=True)


def _pad_rows(a, multiple: int):
    n = a.shape[0]
    pad = (-n) % multiple
    return jnp.pad(a, ((0, pad), (0, 0))), n


def _key_blocks(k, v, block: int):
    """(k blocks, v blocks, valid): keys and values zero-padded to whole blocks of ``block``
    rows, shaped (blocks, block, ·), and the mask of the real (unpadded) rows."""
    m = k.shape[0]
    kp, _ = _pad_rows(k, block)
    vp, _ = _pad_rows(v, block)
    n_kb = kp.shape[0] // block
    valid = (jnp.arange(n_kb * block) < m).reshape(n_kb, block)
    return kp.reshape(n_kb, block, -1), vp.reshape(n_kb, block, -1), valid


@jax.jit(static_argnames=("block",))
def _softmax_blocked(q, k, v, scale, block: int):
    qp, n = _pad_rows(q, block)
    kb, vb, valid = _key_blocks(k, v, block)

    def one_query_block(qb):
        @jax.checkpoint
        def step(carry, blk):
            mx, den, num = carry
            kk, vv, ok = blk
            s = jnp.where(ok[None, :], scale * (qb @ kk.T), -jnp.inf)
            new = jnp.maximum(mx, jnp.max(s, axis=1))
            p = jnp.exp(s - new[:, None])
            corr = jnp.exp(mx - new)
            return (new, den * corr + jnp.sum(p, axis=1), num * corr[:, None] + p @ vv), None

        init = (
            jnp.full((block,), -jnp.inf, q.dtype),
            jnp.zeros((block,), q.dtype),
            jnp.zeros((block, v.shape[1]), q.dtype),
        )
        (_, den, num), _ = jax.lax.scan(step, init, (kb, vb, valid))
        return num / den[:, None]

    out = jax.lax.map(one_query_block, qp.reshape(-1, block, q.shape[1]))
    return out.reshape(-1, v.shape[1])[:n]


def softmax_attention(q, k, v, scale=None, block: int | None = None) -> jax.Array:
    """Exact softmax attention D⁻¹ exp(s Q Kᵀ) V, s = ``scale`` (default 1/d).

    Args:
        q: (n, d) queries; k: (m, d) keys; v: (m, d_v) values; finite floats.
        scale: s; None gives 1/d (Alman & Song's convention; `jax.nn.dot_product_attention`
            uses 1/√d by default: pass ``scale=d**-0.5`` to match it).
        block: None (naive if n·m ≤ 2²², else blocked with 128), or the block size of the
            streaming version (query and key blocks; memory O(block²)).

    Returns (n, d_v) in the inputs' float dtype. Differentiable with `jax.grad`.
    """
    q, k, v = check_matrix(q, k, v)
    s = _scale(scale, q.shape[1])
    block = _check_block(block)
    if block is None and q.shape[0] * k.shape[0] <= NAIVE_MAX_SCORES:
        out = _softmax_naive(q, k, v, jnp.asarray(s, q.dtype))
    else:
        out = _softmax_blocked(q, k, v, jnp.asarray(s, q.dtype), block=block or 128)
    return _finite_or_raise(out, "softmax_attention")


# ---------------------------------------------------------------------------- tensor


@jax.jit
def _tensor_naive(q, k1, k2, v1, v2, scale):
    s = scale * jnp.einsum("il,al,bl->iab", q, k1, k2)
    s = s - jnp.max(s, axis=(1, 2), keepdims=True)
    p = jnp.exp(s)
    den = jnp.sum(p, axis=(1, 2))
    num = jnp.einsum("iab,ae,be->ie", p, v1, v2)
    return num / den[:, None]


@jax.jit(static_argnames=("block",))
def _tensor_blocked(q, k1, k2, v1, v2, scale, block: int):
    qp, n = _pad_rows(q, block)
    kb, vb, valid = _key_blocks(k1, v1, block)
    d_v = v1.shape[1]

    def one_query_block(qb):
        @jax.checkpoint
        def step(carry, blk):
            mx, den, num = carry
            kk, vv, ok = blk
            # scores (bq, bk, m2): row (i, j1) of (q_i ∘ k1_j1) against every k2_j2
            qk = (qb[:, None, :] * kk[None, :, :]).reshape(-1, qb.shape[1])
            s = (scale * (qk @ k2.T)).reshape(qb.shape[0], kk.shape[0], -1)
            s = jnp.where(ok[None, :, None], s, -jnp.inf)
            new = jnp.maximum(mx, jnp.max(s, axis=(1, 2)))
            p = jnp.exp(s - new[:, None, None])
            corr = jnp.exp(mx - new)
            pv2 = (p.reshape(-1, p.shape[2]) @ v2).reshape(p.shape[0], p.shape[1], d_v)
            add = jnp.einsum("ije,je->ie", pv2, vv)
            return (new, den * corr + jnp.sum(p, axis=(1, 2)), num * corr[:, None] + add), None

        init = (
            jnp.full((block,), -jnp.inf, q.dtype),
            jnp.zeros((block,), q.dtype),
            jnp.zeros((block, d_v), q.dtype),
        )
        (_, den, num), _ = jax.lax.scan(step, init, (kb, vb, valid))
        return num / den[:, None]

    out = jax.lax.map(one_query_block, qp.reshape(-1, block, q.shape[1]))
    return out.reshape(-1, d_v)[:n]


# exp(x − M) with M ≥ max x never overflows; the largest term is ≥ exp(−2M), which must stay
# far from underflow (float32 underflows at e^−87, float64 at e^−708).
# The values are normalised to max |v| = 1 first, so a weight ≥ e^(−2M) times a value of
# relative size ≥ 1e-8 stays normal: 2M ≤ 60 in float32 (e^−60 · 1e-8 ≈ 1e-34 > 1.2e-38),
# 2M ≤ 1200 in float64.
_STATIC_SHIFT_LIMIT = {jnp.dtype(jnp.float32): 60.0, jnp.dtype(jnp.float64): 1200.0}


@jax.jit(static_argnames=("bq", "bk"))
def _tensor_blocked_static(q, k1, k2, v1, v2, scale, shift, bq: int, bk: int):
    """Blocked tensor attention with a fixed per-query shift M_i ≥ max score (no running max:
    one pass of exp per score). Padded key rows carry zero values and weight exp(−∞) = 0."""
    d, d_v = q.shape[1], v1.shape[1]
    qp, n = _pad_rows(q, bq)
    mp, _ = _pad_rows(shift[:, None], bq)
    blocks = _key_blocks(k1, v1, bk)

    def one_query_block(args):
        qb, mb = args

        @jax.checkpoint
        def step(carry, blk):
            den, num = carry
            kk, vv, ok = blk
            qk = (qb[:, None, :] * kk[None, :, :]).reshape(-1, d)
            x = (scale * (qk @ k2.T)).reshape(bq, bk, -1) - mb[:, :, None]
            p = jnp.where(ok[None, :, None], jnp.exp(x), 0.0)
            pv2 = (p.reshape(-1, p.shape[2]) @ v2).reshape(bq, bk, d_v)
            return (den + jnp.sum(p, axis=(1, 2)), num + jnp.einsum("ije,je->ie", pv2, vv)), None

        init = (jnp.zeros((bq,), q.dtype), jnp.zeros((bq, d_v), q.dtype))
        (den, num), _ = jax.lax.scan(step, init, blocks)
        return num / den[:, None]

    out = jax.lax.map(one_query_block, (qp.reshape(-1, bq, d), mp.reshape(-1, bq, 1)))
    return out.reshape(-1, d_v)[:n]


def static_blocks(m2: int) -> tuple[int, int]:
    """Query and key-1 block sizes (bq, bk) of the one-pass kernel for m2 second keys.

    Each step holds bq · bk · m2 scores. Measured on 2 CPU cores (d = 8), the rate is best with
    bk · m2 ≈ 2¹⁴ and bq · bk · m2 ≈ 2²⁰: bk = 2^⌊log₂(2¹⁴/m2)⌋ clipped to [2, 16],
    bq = 2^⌊log₂(2²⁰/(bk m2))⌋ clipped to [16, 64] (n = 2048: 64 × 8, 40 GFLOP/s against 19 for
    64 × 16; n = 16384: 32 × 2, 37 against 12).
    """
    m2 = max(int(m2), 1)
    bk = 2 ** int(math.floor(math.log2(max(1.0, 2**14 / m2))))
    bk = min(max(bk, 2), 16)
    bq = 2 ** int(math.floor(math.log2(max(1.0, 2**20 / (bk * m2)))))
    return min(max(bq, 16), 64), bk


def score_bound(q, keys, scale) -> jax.Array:
    """Per query, M_i = |s| Σ_l |q_il| Π_j max_r |kj_rl| ≥ |s ⟨q_i, k1 ∘ ⋯⟩| for every key tuple."""
    m = jnp.ones((q.shape[1],), q.dtype)
    for k in keys:
        m = m * jnp.max(jnp.abs(k), axis=0)
    return jnp.abs(scale) * (jnp.abs(q) @ m)


def tensor_attention(q, k1, k2, v1, v2, scale=None, block: int | None = None) -> jax.Array:
    """Exact tensor attention D⁻¹ exp(s Q (K1 ⊘ K2)ᵀ) (V1 ⊘ V2), s = ``scale`` (default 1/d).

    out[i] = Σ_{j1,j2} a_{i,j1,j2} v1_j1 ∘ v2_j2 / Σ_{j1,j2} a_{i,j1,j2},
    a_{i,j1,j2} = exp(s ⟨q_i, k1_j1 ∘ k2_j2⟩).

    Args:
        q: (n, d); k1: (m1, d), v1: (m1, d_v); k2: (m2, d), v2: (m2, d_v); finite floats.
        scale: s; None gives 1/d (the paper's).
        block: None (naive if n·m1·m2 ≤ 2²², else blocked), or the query/key-1 block of the
            streaming version: memory O(block² · m2); it never forms the n × m1·m2 matrix.
            Cost n·m1·m2·(4d + 1) flops plus n·m1·m2 exponentials. When the bound
            M_i = |s| Σ_l |q_il| max|k1_l| max|k2_l| on every score satisfies 2 max M ≤ 60
            (float32; 1200 in float64), each block takes exp(x − M_i) in one pass (no running
            max; cache-sized blocks, `static_blocks`); otherwise, and under tracing (jit, grad), the
            online softmax (32 × 32).

    Returns (n, d_v). Symmetric under swapping (k1, v1) with (k2, v2); with k2 = v2 = ones it
    is softmax attention. Differentiable with `jax.grad`.
    """
    q, k1, k2, v1, v2 = check_tensor(q, k1, k2, v1, v2)
    s = _scale(scale, q.shape[1])
    block = _check_block(block)
    size = q.shape[0] * k1.shape[0] * k2.shape[0]
    sc = jnp.asarray(s, q.dtype)
    if block is None and size <= NAIVE_MAX_SCORES:
        out = _tensor_naive(q, k1, k2, v1, v2, sc)
        return _finite_or_raise(out, "tensor_attention")
    traced = any(isinstance(a, jax.core.Tracer) for a in (q, k1, k2))
    limit = _STATIC_SHIFT_LIMIT.get(jnp.dtype(q.dtype))
    if not traced and limit is not None:
        shift = score_bound(q, (k1, k2), sc)
        if 2 * float(jnp.max(shift)) <= limit:
            bq, bk = (block, block) if block else static_blocks(k2.shape[0])
            # values scaled to max |v| = 1 (undone after): weights × values cannot underflow
            a1 = jnp.max(jnp.abs(v1))
            a2 = jnp.max(jnp.abs(v2))
            a1, a2 = jnp.where(a1 > 0, a1, 1), jnp.where(a2 > 0, a2, 1)
            out = _tensor_blocked_static(q, k1, k2, v1 / a1, v2 / a2, sc, shift, bq=bq, bk=bk)
            out = out * (a1 * a2)
            return _finite_or_raise(out, "tensor_attention")
    out = _tensor_blocked(q, k1, k2, v1, v2, sc, block=block or 32)
    return _finite_or_raise(out, "tensor_attention")


def tensor_attention_flops(n: int, m1: int, m2: int, d: int, d_v: int) -> float:
    """Multiply-adds ×2 of the blocked tensor attention: the q∘k1 products (n m1 d), the scores
    (2 n m1 m2 d), the value contraction with v2 (2 n m1 m2 d_v) and with v1 (2 n m1 d_v)."""
    return float(n * m1 * d + 2 * n * m1 * m2 * d + 2 * n * m1 * m2 * d_v + 2 * n * m1 * d_v)
