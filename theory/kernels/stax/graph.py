r"""Graph networks: `Aggregate`, the message-passing (neighbourhood sum) layer.

Each input ``x`` of shape (n, X_1, …, X_N, C) comes with a graph over the sites of its
aggregated axes A ⊆ {X_1, …, X_N} (vertices v = (x_a)_{a ∈ A}): a weighted adjacency
``pattern[n, v, w]`` (v the tail, w the head of an arc). The layer replaces every vertex by the
weighted sum of its direct predecessors (Du et al. 2019, "Graph Neural Tangent Kernel",
arXiv:1905.13192, eq. 3; neural-tangents 0.6.5 ``stax.Aggregate``)::

    out[n, w, …, c] = Σ_v pattern[n, v, w] · x[n, v, …, c]          (outᵀ = patternᵀ x)

It is linear in x with no parameters, so for two inputs with patterns P₁ (of x₁) and P₂ (of
x₂) the covariances of the outputs over a width-C (→ ∞) channel axis are, at every pair of
vertices (w, w') and any other site axes carried along unchanged,

    K'[i, j; w, w'] = Σ_{v, v'} P₁[i, v, w] K[i, j; v, v'] P₂[j, v', w']   (K' = P₁ᵀ K P₂),

and the same for the NTK Θ (no parameters: nothing is added) and for the per-point blocks
cov1 = P₁ᵀ cov1 P₁, cov2 = P₂ᵀ cov2 P₂. This needs the kernel at every pair of sites of the
aggregated axes, so the network keeps the full spatial covariance up to here (`Diagonal`
(NO, NO), as in neural-tangents). Gaussianity is kept (a linear map of a centred GP).

Cost: ``apply_fn`` O(n V² C) (dense), ``kernel_fn`` O(n₁ n₂ V³) time and O(n₁ n₂ V²) memory
for V = Π_{a ∈ A} X_a vertices, as neural-tangents' dense implementation.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from theory.kernels.kernel import Kernel, check_channel_axis
from theory.kernels.stax._core import (
    NO,
    Diagonal,
    KernelFn,
    _stateless_init,
    check_axes,
    layout_positions,
    new_layer,
)

__all__ = ["Aggregate"]

_IMPLEMENTATIONS = ("DENSE", "SPARSE")


def _identity(p):
    return p


def Aggregate(
    aggregate_axis: int | Sequence[int] | None = None,
    batch_axis: int = 0,
    channel_axis: int = -1,
    to_dense: Callable | None = _identity,
    implementation: str = "DENSE",
):
    r"""Aggregation over a graph (graph neural networks): ``out = patternᵀ x`` over the
    ``aggregate_axis`` sites, with the pattern given at call time (see the module docstring for
    the formula and its source):

    - ``apply_fn(params, x, pattern=P)``: ``P`` of shape (n, *A, *A) for ``"DENSE"``
      (``P[n, v, w]``: weight of the arc v → w; ``to_dense(P)`` is applied first), or for
      ``"SPARSE"`` an integer edge list (n, n_edges, K, 2) (K = number of aggregated axes; also
      (n, n_edges, 2) when K = 1) of (tail, head) vertex coordinates, each arc of weight 1
      (repeats add up). ``pattern=None`` is the identity.
    - ``kernel_fn(x1, x2, get, pattern=(P1, P2))``: K' = P₁ᵀ K P₂ with P1 for x1's points and
      P2 for x2's; ``(None, None)`` or no pattern is the identity. With ``x2=None`` the kernel is
      of x1 with itself and P1 is used on both sides (P2 may be None; if given it must be
      P1, as neural-tangents requires: its values are not checked inside the compiled
      computation).

    ``aggregate_axis``: the input axes (of (n, X_1, …, X_N, C)) that index vertices, an int or a
    sequence of ints, sorted as neural-tangents does; None: every site axis. ``batch_axis`` and
    ``channel_axis``: the inputs' point and channel axes (defaults 0 and the last; any two
    distinct axes). All three count every input axis in the inputs' own layout, so with
    channels on axis 1 the vertices of (n, C, V) are axis 2, and with points on axis 1 those
    of (V, n, C) are axis 0; the pattern always has the points first, (n, *A, *A), its vertex
    axes in the order of the aggregated axes.

    Differences from neural-tangents 0.6.5: the ``"SPARSE"`` kernel is computed by scattering
    the edges into a dense pattern first (same values; O(V²) per point instead of O(E²)); a
    sparse edge with any negative coordinate is padding and dropped (neural-tangents drops it
    only for a negative head, and reads a negative tail as the last vertex), and coordinates
    past the axis size raise `ValueError` when the pattern is concrete (``apply_fn`` outside
    ``jit``) and are dropped inside compiled code (neural-tangents wraps them around).
    ``kernel_fn`` slices the patterns into tiles with the points (`KernelFn.per_point`), so a
    graph network's kernel is tiled like any other.
    """
    channel_axis = check_axes("Aggregate", batch_axis, channel_axis)
    if implementation not in _IMPLEMENTATIONS:
        raise ValueError(
            f"Aggregate: implementation must be one of {_IMPLEMENTATIONS}, got {implementation!r}"
        )
    if to_dense is None:
        to_dense = _identity
    if not callable(to_dense):
        raise TypeError(f"Aggregate: to_dense must be callable, got {to_dense!r}")
    if aggregate_axis is not None:
        axes = (aggregate_axis,) if isinstance(aggregate_axis, int) else tuple(aggregate_axis)
        if not axes or not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
            raise TypeError(
                "Aggregate: aggregate_axis must be None, an int or a non-empty sequence of "
                f"ints, got {aggregate_axis!r}"
            )
    name = f"Aggregate({aggregate_axis}, {implementation})"

    def layout(ndim: int) -> tuple[int, int]:
        """(batch, channel) positions among the ``ndim`` axes of the layer's inputs."""
        return layout_positions(batch_axis, channel_axis, ndim, name)

    def agg_sites(n_sites: int) -> tuple[int, ...]:
        """Positions among the site axes (0 … n_sites − 1: the inputs' axes other than the
        batch and channel axes, in order) of the aggregated axes, sorted."""
        ndim = n_sites + 2
        b, c = layout(ndim)
        site_axes = [a for a in range(ndim) if a not in (b, c)]
        if aggregate_axis is None:
            return tuple(range(n_sites))
        raw = (aggregate_axis,) if isinstance(aggregate_axis, int) else tuple(aggregate_axis)
        if any(not -ndim <= a < ndim for a in raw):
            raise ValueError(
                f"{name}: aggregate_axis {aggregate_axis!r} is out of range for {ndim}-D inputs "
                f"(points, {n_sites} site axes, channels)"
            )
        axes = sorted({a % ndim for a in raw})
        if len(axes) != len(raw) or b in axes or c in axes:
            raise ValueError(
                f"{name}: aggregate_axis {aggregate_axis!r} must name distinct site axes of the "
                f"{ndim}-D inputs, not the batch axis {b} or the channel axis {c}"
            )
        return tuple(site_axes.index(a) for a in axes)

    def dense(pattern, n: int, agg_shape: tuple[int, ...], what: str, dtype):
        """The dense (n, *A, *A) pattern, validated, in ``dtype``."""
        if implementation == "DENSE":
            p = to_dense(pattern)
        else:
            p = _sparse_to_dense(pattern, n, agg_shape, f"{name}: {what}")
        want = (n, *agg_shape, *agg_shape)
        shape = tuple(getattr(p, "shape", ()))
        if shape != want:
            via = "" if implementation == "SPARSE" or to_dense is _identity else "to_dense of "
            raise ValueError(
                f"{name}: {via}{what} must have shape (batch, *aggregated sites, *aggregated "
                f"sites) = {want}, got {shape if hasattr(p, 'shape') else type(p).__name__}"
            )
        return jnp.asarray(p).astype(dtype)

    def apply_fn(params, inputs, pattern=None, **kwargs):
        if pattern is None:
            return inputs
        if inputs.ndim < 3:
            raise ValueError(
                f"{name}: inputs must be (n, site axes…, channels), got shape {inputs.shape}"
            )
        sites = agg_sites(inputs.ndim - 2)  # among the site axes: the same points-first
        b, c = layout(inputs.ndim)
        if (b, c) == (0, inputs.ndim - 1):
            return aggregate(inputs, pattern, sites)
        out = aggregate(jnp.moveaxis(inputs, (b, c), (0, -1)), pattern, sites)
        return jnp.moveaxis(out, (0, -1), (b, c))

    def aggregate(inputs, pattern, sites):
        """``apply_fn`` on channel-last inputs."""
        agg_shape = tuple(inputs.shape[1 + s] for s in sites)
        n = inputs.shape[0]
        if implementation == "SPARSE":
            return _sparse_apply(inputs, pattern, sites, agg_shape, f"{name}: pattern")
        p = dense(pattern, n, agg_shape, "pattern", inputs.dtype)
        letters = iter(string.ascii_letters)
        x_ix = [next(letters) for _ in range(inputs.ndim)]
        new = {s: next(letters) for s in sites}
        p_ix = [x_ix[0]] + [x_ix[1 + s] for s in sites] + [new[s] for s in sites]
        out_ix = [x_ix[0]] + [new.get(s, x_ix[1 + s]) for s in range(inputs.ndim - 2)]
        out_ix += [x_ix[-1]]
        spec = f"{''.join(x_ix)},{''.join(p_ix)}->{''.join(out_ix)}"
        return jnp.einsum(spec, inputs, p, precision=lax.Precision.HIGHEST)

    def transform(k: Kernel, pattern=None) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"{name} takes one input; got {len(k)} branches")
        check_channel_axis(name, k, channel_axis, batch_axis)
        if pattern is None:
            return k
        if not isinstance(pattern, (tuple, list)) or len(pattern) != 2:
            raise TypeError(
                f"{name}: kernel_fn's pattern must be a pair (pattern1, pattern2), one for x1's "
                f"points and one for x2's, got {type(pattern).__name__}"
                + (f" of shape {pattern.shape}" if hasattr(pattern, "shape") else "")
            )
        p1, p2 = pattern
        if p1 is None and p2 is None:
            return k
        symmetric = k.cov2 is None
        if p1 is None or (p2 is None and not symmetric):
            raise ValueError(
                f"{name}: pattern=(pattern1, pattern2) needs both patterns (or neither) when "
                "x2 is given; got " + ("pattern1" if p1 is None else "pattern2") + " None"
            )
        if not k.spatial:
            raise ValueError(f"{name} needs inputs with site axes (n, sites…, channels)")
        if not k.full_spatial:
            raise ValueError(
                f"{name} needs the full spatial covariance (every pair of sites), got a kernel "
                "on the spatial diagonal"
            )
        nd = len(k.spatial)
        sites = agg_sites(nd)
        agg_shape = tuple(k.spatial[s] for s in sites)
        n1, n2 = k.nngp.shape[:2]
        dtype = k.nngp.dtype
        d1 = dense(p1, n1, agg_shape, "pattern[0]", dtype)
        d2 = d1 if symmetric else dense(p2, n2, agg_shape, "pattern[1]", dtype)
        if symmetric and p2 is not None:  # must be pattern1: its shape, and values if known
            d2_given = dense(p2, n1, agg_shape, "pattern[1]", dtype)
            if not isinstance(d2_given, jax.core.Tracer) and not isinstance(d1, jax.core.Tracer):
                with jax.ensure_compile_time_eval():
                    same = bool(jnp.array_equal(d2_given, d1))
                if not same:
                    raise ValueError(
                        f"{name}: with x2=None, pattern[1] must equal pattern[0] (or be None)"
                    )

        letters = iter(string.ascii_letters)
        a, b = next(letters), next(letters)
        u = [next(letters) for _ in range(nd)]  # left site of each zipped pair
        v = [next(letters) for _ in range(nd)]  # right site
        big_u = {s: next(letters) for s in sites}
        big_v = {s: next(letters) for s in sites}

        def zipped(left, right):
            return "".join(left[d] + right[d] for d in range(nd))

        out_u = [big_u.get(d, u[d]) for d in range(nd)]
        out_v = [big_v.get(d, v[d]) for d in range(nd)]

        def pat(batch, low, high):
            return batch + "".join(low[s] for s in sites) + "".join(high[s] for s in sites)

        def cross(arr):
            spec = (
                f"{a}{b}{zipped(u, v)},{pat(a, u, big_u)},{pat(b, v, big_v)}"
                f"->{a}{b}{zipped(out_u, out_v)}"
            )
            return jnp.einsum(spec, arr, d1, d2, precision=lax.Precision.HIGHEST, optimize=True)

        def block(arr, q):
            spec = (
                f"{a}{zipped(u, v)},{pat(a, u, big_u)},{pat(a, v, big_v)}"
                f"->{a}{zipped(out_u, out_v)}"
            )
            return jnp.einsum(spec, arr, q, q, precision=lax.Precision.HIGHEST, optimize=True)

        return k.replace(
            nngp=cross(k.nngp),
            ntk=None if k.ntk is None else cross(k.ntk),
            cov1=block(k.cov1, d1),
            cov2=None if k.cov2 is None else block(k.cov2, d2),
        )

    kfn = KernelFn(
        transform,
        name,
        spatial_ndim="sites",
        diagonal=Diagonal(NO, NO),
        call_kwargs=("pattern",),
        channel_axis=channel_axis,
        batch_axis=batch_axis or None,  # 0: the default, not a claim
    )
    return new_layer(_stateless_init, apply_fn, kfn)


def _edges(pattern, n: int, agg_shape: tuple[int, ...], what: str):
    """(tails, heads): flat vertex indices (n, E) of a sparse pattern; V (out of range, so
    dropped by scatters) for padding edges (any negative coordinate)."""
    p = jnp.asarray(pattern)
    k = len(agg_shape)
    if not jnp.issubdtype(p.dtype, jnp.integer):
        raise TypeError(f"{what} must be an integer edge list for SPARSE, got dtype {p.dtype}")
    if k == 1 and p.ndim == 3:
        p = p[:, :, None, :]
    if p.ndim != 4 or p.shape[0] != n or p.shape[2] != k or p.shape[3] != 2:
        raise ValueError(
            f"{what} must be an integer edge list of shape (batch, n_edges, {k}, 2) = "
            f"({n}, n_edges, {k}, 2)"
            + (f" or ({n}, n_edges, 2)" if k == 1 else "")
            + f" for SPARSE, got shape {tuple(p.shape)}"
        )
    size = jnp.asarray(agg_shape)
    if not isinstance(p, jax.core.Tracer):
        with jax.ensure_compile_time_eval():
            past = bool(jnp.any(p >= size[:, None]))
    else:
        past = False
    if past:
        raise ValueError(f"{what}: a vertex coordinate is past its axis size {agg_shape}")
    n_vertices = math.prod(agg_shape)
    strides = jnp.asarray([math.prod(agg_shape[i + 1 :]) for i in range(k)])

    def flat(c):  # (n, E, K) -> (n, E)
        return jnp.sum(c * strides, axis=-1)

    tails, heads = p[..., 0], p[..., 1]
    valid = jnp.all((tails >= 0) & (heads >= 0) & (tails < size) & (heads < size), axis=-1)
    return jnp.where(valid, flat(tails), n_vertices), jnp.where(valid, flat(heads), n_vertices)


def _sparse_to_dense(pattern, n: int, agg_shape: tuple[int, ...], what: str):
    """The dense (n, *A, *A) adjacency (edge counts) of a sparse edge list."""
    tails, heads = _edges(pattern, n, agg_shape, what)
    nv = math.prod(agg_shape)
    rows = jnp.arange(n)[:, None]
    out = jnp.zeros((n, nv, nv)).at[rows, tails, heads].add(1.0, mode="drop")
    return out.reshape((n, *agg_shape, *agg_shape))


def _sparse_apply(x, pattern, sites, agg_shape, what):
    """``out[n, w] = Σ_{arcs v → w} x[n, v]`` by a segment sum over the edge list."""
    n = x.shape[0]
    tails, heads = _edges(pattern, n, agg_shape, what)
    nv = math.prod(agg_shape)
    moved = jnp.moveaxis(x, [1 + s for s in sites], list(range(1, 1 + len(sites))))
    shape = moved.shape
    flat = moved.reshape((n, nv) + shape[1 + len(sites) :])

    def one(xi, t, h):
        sent = xi[jnp.minimum(t, nv - 1)]
        return jax.ops.segment_sum(sent, h, num_segments=nv)  # head nv (padding) dropped

    out = jax.vmap(one)(flat, tails, heads).reshape(shape)
    return jnp.moveaxis(out, list(range(1, 1 + len(sites))), [1 + s for s in sites])
