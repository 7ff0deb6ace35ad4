r"""Kernelized attention with relative positional encoding, by FFT in O(n log n).

Luo et al. 2021, NeurIPS, "Stable, fast and accurate: kernelized attention with relative
positional encoding": with a non-negative feature map φ (a kernel φ(q)ᵀφ(k) ≈ exp(⟨q, k⟩),
e.g. the Performer's positive random features, or elu(x) + 1) and positive relative-position
weights c_r (r = i − j; e.g. c_r = exp(b_r) for a learnt bias b), attention is

    z_i = Σ_j c_{i−j} φ(q_i)ᵀφ(k_j) v_j / Σ_j c_{i−j} φ(q_i)ᵀφ(k_j),     i, j = 0, …, n − 1.

Pulling φ(q_i) out of both sums leaves, for every feature l and value column e (and a column
of ones for the denominator), the Toeplitz matrix–vector product

    T_i[l, e] = Σ_j c_{i−j} φ(k_j)_l [v_j, 1]_e,

a linear convolution of the (2n − 1)-vector c = (c_{−(n−1)}, …, c_{n−1}) with the n-vector
a_j = φ(k_j)_l [v_j, 1]_e: T_i is entry i + n − 1 of c * a. A circular convolution of any length
L ≥ 2n − 1 gives entries n − 1, …, 2n − 2 unaliased (the full linear convolution has 3n − 2
entries; those wrapping around land below n − 1), so one real FFT of length L (the smallest
2^a 3^b 5^c ≥ 2n − 1) per column, all m(d_v + 1) columns at once, computes every T_i in
O(n log n · m d_v). Then z_i = φ(q_i)ᵀ T_i[:, :d_v] / φ(q_i)ᵀ T_i[:, d_v].

`rpe_kernelized_attention_direct` is the O(n² (m + d_v)) reference that forms the n × n matrix
(c_{i−j} φ(q_i)ᵀφ(k_j))_{ij}. With every c_r = 1 both are plain kernelized (linear) attention
φ(Q)(φ(K)ᵀV) / φ(Q)(φ(K)ᵀ1) (Katharopoulos et al. 2020).

Rounding. Scaling c, or all of φ(K), by one constant, or φ(q_i) by a constant per query, leaves
z unchanged; both routes divide c by its maximum and φ(K) by its maximum, and the FFT route
each φ(q_i) by its maximum, so nothing overflows. The FFT computes each T_i[l, e] with an
absolute (not relative) error of order ε·log₂L·‖c‖₂·‖a‖₂ (ε the unit roundoff of the dtype): when
c spans many orders of magnitude, the small T entries lose relative accuracy. Measured at
n = 1024 (d = 16, elu + 1 features, c = exp(N(0, σ²)) with σ up to 10, or c_r = exp(−0.15|r|)):
at most 3e-15 (float64) and 9e-7 (float32) of max|z| away from the direct route. A denominator
not larger than this error bound (its sign is not known) raises FloatingPointError rather
than returning a meaningless ratio: use float64, or the direct route.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from theory.attention.random_features import (
    _as_float,
    _check_batch_and_width,
    _is_traced,
    _raise_flags,
)

_HI = jax.lax.Precision.HIGHEST  # no TF32 shortcut on GPU


# ---------------------------------------------------------------------------- validation


_VALUE_MESSAGES = (
    "q contains non-finite values",
    "k contains non-finite values",
    "v contains non-finite values",
    "rpe contains non-finite values",
    "rpe must be positive (e.g. exp of a bias), got an entry <= 0",
    "feature_map returned non-finite features for q",
    "feature_map returned non-finite features for k",
    "feature_map must be non-negative; it gave a negative feature for q",
    "feature_map must be non-negative; it gave a negative feature for k",
)


def _value_flags(q, k, v, rpe, phi_q, phi_k):
    """The conditions of `_VALUE_MESSAGES`, in order, as a bool vector (computed under jit)."""
    fin = [jnp.all(jnp.isfinite(a)) for a in (q, k, v, rpe)]
    return jnp.stack(
        fin
        + [jnp.all(rpe > 0)]
        + [jnp.all(jnp.isfinite(p)) for p in (phi_q, phi_k)]
        + [jnp.all(p >= 0) for p in (phi_q, phi_k)]
    )


def _check_inputs(q, k, v, rpe, feature_map):
    """(q, k, v, c, φ(q), φ(k)) of checked shapes in one float dtype; values unchecked."""
    q, k, v = _as_float("q", q), _as_float("k", k), _as_float("v", v)
    _check_batch_and_width(q, k, v)
    n = q.shape[-2]
    if k.shape[-2] != n or v.shape[-2] != n:
        raise ValueError(
            f"q, k and v must have the same length n (relative positions need aligned "
            f"sequences), got {q.shape}, {k.shape} and {v.shape}"
        )
    if n < 1:
        raise ValueError("q, k and v must hold at least one token")
    batch = q.shape[:-2]

    rpe = _as_float("rpe", rpe, min_ndim=1)
    if rpe.shape[-1] != 2 * n - 1:
        raise ValueError(
            f"rpe must have length 2n - 1 = {2 * n - 1} (c_-(n-1), ..., c_(n-1)) for n = {n}, "
            f"got shape {rpe.shape}"
        )
    try:
        ok = np.broadcast_shapes(rpe.shape[:-1], batch) == batch
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"rpe's leading axes {rpe.shape[:-1]} must broadcast to the batch axes {batch}"
        )

    if not callable(feature_map):
        raise ValueError(f"feature_map must be callable, got {type(feature_map).__name__}")
    phi_q, phi_k = jnp.asarray(feature_map(q)), jnp.asarray(feature_map(k))
    for name, phi, x in (("q", phi_q, q), ("k", phi_k, k)):
        if phi.ndim != x.ndim or phi.shape[:-1] != x.shape[:-1] or phi.shape[-1] < 1:
            raise ValueError(
                f"feature_map must map (..., n, d) to (..., n, m) with m >= 1; for {name} of "
                f"shape {x.shape} it returned shape {phi.shape}"
            )
        if not jnp.issubdtype(phi.dtype, jnp.floating):
            raise ValueError(f"feature_map must return floats, got {phi.dtype} for {name}")
    if phi_q.shape[-1] != phi_k.shape[-1]:
        raise ValueError(
            f"feature_map gave {phi_q.shape[-1]} features for q but {phi_k.shape[-1]} for k"
        )
    dtype = jnp.result_type(q, k, v, rpe)
    if jnp.finfo(phi_q.dtype).bits < 32 or jnp.finfo(phi_k.dtype).bits < 32:
        raise TypeError(f"feature_map must return float32 or float64, got {phi_q.dtype}")
    return tuple(a.astype(dtype) for a in (q, k, v, rpe, phi_q, phi_k))


def fft_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c ≥ 2n − 1: the shortest fast FFT without aliasing for length n."""
    need = max(2 * n - 1, 1)
    best = 1 << (need - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < need:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


# ---------------------------------------------------------------------------- FFT route


def _normalise(phi_k, rpe):
    """φ(K) and c divided by their maxima (per batch element): z is unchanged."""
    sg = jax.lax.stop_gradient  # z does not depend on the factors: no gradient through them
    phi_k = phi_k / sg(jnp.max(phi_k, axis=(-2, -1), keepdims=True))
    rpe = rpe / sg(jnp.max(rpe, axis=-1, keepdims=True))
    return phi_k, rpe


@jax.jit
def _rpe_fft(q, k, v, rpe, phi_q, phi_k):
    """Returns (z, value flags, ok): ok is false if a denominator is not above its rounding
    bound or z is not finite."""
    flags = _value_flags(q, k, v, rpe, phi_q, phi_k)
    n = phi_q.shape[-2]
    length = fft_length(n)
    phi_k, rpe = _normalise(phi_k, rpe)
    # per query: cancels in the ratio
    phi_q = phi_q / jax.lax.stop_gradient(jnp.max(phi_q, axis=-1, keepdims=True))
    ones = jnp.ones(v.shape[:-1] + (1,), v.dtype)
    v1 = jnp.concatenate([v, ones], axis=-1)  # [v_j, 1], (…, n, d_v + 1)
    a = phi_k[..., :, :, None] * v1[..., :, None, :]  # (…, n, m, d_v + 1)
    fa = jnp.fft.rfft(a, n=length, axis=-3)  # (…, L/2 + 1, m, d_v + 1)
    fc = jnp.fft.rfft(rpe, n=length, axis=-1)  # (…, L/2 + 1)
    conv = jnp.fft.irfft(fa * fc[..., :, None, None], n=length, axis=-3)
    t = conv[..., n - 1 : 2 * n - 1, :, :]  # T_i = Σ_j c_{i−j} φ(k_j) [v_j, 1]ᵀ, (…, n, m, d_v + 1)
    zt = jnp.einsum("...il,...ile->...ie", phi_q, t, precision=_HI)
    num, den = zt[..., :-1], zt[..., -1]
    # rounding bound of den_i: ε·log₂L·‖c‖₂·Σ_l φ(q_i)_l ‖φ(K)_l‖₂ (times a safety factor 4)
    eps = jnp.finfo(v.dtype).eps
    c_norm = jnp.linalg.norm(rpe, axis=-1)[..., None]  # (…, 1)
    k_norm = jnp.linalg.norm(phi_k, axis=-2)  # (…, m)
    bound = 4 * eps * math.log2(length) * c_norm * jnp.einsum("...il,...l->...i", phi_q, k_norm)
    z = num / den[..., None]
    ok = jnp.all(den > bound) & jnp.all(jnp.isfinite(z))
    return z, flags, ok


def rpe_kernelized_attention(q, k, v, rpe, feature_map: Callable) -> jax.Array:
    """Kernelized attention with a relative-position (Toeplitz) weight, by FFT (Luo et al. 2021).

    z_i = Σ_j c_{i−j} φ(q_i)ᵀφ(k_j) v_j / Σ_j c_{i−j} φ(q_i)ᵀφ(k_j), computed as n Toeplitz
    products T_i = Σ_j c_{i−j} φ(k_j)[v_j, 1]ᵀ by one real FFT of length L ≥ 2n − 1, all
    m(d_v + 1) columns together: O(L log L · m (d_v + 1)) time, O(L m (d_v + 1)) memory.

    Args:
        q: (…, n, d) queries; k: (…, n, d) keys; v: (…, n, d_v) values; finite floats with the
            same length n and the same leading (batch) axes.
        rpe: (2n − 1,) or (…, 2n − 1) broadcasting to the batch axes (e.g. per head): the
            positive, finite weights (c_{−(n−1)}, …, c_{n−1}); c_r weighs query i against key
            j = i − r, so rpe[i − j + n − 1] multiplies the (i, j) score.
        feature_map: callable mapping (…, n, d) → (…, n, m) row by row, with non-negative,
            finite outputs: e.g. ``lambda x: jax.nn.elu(x) + 1``, or
            ``functools.partial(performer_features, w=W, scale=s)`` (an unbiased estimate of
            c_{i−j} exp(s⟨q_i, k_j⟩) per pair). It is called on q and on k, outside any jit.

    Returns (…, n, d_v) in the promoted float dtype of q, k, v and rpe. Differentiable.

    Raises:
        ValueError naming the argument for bad shapes, non-finite entries, rpe of the wrong
        length or with entries ≤ 0, a feature map with negative or non-finite outputs;
        FloatingPointError if a denominator does not exceed the FFT's rounding bound (every
        φ(q_i)ᵀφ(k_j) zero, or c with too wide a range for the dtype) or z is not finite.
    """
    z, flags, ok = _rpe_fft(*_check_inputs(q, k, v, rpe, feature_map))
    _raise_flags(flags, _VALUE_MESSAGES)
    if not _is_traced(ok) and not bool(ok):
        raise FloatingPointError(
            f"rpe_kernelized_attention: a denominator Σ_j c_(i-j) φ(q_i)ᵀφ(k_j) is not above the "
            f"FFT rounding error in {v.dtype} (or the output is not finite): every feature "
            "product of a query is zero, or rpe spans too many orders of magnitude; use "
            "float64 or rpe_kernelized_attention_direct"
        )
    return z


# ---------------------------------------------------------------------------- direct route


@jax.jit
def _rpe_direct(q, k, v, rpe, phi_q, phi_k):
    flags = _value_flags(q, k, v, rpe, phi_q, phi_k)
    n = phi_q.shape[-2]
    phi_k, rpe = _normalise(phi_k, rpe)
    idx = jnp.arange(n)[:, None] - jnp.arange(n)[None, :] + (n - 1)  # i − j + n − 1
    c = rpe[..., idx]  # C_ij = c_{i−j}, (…, n, n)
    a = jnp.einsum("...il,...jl->...ij", phi_q, phi_k, precision=_HI) * c
    num = jnp.einsum("...ij,...je->...ie", a, v, precision=_HI)
    den = jnp.sum(a, axis=-1)
    z = num / den[..., None]
    ok = jnp.all(den > 0) & jnp.all(jnp.isfinite(z))
    return z, flags, ok


def rpe_kernelized_attention_direct(q, k, v, rpe, feature_map: Callable) -> jax.Array:
    """The O(n² (m + d_v)) reference of `rpe_kernelized_attention` (same arguments, same result).

    Forms A_ij = c_{i−j} φ(q_i)ᵀφ(k_j) (n × n per batch element) and returns A V / A 1.
    Raises FloatingPointError if a row of A sums to zero (every φ(q_i)ᵀφ(k_j) = 0).
    """
    z, flags, ok = _rpe_direct(*_check_inputs(q, k, v, rpe, feature_map))
    _raise_flags(flags, _VALUE_MESSAGES)
    if not _is_traced(ok) and not bool(ok):
        raise FloatingPointError(
            "rpe_kernelized_attention_direct: a denominator Σ_j c_(i-j) φ(q_i)ᵀφ(k_j) is zero "
            f"or the output is not finite ({v.dtype})"
        )
    return z
