"""Estimating the task parameters (m, δ, R) of the inductive-bias complexity from data.

Boopathy et al. (2023), §5 estimate the intrinsic dimension m by maximum likelihood on
k-nearest-neighbour distances and the resolution δ (smallest distance between classes) by
sampling or by extreme-value theory; R is the largest data norm. This module provides

- `nearest_neighbors`: exact k-NN in JAX, tiled over query and point blocks so that no
  n × n matrix is ever formed (peak memory ~ query_block × point_block);
- `mle_intrinsic_dimension`: Levina & Bickel (2004) with MacKay & Ghahramani (2005) pooling,

      1/m̂ = (1/N) Σ_i (1/(k−1)) Σ_{j<k} ln(T_k(x_i) / T_j(x_i)),

  where T_j(x) is the distance from x to its j-th nearest neighbour (averaging the inverse
  local estimates is unbiased for 1/m on a locally Poisson sample);
- `twonn_intrinsic_dimension`: Facco et al. (2017), TwoNN, maximum-likelihood form,
  m̂ = (N − 1) / Σ_i ln(T₂(x_i)/T₁(x_i));
- `sample_resolution`: δ̂ = min over differently-labelled pairs of a point sample, ignoring
  distances below ``floor`` (the paper's code uses floor = 1 on [0, 1] pixel scale, which
  drops near-duplicate images with conflicting labels);
- `evt_resolution`: δ̂ from the moment (Dekkers–Einmahl–de Haan 1989) extreme-value
  estimator on the inverse distances of random differently-labelled pairs, extrapolated to
  the number of distinct such pairs in the whole data set;
- `task_complexity`: the three combined into Ĩ (`inductive_bias_complexity`).

Shapes: ``x`` is (n, ...) — every trailing axis is flattened into d features — and ``y`` is
(n,) integer labels. The JAX kernels follow the dtype of ``x`` (float32 unless x64 is on);
the final reductions are float64 numpy. Duplicate points make the MLE infinite and δ zero:
they raise ValueError instead.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from theory.complexity.measure import inductive_bias_complexity

__all__ = [
    "nearest_neighbors",
    "neighbor_distances",
    "mle_from_distances",
    "twonn_from_distances",
    "mle_intrinsic_dimension",
    "mle_intrinsic_dimension_by_k",
    "twonn_intrinsic_dimension",
    "sample_resolution",
    "evt_resolution",
    "ResolutionEstimate",
    "TaskEstimate",
    "task_complexity",
]

_HIGHEST = jax.lax.Precision.HIGHEST  # no TF32 shortcuts on GPU: distances need full precision


# --------------------------------------------------------------------- validation


def _check_points(x, name: str = "x", min_points: int = 2) -> jnp.ndarray:
    """(n, d) floating array from ``x`` of shape (n, ...); errors name the argument."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be an array of shape (n, ...), got {type(x).__name__}")
    arr = jnp.asarray(x)
    if not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
        raise TypeError(f"{name} must have a real numeric dtype, got {arr.dtype}")
    if arr.ndim < 2:
        raise ValueError(f"{name} must have shape (n, ...) with features, got shape {arr.shape}")
    arr = arr.reshape(arr.shape[0], -1)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.float32)
    if arr.shape[0] < min_points:
        raise ValueError(f"{name} needs at least {min_points} points, got {arr.shape[0]}")
    if not bool(jnp.all(jnp.isfinite(arr))):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return arr


def _check_labels(y, n: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match x, got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)):
        raise TypeError(f"y must hold integer class labels, got dtype {arr.dtype}")
    if np.unique(arr).size < 2:
        raise ValueError("y must contain at least two classes")
    return arr


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _key(key) -> jax.Array:
    return jax.random.PRNGKey(0) if key is None else key


def _query_subset(n: int, num_queries: int | None, key) -> np.ndarray:
    """Indices of the query points: all, or ``num_queries`` drawn without replacement."""
    if num_queries is None or num_queries >= n:
        return np.arange(n)
    _check_int("num_queries", num_queries, 1)
    return np.asarray(jax.random.choice(_key(key), n, (num_queries,), replace=False))


# ---------------------------------------------------------------- tiled k-NN


def _sq_dist(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """‖a_i − b_j‖² by the Gram expansion, (p, d) × (q, d) -> (p, q); used to rank only."""
    cross = jnp.matmul(a, b.T, precision=_HIGHEST)
    return jnp.maximum(jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :] - 2 * cross, 0)


def _blocks(a: jnp.ndarray, block: int, fill) -> jnp.ndarray:
    """Pad axis 0 to a multiple of ``block`` and split it: (n, ...) -> (n/block, block, ...)."""
    nb = -(-a.shape[0] // block)
    pad = [(0, nb * block - a.shape[0])] + [(0, 0)] * (a.ndim - 1)
    return jnp.pad(a, pad, constant_values=fill).reshape(nb, block, *a.shape[1:])


@partial(jax.jit, static_argnames=("k", "query_block", "point_block"))
def _knn_tiled(queries, query_ids, points, k, query_block, point_block):
    n = points.shape[0]
    pts = _blocks(points, point_block, 0)  # (P, pb, d)
    pids = _blocks(jnp.arange(n, dtype=jnp.int32), point_block, n)  # (P, pb); n: padding
    qs = _blocks(queries, query_block, 0)  # (Q, qb, d)
    qids = _blocks(query_ids, query_block, -1)  # (Q, qb)

    def one_query_block(args):
        qb, qi = args

        def step(carry, blk):
            best_d, best_i = carry  # (qb, k) each
            pb, pi = blk
            d2 = _sq_dist(qb, pb)  # (qb, pb): the only pairwise tile held in memory
            keep = (pi[None, :] < n) & (pi[None, :] != qi[:, None])
            d2 = jnp.where(keep, d2, jnp.inf)
            cand_d = jnp.concatenate([best_d, d2], axis=1)
            cand_i = jnp.concatenate([best_i, jnp.broadcast_to(pi, d2.shape)], axis=1)
            neg, pos = jax.lax.top_k(-cand_d, k)
            return (-neg, jnp.take_along_axis(cand_i, pos, axis=1)), None

        init = (
            jnp.full((qb.shape[0], k), jnp.inf, points.dtype),
            jnp.full((qb.shape[0], k), n, jnp.int32),
        )
        (_, idx), _ = jax.lax.scan(step, init, (pts, pids))
        # Recompute the chosen distances directly: the Gram expansion cancels badly for
        # near neighbours and would hide exact duplicates (distance 0).
        nbrs = points[jnp.minimum(idx, n - 1)]  # (qb, k, d)
        exact = jnp.sqrt(jnp.sum((qb[:, None, :] - nbrs) ** 2, axis=-1))
        order = jnp.argsort(exact, axis=1)
        return jnp.take_along_axis(exact, order, 1), jnp.take_along_axis(idx, order, 1)

    dist, idx = jax.lax.map(one_query_block, (qs, qids))
    nq = queries.shape[0]
    return dist.reshape(-1, k)[:nq], idx.reshape(-1, k)[:nq]


def nearest_neighbors(
    queries,
    points,
    k: int,
    *,
    query_indices=None,
    query_block: int = 256,
    point_block: int = 2048,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Exact k nearest neighbours (Euclidean) of each query among ``points``, tiled.

    Memory is O(query_block × (point_block + k)): the n_q × n distance matrix is never
    formed; a `lax.scan` over point blocks keeps a running top-k per query (`lax.top_k`),
    and the final k distances are recomputed as ‖q − x‖ directly.

    Args:
        queries: (n_q, ...) query points.
        points: (n, ...) points to search, same trailing shape.
        k: number of neighbours, 1 ≤ k ≤ n (≤ n − 1 when queries are among the points).
        query_indices: optional (n_q,) index of each query within ``points``; that point is
            excluded from its own neighbours (the point itself, not its duplicates).
        query_block, point_block: tile sizes.

    Returns:
        (distances, indices), each (n_q, k), sorted by increasing distance.
    """
    x = _check_points(points, "points", min_points=1)
    q = _check_points(queries, "queries", min_points=1)
    if q.shape[1] != x.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} features but points have {x.shape[1]}")
    k = _check_int("k", k, 1)
    if query_indices is None:
        qi = jnp.full((q.shape[0],), -1, jnp.int32)
        k_max = x.shape[0]
    else:
        qi = jnp.asarray(query_indices, dtype=jnp.int32)
        if qi.shape != (q.shape[0],):
            raise ValueError(f"query_indices must have shape ({q.shape[0]},), got {qi.shape}")
        k_max = x.shape[0] - 1
    if k > k_max:
        raise ValueError(f"k must be <= {k_max} for {x.shape[0]} points, got {k}")
    _check_int("query_block", query_block, 1)
    _check_int("point_block", point_block, 1)
    q = q.astype(x.dtype)
    return _knn_tiled(q, qi, x, k, min(query_block, q.shape[0]), min(point_block, x.shape[0]))


def neighbor_distances(
    x, k: int, *, num_queries: int | None = None, key=None, point_block: int = 2048
) -> np.ndarray:
    """(N, k) float64 sorted distances T_1..T_k from N query points to their k nearest
    neighbours among all n points of ``x`` (each query excluded from its own list).

    The input of `mle_from_distances` and `twonn_from_distances`, so that one search serves
    several estimates. ``num_queries`` draws N query points without replacement with ``key``
    (default: all n). Raises ValueError on duplicate points (T_1 = 0).
    """
    x = _check_points(x)
    k = _check_int("k", k, 1)
    if k > x.shape[0] - 1:
        raise ValueError(f"k must be <= n - 1 = {x.shape[0] - 1}, got {k}")
    idx = _query_subset(x.shape[0], num_queries, key)
    dist, _ = nearest_neighbors(x[idx], x, k, query_indices=idx, point_block=point_block)
    dist = np.asarray(dist, dtype=np.float64)
    if np.any(dist[:, 0] <= 0):
        raise ValueError(
            "x contains duplicate points (zero nearest-neighbour distance), which make the "
            "dimension estimate infinite; remove them first, e.g. np.unique(x, axis=0)"
        )
    return dist


# ---------------------------------------------------------- intrinsic dimension


def mle_from_distances(distances, k: int) -> float:
    """Pooled Levina–Bickel MLE from sorted neighbour distances (N, ≥ k); see
    `mle_intrinsic_dimension`."""
    dist = np.asarray(distances, dtype=np.float64)
    k = _check_int("k", k, 2)
    if dist.ndim != 2 or dist.shape[1] < k:
        raise ValueError(f"distances must have shape (N, >= {k}), got {dist.shape}")
    log_ratio = np.log(dist[:, k - 1 : k]) - np.log(dist[:, : k - 1])  # (N, k−1)
    inverse_local = log_ratio.sum(axis=1) / (k - 1)  # 1/m̂_k(x_i), Levina–Bickel
    return float(1.0 / inverse_local.mean())  # MacKay–Ghahramani: average the inverses


def twonn_from_distances(distances) -> float:
    """TwoNN maximum-likelihood estimate from sorted neighbour distances (N, ≥ 2); see
    `twonn_intrinsic_dimension`."""
    dist = np.asarray(distances, dtype=np.float64)
    if dist.ndim != 2 or dist.shape[1] < 2:
        raise ValueError(f"distances must have shape (N, >= 2), got {dist.shape}")
    log_mu = np.log(dist[:, 1]) - np.log(dist[:, 0])
    return float((log_mu.size - 1) / log_mu.sum())


def mle_intrinsic_dimension(
    x, k: int = 5, *, num_queries: int | None = None, key=None, point_block: int = 2048
) -> float:
    """Intrinsic dimension by maximum likelihood, Levina & Bickel (2004) with MacKay &
    Ghahramani (2005) pooling, as used by Boopathy et al. (2023), §5:

        m̂ = [ (1/N) Σ_i (1/(k−1)) Σ_{j=1}^{k−1} ln(T_k(x_i)/T_j(x_i)) ]^{−1}.

    Args ↔ symbols: ``x`` (n, ...) data; ``k`` ↔ k neighbours (≥ 2); ``num_queries`` ↔ N,
    the number of points x_i averaged over (drawn without replacement with ``key``;
    default all n). Neighbours are always searched among all n points.
    """
    x = _check_points(x)
    k = _check_int("k", k, 2)
    if k > x.shape[0] - 1:
        raise ValueError(f"k must be <= n - 1 = {x.shape[0] - 1}, got {k}")
    return mle_from_distances(
        neighbor_distances(x, k, num_queries=num_queries, key=key, point_block=point_block), k
    )


def mle_intrinsic_dimension_by_k(
    x, ks, *, num_queries: int | None = None, key=None, point_block: int = 2048
) -> np.ndarray:
    """`mle_intrinsic_dimension` for each k in ``ks`` from one neighbour search; (len(ks),)."""
    x = _check_points(x)
    ks = [_check_int("ks", int(k) if isinstance(k, np.integer) else k, 2) for k in ks]
    if not ks:
        raise ValueError("ks must be a non-empty sequence of integers >= 2")
    if max(ks) > x.shape[0] - 1:
        raise ValueError(f"every k must be <= n - 1 = {x.shape[0] - 1}, got {max(ks)}")
    dist = neighbor_distances(x, max(ks), num_queries=num_queries, key=key, point_block=point_block)
    return np.array([mle_from_distances(dist, k) for k in ks])


def twonn_intrinsic_dimension(
    x, *, num_queries: int | None = None, key=None, point_block: int = 2048
) -> float:
    """Intrinsic dimension by TwoNN, Facco et al. (2017), in maximum-likelihood form.

    With μ_i = T₂(x_i)/T₁(x_i) Pareto-distributed with index m, P(μ > t) = t^(−m):

        m̂ = (N − 1) / Σ_i ln μ_i        ((N − 1): the unbiased-for-m correction).

    Args ↔ symbols: ``x`` (n, ...) data; ``num_queries`` ↔ N (default all n points).
    """
    x = _check_points(x, min_points=3)
    dist = neighbor_distances(x, 2, num_queries=num_queries, key=key, point_block=point_block)
    return twonn_from_distances(dist)


# ------------------------------------------------------------------- resolution


_CANDIDATES = 8  # near pairs per point re-measured exactly (covers up to 7 near-duplicates)


@partial(jax.jit, static_argnames=("query_block", "point_block"))
def _cross_label_nearest(x, y, floor, query_block, point_block):
    """For each point, its nearest differently-labelled point at distance ≥ ``floor``.

    The tiles rank pairs by the Gram expansion, whose rounding error is about
    eps·(‖a‖² + ‖b‖²); pairs are pre-filtered against floor² minus that slack, the best
    `_CANDIDATES` per point are re-measured exactly, and the floor is applied exactly.
    """
    n = x.shape[0]
    slack = 8 * jnp.finfo(x.dtype).eps
    pts, pys = _blocks(x, point_block, 0), _blocks(y, point_block, -1)
    pids = _blocks(jnp.arange(n), point_block, n)
    qs, qys = _blocks(x, query_block, 0), _blocks(y, query_block, -1)
    c = min(_CANDIDATES, n)

    def one_query_block(args):
        qb, qy = args
        qn = jnp.sum(qb * qb, 1)

        def step(carry, blk):
            best_d, best_i = carry  # (qb, c)
            pb, py, pi = blk
            d2 = _sq_dist(qb, pb)  # (qb, pb)
            tol = slack * (qn[:, None] + jnp.sum(pb * pb, 1)[None, :])
            keep = (pi[None, :] < n) & (py[None, :] != qy[:, None]) & (d2 >= floor**2 - tol)
            d2 = jnp.where(keep, d2, jnp.inf)
            cand_d = jnp.concatenate([best_d, d2], axis=1)
            cand_i = jnp.concatenate([best_i, jnp.broadcast_to(pi, d2.shape)], axis=1)
            neg, pos = jax.lax.top_k(-cand_d, c)
            return (-neg, jnp.take_along_axis(cand_i, pos, axis=1)), None

        init = (jnp.full((qb.shape[0], c), jnp.inf, x.dtype), jnp.full((qb.shape[0], c), n))
        (best_d, best_i), _ = jax.lax.scan(step, init, (pts, pys, pids))
        nbrs = x[jnp.minimum(best_i, n - 1)]  # (qb, c, d)
        exact = jnp.sqrt(jnp.sum((qb[:, None, :] - nbrs) ** 2, axis=-1))
        ok = (best_i < n) & jnp.isfinite(best_d) & (exact >= floor)
        return jnp.min(jnp.where(ok, exact, jnp.inf), axis=1)

    return jax.lax.map(one_query_block, (qs, qys)).reshape(-1)[:n]


def sample_resolution(
    x,
    y,
    *,
    num_samples: int | None = None,
    floor: float = 0.0,
    key=None,
    point_block: int = 2048,
) -> float:
    """Resolution δ̂: the smallest distance between differently-labelled points of a sample.

    Boopathy et al. (2023), §5: δ = min_{y_i ≠ y_j, ‖x_i − x_j‖ ≥ floor} ‖x_i − x_j‖ over
    ``num_samples`` points drawn without replacement (default: all n). Pairs closer than
    ``floor`` are ignored (label noise / near-duplicates). The scan is tiled: no n × n matrix.
    """
    x = _check_points(x)
    y = _check_labels(y, x.shape[0])
    floor = float(floor)
    if not np.isfinite(floor) or floor < 0:
        raise ValueError(f"floor must be a finite number >= 0, got {floor}")
    idx = _query_subset(x.shape[0], num_samples, key)
    xs, ys = x[idx], jnp.asarray(y[idx], dtype=jnp.int32)
    if np.unique(y[idx]).size < 2:
        raise ValueError("the sample holds a single class; increase num_samples")
    nearest = np.asarray(
        _cross_label_nearest(xs, ys, floor, min(256, xs.shape[0]), min(point_block, xs.shape[0]))
    )
    delta = float(nearest.min())
    if not np.isfinite(delta):
        raise ValueError(f"no differently-labelled pair is at least floor={floor} apart")
    if delta <= 0:
        raise ValueError(
            "x contains duplicate points with different labels (distance 0 between classes); "
            "remove them or pass floor > 0"
        )
    return delta


class ResolutionEstimate(NamedTuple):
    """`evt_resolution`'s result."""

    delta: float  # δ̂: extrapolated minimum distance between classes (≤ sample_min)
    sample_min: float  # smallest sampled distance between differently-labelled points
    gamma: float  # moment estimate of the extreme-value index of 1/distance
    num_pairs: int  # differently-labelled pairs actually sampled


@partial(jax.jit, static_argnames=("num_pairs", "chunk"))
def _random_pair_distances(key, x, y, num_pairs, chunk):
    """Distances of ``num_pairs`` uniform ordered pairs (i, j) and whether y_i ≠ y_j."""
    n = x.shape[0]
    ki, kj = jax.random.split(key)
    i = _blocks(jax.random.randint(ki, (num_pairs,), 0, n), chunk, 0)  # (P, chunk)
    j = _blocks(jax.random.randint(kj, (num_pairs,), 0, n), chunk, 0)

    def one_chunk(ij):
        a, b = ij
        return jnp.sqrt(jnp.sum((x[a] - x[b]) ** 2, axis=-1)), y[a] != y[b]

    d, differ = jax.lax.map(one_chunk, (i, j))
    return d.reshape(-1)[:num_pairs], differ.reshape(-1)[:num_pairs]


def evt_resolution(
    x, y, *, num_pairs: int = 2**20, k: int = 1000, floor: float = 0.0, key=None
) -> ResolutionEstimate:
    """Resolution δ̂ by extreme-value extrapolation (Boopathy et al. 2023, §5; the moment
    estimator of Dekkers, Einmahl & de Haan 1989, quantile form of de Haan & Ferreira 2006, §4).

    Let Z = 1/‖x_i − x_j‖ over uniform pairs with y_i ≠ y_j (distances < ``floor`` dropped),
    Z_(1) ≥ … ≥ Z_(k+1) its largest order statistics among N sampled pairs, and
    M_r = (1/k) Σ_{i≤k} (ln Z_(i) − ln Z_(k+1))^r. Then

        γ̂ = M₁ + 1 − ½ (1 − M₁²/M₂)^{−1},   â = Z_(k+1) M₁ (1 − γ̂₋),  γ̂₋ = γ̂ − M₁,
        ẑ = Z_(k+1) + â ((k P / N)^γ̂ − 1) / γ̂,     δ̂ = min(1/ẑ, sampled minimum),

    with P = (n² − Σ_c n_c²)/2 the number of distinct differently-labelled pairs, so ẑ
    estimates the largest of the P inverse distances.

    Args: ``num_pairs`` ordered pairs drawn (about (1 − Σ π_c²) of them differ in label);
    ``k`` upper order statistics; ``floor`` as in `sample_resolution`; ``key`` PRNG key.
    """
    x = _check_points(x)
    y = _check_labels(y, x.shape[0])
    num_pairs = _check_int("num_pairs", num_pairs, 2)
    k = _check_int("k", k, 2)
    floor = float(floor)
    if not np.isfinite(floor) or floor < 0:
        raise ValueError(f"floor must be a finite number >= 0, got {floor}")
    _, codes = np.unique(y, return_inverse=True)
    d, differ = _random_pair_distances(
        _key(key), x, jnp.asarray(codes, dtype=jnp.int32), num_pairs, min(8192, num_pairs)
    )
    d = np.asarray(d, dtype=np.float64)[np.asarray(differ)]
    if np.any(d <= 0) and floor == 0:
        raise ValueError(
            "x contains duplicate points with different labels (distance 0 between classes); "
            "remove them or pass floor > 0"
        )
    d = d[d >= floor]
    if d.size < k + 1:
        raise ValueError(
            f"only {d.size} usable differently-labelled pairs were sampled, need k + 1 = {k + 1}; "
            "increase num_pairs or decrease k"
        )
    z = np.sort(1.0 / d)[::-1][: k + 1]  # Z_(1) ≥ … ≥ Z_(k+1)
    logs = np.log(z[:k]) - np.log(z[k])
    m1, m2 = logs.mean(), (logs**2).mean()
    gamma_minus = 1.0 - 0.5 / (1.0 - m1**2 / m2)
    gamma = m1 + gamma_minus
    scale = z[k] * m1 * (1.0 - gamma_minus)
    counts = np.bincount(codes).astype(np.float64)
    total_pairs = 0.5 * (counts.sum() ** 2 - (counts**2).sum())
    t = k * total_pairs / d.size  # (k/(N p)) with p = 1/P
    growth = np.log(t) if abs(gamma) < 1e-12 else np.expm1(gamma * np.log(t)) / gamma
    z_hat = z[k] + scale * growth
    sample_min = float(1.0 / z[0])
    delta = sample_min if z_hat <= z[0] else float(1.0 / z_hat)
    return ResolutionEstimate(delta, sample_min, float(gamma), int(d.size))


# --------------------------------------------------------------- whole task


class TaskEstimate(NamedTuple):
    """`task_complexity`'s result: the estimated parameters and Ĩ."""

    n: int  # training points
    num_classes: int  # C
    radius: float  # R = max ‖x_i‖
    dimension_estimate: float  # m̂ from the MLE (before rounding)
    dimension: float  # m used in Ĩ
    delta: float  # δ used in Ĩ
    bits: float  # Ĩ
    log10_bits: float  # log₁₀ Ĩ


def task_complexity(
    x,
    y,
    error: float,
    *,
    k: int = 5,
    m: float | None = None,
    delta="sample",
    floor: float = 0.0,
    num_queries: int | None = None,
    num_samples: int | None = None,
    round_dimension: bool = True,
    key=None,
) -> TaskEstimate:
    """Ĩ of a classification data set estimated end to end (Boopathy et al. 2023, §5).

    n = len(x), C = number of distinct labels, R = max_i ‖x_i‖, m = round(m̂_MLE(k)) unless
    ``m`` is given, δ by ``delta`` ∈ {"sample", "evt"} (`sample_resolution`,
    `evt_resolution`, both with ``floor``) or a given positive number, then
    `inductive_bias_complexity(n, m, R, δ, C, error)`.

    ``num_queries`` subsamples the MLE's query points; ``num_samples`` the points of the
    sampled δ. ``key`` seeds every random choice (default PRNGKey(0)).
    """
    x = _check_points(x)
    y = _check_labels(y, x.shape[0])
    if not 0 < error < 1:  # fail before the expensive estimates
        raise ValueError(f"error (target error ε) must lie in (0, 1), got {error!r}")
    if isinstance(delta, str) and delta not in ("sample", "evt"):
        raise ValueError(f"delta must be 'sample', 'evt' or a positive number, got {delta!r}")
    if not isinstance(delta, str) and not delta > 0:
        raise ValueError(f"delta must be 'sample', 'evt' or a positive number, got {delta!r}")
    key = _key(key)
    k_dim, k_delta = jax.random.split(key)
    n = x.shape[0]
    radius = float(jnp.max(jnp.linalg.norm(x, axis=1)))
    if m is None:
        m_hat = mle_intrinsic_dimension(x, k, num_queries=num_queries, key=k_dim)
        m_used = float(max(1.0, np.round(m_hat))) if round_dimension else m_hat
    else:
        m_hat = m_used = float(m)
    if isinstance(delta, str):
        if delta == "sample":
            delta_used = sample_resolution(x, y, num_samples=num_samples, floor=floor, key=k_delta)
        else:
            delta_used = evt_resolution(x, y, floor=floor, key=k_delta).delta
    else:
        delta_used = float(delta)
    C = int(np.unique(y).size)
    ibc = inductive_bias_complexity(n, m_used, radius, delta_used, C, error)
    return TaskEstimate(
        n,
        C,
        radius,
        float(m_hat),
        float(m_used),
        delta_used,
        float(ibc.bits),
        float(ibc.log10_bits),
    )
