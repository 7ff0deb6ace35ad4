"""Mutual-information estimators for the information plane, in bits.

Every estimator treats the N rows of an activation array ``t`` as the N equiprobable inputs of
the data set (each input x has probability 1/N) and the layer as a deterministic function
T = f(X). Hence H(T|X) = 0 and I(X;T) = H(T), and, with labels y,
I(T;Y) = H(T) − Σ_y p(y) H(T|Y=y). None of them computes H(T|X).

``t`` has shape (N, units) for one layer at one epoch, or (epochs, N, units) for many epochs at
once (the result then has a leading epochs axis and equals the per-epoch results exactly); ``y``
has shape (N,) of non-negative integer labels.

- `binned_mi`: plug-in entropies of the discretised activation patterns
  (Shwartz-Ziv & Tishby 2017, arXiv:1703.00810; Saxe et al. 2018, ICLR, "On the information
  bottleneck theory of deep learning"); edge helpers `tishby_edges`, `fixed_width_edges`,
  `range_edges`.
- `adaptive_binned_mi`: entropy-based adaptive binning, EBAB (Chelombiev, Houghton &
  O'Donnell 2019, ICLR, "Adaptive estimators show information compression in deep neural
  networks").
- `kde_mi`: the Kolchinsky–Tracey pairwise-distance upper bound and the Bhattacharyya lower
  bound on the entropy of the Gaussian mixture T + Z, Z ~ N(0, σ²I) (Kolchinsky & Tracey 2017,
  Entropy 19:361, "Estimating mixture entropy with pairwise distances"; as used by Saxe et al.
  2018).
- `adaptive_kde_mi`: `kde_mi` with the noise scaled to the layer's activation range
  (Chelombiev et al. 2019).

The results are float64 (computed inside ``jax.enable_x64``); counts are exact integers, so the
binned entropies are exact to float64 rounding. The estimators can be called inside ``jax.jit``
(e.g. in a training loop) with a traced ``t``; ``y`` and the settings (edges, ``n_bins``,
``noise_var``, ``scale``) must then be concrete, and the NaN check on ``t`` is skipped because
a traced value cannot be inspected.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

LOG2 = math.log(2.0)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _is_traced(a) -> bool:
    return isinstance(a, jax.core.Tracer)


def _check_t_y(t, y):
    """Validate ``t`` (N, units) or (epochs, N, units) and ``y`` (N,); return (t, y, batched)."""
    if not _is_traced(t):
        t = np.asarray(t)
        if not np.issubdtype(t.dtype, np.number) and t.dtype != bool:
            raise ValueError(f"t must be a numeric array, got dtype {t.dtype}")
    if t.ndim not in (2, 3):
        raise ValueError(
            f"t must have shape (N, units) or (epochs, N, units), got shape {tuple(t.shape)}"
        )
    if not _is_traced(t):
        if np.issubdtype(t.dtype, np.floating) and not np.all(np.isfinite(t)):
            raise ValueError("t contains NaN or infinite activations")
        t = t.astype(np.float32) if not np.issubdtype(t.dtype, np.floating) else t
    if not _is_traced(y):
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y must have shape (N,), got shape {y.shape}")
        if not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
            if not np.all(y == np.round(y)):
                raise ValueError("y must hold integer class labels")
        if y.size and y.min() < 0:
            raise ValueError(f"y must hold non-negative class labels, got minimum {y.min()}")
        y = y.astype(np.int32)
    if y.ndim != 1:
        raise ValueError(f"y must have shape (N,), got shape {tuple(y.shape)}")
    if t.shape[-2] != y.shape[0]:
        raise ValueError(
            f"t and y must have the same number of inputs N: t has {t.shape[-2]} rows "
            f"(shape {tuple(t.shape)}), y has {y.shape[0]}"
        )
    if y.shape[0] < 1:
        raise ValueError("t and y must hold at least one input")
    return t, y, t.ndim == 3


def _check_edges(edges) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 1:
        raise ValueError(f"edges must be a non-empty 1-D array, got shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError("edges must be finite")
    if e.size > 1 and not np.all(np.diff(e) > 0):
        raise ValueError("edges must be strictly increasing")
    return e


def _check_positive(value, name: str) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def _n_classes(y) -> int:
    return int(np.max(y)) + 1


# --------------------------------------------------------------------------------------------
# edge helpers
# --------------------------------------------------------------------------------------------


def tishby_edges(n_edges: int = 30, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """The original study's edges ``linspace(-1, 1, 30)`` (Shwartz-Ziv & Tishby 2017)."""
    if int(n_edges) != n_edges or n_edges < 2:
        raise ValueError(f"n_edges must be an integer ≥ 2, got {n_edges!r}")
    if not high > low:
        raise ValueError(f"high must exceed low, got low={low!r}, high={high!r}")
    return np.linspace(low, high, int(n_edges))


def fixed_width_edges(t, width: float = 0.07) -> np.ndarray:
    """Edges 0, ±w, ±2w, … of width ``width`` covering the range of ``t`` (Saxe et al. 2018).

    The grid is anchored at 0 (edges k·w for integer k), so ReLU's zeros fall at an edge.
    """
    w = _check_positive(width, "width")
    a = np.asarray(t, dtype=np.float64)
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError("t must be a non-empty array of finite activations")
    lo = math.floor(a.min() / w)
    hi = math.floor(a.max() / w) + 1
    return np.arange(lo, hi + 1) * w


def range_edges(t, n_bins: int = 30) -> np.ndarray:
    """``n_bins`` equal-width bins spanning [min t, max t] of the layer: n_bins + 1 edges.

    For unbounded activations (ReLU, ELU, softplus, linear), whose range changes in training.
    The maximum lies on the last edge, so it gets a bin of its own under np.digitize
    conventions; use `binned_mi` for the counting.
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    a = np.asarray(t, dtype=np.float64)
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError("t must be a non-empty array of finite activations")
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, int(n_bins) + 1)


# --------------------------------------------------------------------------------------------
# counting patterns: packed integer codes, one lexicographic sort, run lengths
# --------------------------------------------------------------------------------------------


def _pack(codes, base: int):
    """Pack integer codes (N, units) in [0, base) into (N, words) int64 words, mixed radix."""
    units = codes.shape[-1]
    per_word = max(1, int(62 // math.log2(max(base, 2))))
    words = []
    for start in range(0, units, per_word):
        w = jnp.zeros(codes.shape[:-1], jnp.int64)
        for j in range(start, min(start + per_word, units)):
            w = w * base + codes[..., j].astype(jnp.int64)
        words.append(w)
    return words


def _plugin_entropy_bits(new_run, n):
    """H in bits of the run lengths given the run-start flags ``new_run`` (sorted order)."""
    seg = jnp.cumsum(new_run) - 1
    counts = jax.ops.segment_sum(jnp.ones(n, jnp.float64), seg, num_segments=n)
    clogc = jnp.where(counts > 0, counts * jnp.log(jnp.where(counts > 0, counts, 1.0)), 0.0)
    return (math.log(n) - jnp.sum(clogc) / n) / LOG2


def _pattern_mi(codes, y, base: int):
    """(H(T), I(T;Y)) in bits from integer codes (N, units): I(T;Y) = H(T) + H(Y) − H(T,Y)."""
    n = codes.shape[0]
    words = _pack(codes, base)
    yk = y.astype(jnp.int64)
    out = jax.lax.sort((*words, yk), num_keys=len(words) + 1)
    sw, sy = out[:-1], out[-1]
    first = jnp.zeros((1,), bool).at[0].set(True)
    diff_t = jnp.zeros(n - 1, bool)
    for w in sw:
        diff_t = diff_t | (w[1:] != w[:-1])
    new_t = jnp.concatenate([first, diff_t])
    new_ty = jnp.concatenate([first, diff_t | (sy[1:] != sy[:-1])])
    ys = jnp.sort(yk)
    new_y = jnp.concatenate([first, ys[1:] != ys[:-1]])
    h_t = _plugin_entropy_bits(new_t, n)
    h_ty = _plugin_entropy_bits(new_ty, n)
    h_y = _plugin_entropy_bits(new_y, n)
    return h_t, h_t + h_y - h_ty


def _binned_one(t, y, edges):
    codes = jnp.searchsorted(edges, t, side="right")  # == np.digitize(t, edges)
    return _pattern_mi(codes, y, edges.shape[0] + 1)


@jax.jit
def _binned_batch(t, y, edges):
    return jax.vmap(_binned_one, in_axes=(0, None, None))(t, y, edges)


def binned_mi(t, y, edges) -> tuple[jax.Array, jax.Array]:
    """Plug-in (I(X;T), I(T;Y)) in bits after binning every unit with ``edges``.

    Each activation a gets the bin code c = np.digitize(a, edges), i.e. c = i with
    edges[i−1] ≤ a < edges[i]; values below edges[0] get code 0 and values ≥ edges[-1] get
    code len(edges), bins of their own. A row of codes is the discrete pattern T̂. With p̂ the
    empirical distribution of patterns over the N equiprobable inputs,

        I(X;T) = H(T̂) = −Σ_t p̂(t) log₂ p̂(t),
        I(T;Y) = H(T̂) − Σ_y p(y) H(T̂ | Y = y)   ( = H(T̂) + H(Y) − H(T̂, Y) ).

    Shwartz-Ziv & Tishby (2017) use ``edges = linspace(-1, 1, 30)`` (`tishby_edges`);
    Saxe et al. (2018) fixed width 0.07 (`fixed_width_edges`); `range_edges` spans the layer's
    range. Patterns are counted by one lexicographic sort of the packed integer codes (with y
    as the last key) and run lengths; no loop over rows.

    Args:
        t: activations, (N, units) or (epochs, N, units); finite.
        y: labels, (N,) non-negative integers.
        edges: strictly increasing bin edges, 1-D.

    Returns:
        ``(i_xt, i_ty)`` float64 scalars in bits (or (epochs,) arrays for 3-D ``t``).
    """
    t, y, batched = _check_t_y(t, y)
    e = _check_edges(edges)
    with jax.enable_x64(True):
        tt = jnp.asarray(t)
        if not batched:
            tt = tt[None]
        i_xt, i_ty = _binned_batch(tt, jnp.asarray(y), jnp.asarray(e, dtype=tt.dtype))
    return (i_xt, i_ty) if batched else (i_xt[0], i_ty[0])


def _ebab_one(t, y, n_bins: int):
    flat = jnp.sort(t.reshape(-1))
    m = flat.shape[0]
    nonzero = flat != 0
    is_new = jnp.concatenate([jnp.ones((1,), bool), flat[1:] != flat[:-1]]) & nonzero
    n_distinct = jnp.sum(is_new)
    rank = jnp.cumsum(is_new)  # number of distinct non-zero values up to each position
    k = jnp.arange(1, n_bins)
    r = (k * n_distinct) // n_bins  # 0-based rank of the distinct value at interior edge k
    pos = jnp.clip(jnp.searchsorted(rank, r + 1, side="left"), 0, m - 1)
    inner = jnp.where(n_distinct > 0, flat[pos], jnp.inf)  # n_bins − 1 edges, non-decreasing
    codes = jnp.where(t == 0, 0, 1 + jnp.searchsorted(inner, t, side="right"))
    return _pattern_mi(codes, y, n_bins + 1)


@jax.jit
def _ebab_batch(t, y, n_bins_arr):
    n_bins = n_bins_arr.shape[0]
    return jax.vmap(_ebab_one, in_axes=(0, None, None))(t, y, n_bins)


def adaptive_binned_mi(t, y, n_bins: int = 30) -> tuple[jax.Array, jax.Array]:
    """Entropy-based adaptive binning, EBAB (Chelombiev, Houghton & O'Donnell 2019), in bits.

    The distinct non-zero activation values of the layer, pooled over its units and sorted,
    d₀ < d₁ < … < d_{m−1}, are split into ``n_bins`` bins holding equal numbers of distinct
    values: the interior edges are d_{⌊k·m/n_bins⌋}, k = 1, …, n_bins − 1, and a value a gets
    the bin np.digitize(a, interior edges). Exact zeros (ReLU's inactive units) get a bin of
    their own. The entropies of the binned patterns are then the plug-in ones of `binned_mi`:
    I(X;T) = H(T̂), I(T;Y) = H(T̂) − Σ_y p(y) H(T̂|y). The edges are recomputed for every
    epoch of a 3-D ``t``.

    Returns ``(i_xt, i_ty)`` float64 in bits (arrays over epochs for 3-D ``t``).
    """
    t, y, batched = _check_t_y(t, y)
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    with jax.enable_x64(True):
        tt = jnp.asarray(t)
        if not batched:
            tt = tt[None]
        # n_bins travels as a static shape so that one jit cache entry serves each value.
        i_xt, i_ty = _ebab_batch(tt, jnp.asarray(y), jnp.zeros(int(n_bins), jnp.int8))
    return (i_xt, i_ty) if batched else (i_xt[0], i_ty[0])


# --------------------------------------------------------------------------------------------
# KDE: pairwise-distance bounds on the entropy of a Gaussian mixture
# --------------------------------------------------------------------------------------------


class KDEMI(NamedTuple):
    """Upper (Kolchinsky–Tracey KL) and lower (Bhattacharyya) estimates, in bits."""

    upper_i_xt: jax.Array
    upper_i_ty: jax.Array
    lower_i_xt: jax.Array
    lower_i_ty: jax.Array

    @property
    def upper(self) -> tuple[jax.Array, jax.Array]:
        return self.upper_i_xt, self.upper_i_ty

    @property
    def lower(self) -> tuple[jax.Array, jax.Array]:
        return self.lower_i_xt, self.lower_i_ty


def _kde_one(t, y, noise_var, n_classes: int):
    n = t.shape[0]
    t = t.astype(jnp.float32)
    t = t - jnp.mean(t, axis=0)  # distances are shift-invariant; centring reduces Gram rounding
    sq = jnp.sum(t * t, axis=1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * (t @ t.T), 0.0)
    d2 = jnp.fill_diagonal(d2, 0.0, inplace=False)  # exact zero self-distance
    onehot = jax.nn.one_hot(y, n_classes, dtype=jnp.float32)
    n_y = jnp.sum(onehot, axis=0).astype(jnp.float64)
    log_n_yi = jnp.log(n_y[y])
    var = noise_var.astype(jnp.float32)

    def bound(k):
        # The self-term exp(0) = 1 is the largest, so Σⱼ exp(−D_ij/(c σ²)) ≥ 1 needs no shift.
        per_class = (k @ onehot).astype(jnp.float64)  # (N, classes): Σ_{j in class c}
        s_all = jnp.sum(per_class, axis=1)
        s_same = jnp.take_along_axis(per_class, y[:, None], axis=1)[:, 0]
        i_xt = -jnp.mean(jnp.log(s_all) - math.log(n))
        h_t_given_y = -jnp.mean(jnp.log(s_same) - log_n_yi)
        return i_xt / LOG2, (i_xt - h_t_given_y) / LOG2

    k_lower = jnp.exp(-d2 / (8.0 * var))
    k_upper = jnp.square(jnp.square(k_lower))  # exp(−D/(2σ²)) without a second exp
    up_xt, up_ty = bound(k_upper)
    lo_xt, lo_ty = bound(k_lower)
    return up_xt, up_ty, lo_xt, lo_ty


def _kde_batch_impl(t, y, noise_var, n_classes):
    return jax.lax.map(lambda a: _kde_one(a[0], y, a[1], n_classes), (t, noise_var))


_kde_batch = jax.jit(_kde_batch_impl, static_argnums=3)


def _adaptive_var(t, scale):
    return scale * jnp.max(jnp.abs(t).reshape(t.shape[0], -1), axis=1) ** 2


def _kde_call(t, y, batched, noise_var_fn):
    with jax.enable_x64(True):
        tt = jnp.asarray(t, dtype=jnp.float32)
        if not batched:
            tt = tt[None]
        var = noise_var_fn(tt)
        out = _kde_batch(tt, jnp.asarray(y, jnp.int32), var, _n_classes(y))
    return KDEMI(*out) if batched else KDEMI(*(o[0] for o in out))


def kde_mi(t, y, noise_var: float = 0.1) -> KDEMI:
    """Pairwise-distance bounds on I(X;T) and I(T;Y) for T + Z, Z ~ N(0, σ²I), in bits.

    With σ² = ``noise_var``, d the number of units and D_ij = ‖tᵢ − tⱼ‖², the entropy of the
    mixture (1/N) Σᵢ N(tᵢ, σ²I) is bounded (Kolchinsky & Tracey 2017) in nats by

        upper (KL):   Ĥ_KL = (d/2)(log 2πσ² + 1) − (1/N) Σᵢ log((1/N) Σⱼ exp(−D_ij / (2σ²)))
        lower (BD):   Ĥ_BD = (d/2)(log 2πσ² + 1) − (1/N) Σᵢ log((1/N) Σⱼ exp(−D_ij / (8σ²)))

    (the KL divergence between the components is D_ij/(2σ²); the Bhattacharyya distance is
    D_ij/(8σ²). Saxe et al.'s code writes Ĥ_BD as the KL estimator at variance 4σ² plus
    (d/2) log(1/4), which is the same.) H(T+Z | X) = (d/2)(log 2πσ² + 1), so

        I(X;T) = −(1/N) Σᵢ log((1/N) Σⱼ exp(−D_ij / (c σ²))),   c = 2 (upper), 8 (lower),
        I(T;Y) = Ĥ(T) − Σ_y p(y) Ĥ(T|Y=y),

    with Ĥ(T|Y=y) the same formula over the N_y inputs of class y (the constant cancels).
    The I(T;Y) values apply each bound to both terms, as Saxe et al. (2018) do; their
    difference is an estimate, not a bound. Saxe et al. use σ² = 0.1. Results are converted to
    bits. The distances use the Gram trick ‖a‖² + ‖b‖² − 2a·b in float32 on the centred
    activations, clamped at 0, with the self-distance set to exactly 0; the sums over i are
    float64. exp(−D/(2σ²)) is computed as exp(−D/(8σ²))⁴. Epochs of a 3-D ``t`` are
    processed one after another (``lax.map``), so memory is one N × N matrix.

    Returns a `KDEMI` (``upper``, ``lower`` pairs; float64, arrays over epochs for 3-D ``t``).
    """
    t, y, batched = _check_t_y(t, y)
    v = _check_positive(noise_var, "noise_var")
    return _kde_call(t, y, batched, lambda tt: jnp.full(tt.shape[0], v, jnp.float32))


def adaptive_kde_mi(t, y, scale: float = 0.1) -> KDEMI:
    """`kde_mi` with noise variance σ² = ``scale`` × (max |t| over the layer)², in bits.

    Chelombiev, Houghton & O'Donnell (2019) scale the KDE noise with the layer's activation
    range so that the estimate does not change when the whole layer is rescaled (a fixed σ² makes
    growing ReLU layers look ever more injective). We choose the variance proportional to the
    square of the largest absolute activation of the layer at that epoch (pooled over units), so
    the noise standard deviation is √scale × max|t|: then adaptive_kde_mi(c·t) = adaptive_kde_mi(t)
    for any c ≠ 0. For tanh layers near saturation (max|t| ≈ 1) this is `kde_mi` with
    σ² = ``scale``. For an all-zero layer σ² = 0 is replaced by 1 (all points coincide, so every
    estimate is 0 whatever σ²).
    """
    t, y, batched = _check_t_y(t, y)
    s = _check_positive(scale, "scale")

    def var_fn(tt):
        v = _adaptive_var(tt, s)
        return jnp.where(v > 0, v, 1.0).astype(jnp.float32)

    return _kde_call(t, y, batched, var_fn)
