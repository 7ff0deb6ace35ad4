r"""Spatial pair operators: how convolutional layers act on kernels over sites.

For inputs with spatial axes S (NHWC: ``x`` of shape (n, *S, C)) the kernel of a layer is,
per pair of points (i, j), a function of the pair of sites (s, s'). A network that needs only
the *spatial diagonal* (convolutions, activations and Dense layers acting per site, ending
in ``Flatten``: the CNN-GP and CNTK without pooling) is computed with K[i, j, s] = K(x_i at s,
x_j at s), N1·N2·|S| entries, exactly as neural-tangents does in its ``diagonal_spatial``
mode (Novak et al. 2019; Arora et al. 2019). The operators here act on arrays whose leading
``batch_nd`` axes are point axes (2 for nngp/ntk (n1, n2, *S), 1 for cov1 (n1, *S)) and whose
trailing axes are sites.

- Input kernel (neural-tangents' convention): K⁰[i, j, s] = Σ_c x1[i, s, c] x2[j, s, c] / C,
  divided by the channel count C only.
- ``Conv`` with filter f, strides and padding: the same offset on both sides of a pair, so
  the diagonal maps to itself: K'[i, j, s] = (1/|f|) Σ_{a ∈ f} K[i, j, s·stride + a]
  (`conv_mean`), with zero padding for SAME (edge sites are still divided by |f|) and
  wrap-around padding for CIRCULAR.
- ``Flatten``: the mean over sites of the diagonal (`flatten_mean`); the result is an FC
  kernel of width C·|S|.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

PADDINGS = ("SAME", "VALID", "CIRCULAR")


def input_kernel_diagonal(x1: jax.Array, x2: jax.Array | None):
    """(nngp (n1, n2, *S), cov1 (n1, *S), cov2 (n2, *S) or None): Σ_c x x' / C per site."""
    c = x1.shape[-1]
    y = x1 if x2 is None else x2
    nngp = jnp.einsum("i...c,j...c->ij...", x1, y, precision=lax.Precision.HIGHEST) / c
    cov1 = jnp.sum(x1 * x1, axis=-1) / c
    cov2 = None if x2 is None else jnp.sum(x2 * x2, axis=-1) / c
    return nngp, cov1, cov2


def conv_pads(
    spatial: Sequence[int], filter_shape: Sequence[int], strides: Sequence[int], padding: str
):
    """Per-axis (low, high) padding of SAME/CIRCULAR (VALID: zeros), as ``lax`` computes it."""
    mode = "VALID" if padding == "VALID" else "SAME"
    return lax.padtype_to_pads(tuple(spatial), tuple(filter_shape), tuple(strides), mode)


def conv_output_shape(spatial, filter_shape, strides, padding) -> tuple[int, ...]:
    """The site shape after a convolution (SAME and CIRCULAR: ⌈S/stride⌉; VALID:
    ⌊(S − f)/stride⌋ + 1)."""
    pads = conv_pads(spatial, filter_shape, strides, padding)
    out = []
    for n, f, st, (lo, hi) in zip(spatial, filter_shape, strides, pads):
        size = (n + lo + hi - f) // st + 1
        if size < 1:
            raise ValueError(
                f"Conv: filter {tuple(filter_shape)} with {padding} padding does not fit input "
                f"sites {tuple(spatial)}"
            )
        out.append(size)
    return tuple(out)


def conv_mean(
    a: jax.Array,
    batch_nd: int,
    filter_shape: Sequence[int],
    strides: Sequence[int],
    padding: str,
) -> jax.Array:
    """(1/|f|) Σ_{a ∈ f} A[..., s·stride + a] over the trailing site axes of ``a`` (the
    diagonal-mode Conv of a kernel), zero padding for SAME, wrap-around for CIRCULAR."""
    return window_sum(a, batch_nd, filter_shape, strides, padding) / math.prod(filter_shape)


def window_sum(a: jax.Array, batch_nd: int, window, strides, padding: str) -> jax.Array:
    """Σ over each window of the trailing site axes (one offset per site: the spatial
    diagonal), zero padding for SAME, wrap-around for CIRCULAR, none for VALID."""
    spatial = a.shape[batch_nd:]
    pads = conv_pads(spatial, window, strides, padding)
    if padding == "CIRCULAR":
        a = jnp.pad(a, [(0, 0)] * batch_nd + [tuple(p) for p in pads], mode="wrap")
        pads = [(0, 0)] * len(spatial)
    dims = (1,) * batch_nd + tuple(window)
    steps = (1,) * batch_nd + tuple(strides)
    cfg = [(0, 0)] * batch_nd + [tuple(p) for p in pads]
    # a concrete 0 lets lax recognise the sum (reduce_window_sum), which is differentiable
    return lax.reduce_window(a, np.zeros((), a.dtype), lax.add, dims, steps, cfg)


def flatten_mean(a: jax.Array, batch_nd: int) -> jax.Array:
    """The mean over the trailing site axes (diagonal-mode Flatten)."""
    axes = tuple(range(batch_nd, a.ndim))
    return a if not axes else jnp.mean(a, axis=axes)


# ------------------------------------------------------------ full spatial covariance
#
# Pair axes zipped as neural-tangents does, (S1, S1', S2, S2', …): nngp/ntk
# (n1, n2, S1, S1', …), per-point blocks cov1 (n1, S1, S1, …). Unlike neural-tangents, the
# pair axes are never reversed (it swaps them after an odd number of convolutions).


def input_kernel_full(x1: jax.Array, x2: jax.Array | None):
    """(nngp (n1, n2, S1, S1', …), cov1 (n1, S1, S1, …), cov2 or None): Σ_c x x' / C for every
    pair of sites."""
    nd = x1.ndim - 2
    c = x1.shape[-1]
    a, b = "abcd"[:nd], "ABCD"[:nd]
    zipped = "".join(p + q for p, q in zip(a, b))
    y = x1 if x2 is None else x2

    def cross(u, v, lhs, rhs, out):
        return jnp.einsum(f"{lhs},{rhs}->{out}", u, v, precision=lax.Precision.HIGHEST) / c

    nngp = cross(x1, y, f"i{a}z", f"j{b}z", f"ij{zipped}")
    cov1 = cross(x1, x1, f"i{a}z", f"i{b}z", f"i{zipped}")
    cov2 = None if x2 is None else cross(x2, x2, f"i{a}z", f"i{b}z", f"i{zipped}")
    return nngp, cov1, cov2


def site_diagonal(a: jax.Array, batch_nd: int) -> jax.Array:
    """The site diagonal (…, S1, S2, …) of a full-covariance array (…, S1, S1', S2, S2', …)."""
    nd = (a.ndim - batch_nd) // 2
    for _ in range(nd):
        a = jnp.diagonal(a, axis1=batch_nd, axis2=batch_nd + 1)  # appends the diagonal axis
    return a


def site_diagonal_mask(spatial: Sequence[int]) -> jax.Array:
    """Boolean (S1, S1', S2, S2', …): True where every pair of sites coincides."""
    mask = jnp.ones((), bool)
    for n in spatial:
        mask = mask[..., None, None] & jnp.eye(n, dtype=bool)
    return mask


def interleave(a: jax.Array, batch_nd: int, first: bool) -> jax.Array:
    """Site axes (…, S1, S2, …) expanded to zipped pair positions: (…, S1, 1, S2, 1, …) with
    ``first`` (the left member of each pair), else (…, 1, S1, 1, S2, …)."""
    shape = list(a.shape[:batch_nd])
    for n in a.shape[batch_nd:]:
        shape += [n, 1] if first else [1, n]
    return a.reshape(shape)


def _pair_axes(batch_nd: int, d: int) -> tuple[int, int]:
    return batch_nd + 2 * d, batch_nd + 2 * d + 1


def conv_full(a: jax.Array, batch_nd: int, filter_shape, strides, padding: str) -> jax.Array:
    """Conv of a full-covariance array: the same offset t on both sides of a pair of sites,
    K'[o, o'] = (1/|f|) Σ_{t ∈ f} K[o s + t, o' s + t] (per axis, zipped pair axes), as one
    sum of |f| shifted strided slices of the padded array (zeros for SAME, wrap-around for
    CIRCULAR). XLA fuses the sum into one pass over the output: for a 3×3 filter on 32×32
    sites 2.7× faster than one pass per spatial axis (measured)."""
    spatial = a.shape[batch_nd::2]
    pads = conv_pads(spatial, filter_shape, strides, padding)
    width = [(0, 0)] * batch_nd
    for lo, hi in pads:
        width += [(lo, hi), (lo, hi)]
    a = jnp.pad(a, width, mode="wrap" if padding == "CIRCULAR" else "constant")
    n_out = [
        (a.shape[batch_nd + 2 * d] - f) // st + 1
        for d, (f, st) in enumerate(zip(filter_shape, strides))
    ]
    acc = 0
    for offsets in itertools.product(*[range(f) for f in filter_shape]):
        sl = [slice(None)] * batch_nd
        for t, st, n in zip(offsets, strides, n_out):
            sl += [slice(t, t + st * (n - 1) + 1, st)] * 2
        acc = acc + a[tuple(sl)]
    return acc / math.prod(filter_shape)


def pool_full(
    a: jax.Array,
    batch_nd: int,
    window: Sequence[int],
    strides: Sequence[int],
    padding: str,
    normalize: str,
) -> jax.Array:
    """Average or sum pooling of a full-covariance array: independent offsets on the two sides,
    K'[o, o'] = Σ_{t, t'} K[o s + t, o' s + t'] / norm, per spatial axis. ``normalize``:
    ``"sum"`` (no division), ``"window"`` (w², every site), ``"edges"`` (count(o)·count(o'),
    the number of non-padding sites in each window: SAME with normalize_edges)."""
    spatial = a.shape[batch_nd::2]
    pads = conv_pads(spatial, window, strides, padding)
    for d, (w, st, (lo, hi)) in enumerate(zip(window, strides, pads)):
        ax, bx = _pair_axes(batch_nd, d)
        n = a.shape[ax]
        if padding == "CIRCULAR":
            width = [(0, 0)] * a.ndim
            width[ax] = width[bx] = (lo, hi)
            a = jnp.pad(a, width, mode="wrap")
            lo = hi = 0
        dims = [1] * a.ndim
        steps = [1] * a.ndim
        pad_cfg = [(0, 0)] * a.ndim
        dims[ax] = dims[bx] = w
        steps[ax] = steps[bx] = st
        pad_cfg[ax] = pad_cfg[bx] = (lo, hi)
        a = lax.reduce_window(a, np.zeros((), a.dtype), lax.add, dims, steps, pad_cfg)
        if normalize == "window":
            a = a / (w * w)
        elif normalize == "edges":
            ones = jnp.ones((n,), a.dtype)
            count = lax.reduce_window(ones, np.zeros((), a.dtype), lax.add, (w,), (st,), [(lo, hi)])
            shape_a = [1] * a.ndim
            shape_b = [1] * a.ndim
            shape_a[ax], shape_b[bx] = count.shape[0], count.shape[0]
            a = a / (count.reshape(shape_a) * count.reshape(shape_b))
    return a


def pool_output_shape(spatial, window, strides, padding) -> tuple[int, ...]:
    return conv_output_shape(spatial, window, strides, padding)


def flatten_full(a: jax.Array, batch_nd: int) -> jax.Array:
    """Flatten of a full-covariance array: the mean of its site diagonal."""
    return flatten_mean(site_diagonal(a, batch_nd), batch_nd)


def global_pool_full(a: jax.Array, batch_nd: int, mean: bool) -> jax.Array:
    """Global average (``mean``) or sum pooling: the mean or sum over all pairs of sites."""
    axes = tuple(range(batch_nd, a.ndim))
    return jnp.mean(a, axis=axes) if mean else jnp.sum(a, axis=axes)


# --------------------------------------------------- transposed and unshared convolutions


def conv_transpose_pads(filter_shape: Sequence[int], strides: Sequence[int], padding: str):
    """Per-axis (low, high) padding of the stride-dilated input of a transposed convolution,
    the rule of ``lax.conv_transpose`` (Dumoulin & Visin 2016, §4): with p = f + s − 2,
    SAME pads (f − 1, s − 1) when s > f − 1, else (⌈p/2⌉, ⌊p/2⌋); VALID (and CIRCULAR, which
    is VALID then a wrap-around fold) pads (f − 1, s − 1 + max(f − s, 0))."""
    pads = []
    for f, s in zip(filter_shape, strides):
        if padding == "SAME":
            total = f + s - 2
            lo = f - 1 if s > f - 1 else -(-total // 2)
        else:
            total = f + s - 2 + max(f - s, 0)
            lo = f - 1
        pads.append((lo, total - lo))
    return pads


def conv_transpose_output_shape(spatial, filter_shape, strides, padding) -> tuple[int, ...]:
    """The site shape after a transposed convolution: n·s (SAME, CIRCULAR) or
    n·s + max(f − s, 0) (VALID), per axis."""
    out = []
    for n, f, s in zip(spatial, filter_shape, strides):
        out.append(n * s + (max(f - s, 0) if padding == "VALID" else 0))
    return tuple(out)


def _dilate_pad(a: jax.Array, axes: Sequence[int], strides, pads) -> jax.Array:
    """Insert s − 1 zeros between neighbouring entries along each of ``axes`` and pad the ends
    with (low, high) zeros: the input of a transposed convolution as a stride-1 one."""
    cfg = [(0, 0, 0)] * a.ndim
    for ax, s, (lo, hi) in zip(axes, strides, pads):
        cfg[ax] = (lo, hi, s - 1)
    return lax.pad(a, jnp.zeros((), a.dtype), cfg)


def circular_fold(a: jax.Array, axis: int, n: int) -> jax.Array:
    """Fold an axis of length L onto n sites around a circle, the VALID result's centre on
    the circle: out[j] = Σ_{p ≡ j + ⌊(L − n)/2⌋ (mod n)} a[p] (CIRCULAR transposed
    convolution: the VALID output wrapped onto the SAME output's n = n_in·s sites, as
    neural-tangents does)."""
    length = a.shape[axis]
    shift = (length - n) // 2
    front = (-shift) % n
    back = (-(front + length)) % n
    width = [(0, 0)] * a.ndim
    width[axis] = (front, back)
    a = jnp.moveaxis(jnp.pad(a, width), axis, -1)
    a = a.reshape(a.shape[:-1] + (-1, n)).sum(axis=-2)
    return jnp.moveaxis(a, -1, axis)


def conv_transpose_mean(
    a: jax.Array,
    batch_nd: int,
    filter_shape: Sequence[int],
    strides: Sequence[int],
    padding: str,
) -> jax.Array:
    """Transposed convolution of a kernel on the spatial diagonal: dilate the sites by the
    strides and pad them (`conv_transpose_pads`), then `conv_mean` with stride 1,
    K'[o] = (1/|f|) Σ_{t ∈ f} K̃[o + t] (K̃ the dilated, padded K, zero between input sites:
    every output site is a sum over the input sites that reach it, each with its own filter
    tap, and distinct taps are independent); CIRCULAR folds the VALID result onto n·s sites
    (`circular_fold`; two input sites never fold onto each other through the same tap, so
    the diagonal is folded alone)."""
    spatial = a.shape[batch_nd:]
    nd = len(spatial)
    pads = conv_transpose_pads(filter_shape, strides, "SAME" if padding == "SAME" else "VALID")
    a = _dilate_pad(a, range(batch_nd, a.ndim), strides, pads)
    a = conv_mean(a, batch_nd, filter_shape, (1,) * nd, "VALID")
    if padding == "CIRCULAR":
        for d in range(nd):
            a = circular_fold(a, batch_nd + d, spatial[d] * strides[d])
    return a


def conv_transpose_full(
    a: jax.Array, batch_nd: int, filter_shape, strides, padding: str
) -> jax.Array:
    """Transposed convolution of a full-covariance array: both axes of each pair dilated and
    padded as in `conv_transpose_mean`, then the same-offset sum of `conv_full` with stride 1,
    K'[o, o'] = (1/f) Σ_t K̃[o + t, o' + t] per axis; CIRCULAR folds both axes of each pair."""
    spatial = a.shape[batch_nd::2]
    nd = len(spatial)
    pads = conv_transpose_pads(filter_shape, strides, "SAME" if padding == "SAME" else "VALID")
    axes = [ax for d in range(nd) for ax in _pair_axes(batch_nd, d)]
    twice = [(s, p) for s, p in zip(strides, pads) for _ in (0, 1)]
    a = _dilate_pad(a, axes, [s for s, _ in twice], [p for _, p in twice])
    a = conv_full(a, batch_nd, filter_shape, (1,) * nd, "VALID")
    if padding == "CIRCULAR":
        for d in range(nd):
            for ax in _pair_axes(batch_nd, d):
                a = circular_fold(a, ax, spatial[d] * strides[d])
    return a


def embed_site_diagonal(d: jax.Array, batch_nd: int) -> jax.Array:
    """The full-covariance array (…, S1, S1', S2, S2', …) that is ``d`` (…, S1, S2, …) on the
    site diagonal and 0 elsewhere."""
    mask = site_diagonal_mask(d.shape[batch_nd:])
    return jnp.where(mask, interleave(d, batch_nd, True), jnp.zeros((), d.dtype))


def conv_local_full(a: jax.Array, batch_nd: int, filter_shape, strides, padding: str) -> jax.Array:
    """Unshared (locally connected) convolution of a full-covariance array: distinct output
    sites have independent weights, so only the site diagonal survives, and it is `conv_mean`
    of the input's site diagonal (Novak et al. 2019, §5.1 LCN)."""
    diag = conv_mean(site_diagonal(a, batch_nd), batch_nd, filter_shape, strides, padding)
    return embed_site_diagonal(diag, batch_nd)


def permute_sites(a: jax.Array, batch_nd: int, perm: Sequence[int], full: bool) -> jax.Array:
    """Reorder the site axes: new axis i is old axis ``perm[i]`` (both axes of each pair with
    the full covariance)."""
    perm = tuple(perm)
    if perm == tuple(range(len(perm))):
        return a
    head = tuple(range(batch_nd))
    if full:
        return a.transpose(head + tuple(batch_nd + 2 * p + e for p in perm for e in (0, 1)))
    return a.transpose(head + tuple(batch_nd + p for p in perm))


def pool_diagonal(
    a: jax.Array,
    batch_nd: int,
    window: Sequence[int],
    strides: Sequence[int],
    padding: str,
    normalize: str,
) -> jax.Array:
    """Average or sum pooling of a kernel whose off-diagonal site pairs are 0 (after an
    unshared convolution), on the spatial diagonal: the site diagonal of `pool_full`,
    K'[o] = Σ_t K[o s + t] / norm(o)², norm = 1 (``"sum"``), |w| (``"window"``) or the
    number of non-padding sites in the window (``"edges"``)."""
    out = window_sum(a, batch_nd, window, strides, padding)
    if normalize == "window":
        return out / math.prod(window) ** 2
    if normalize == "edges":  # the non-padding sites of each window
        count = window_sum(jnp.ones(a.shape[batch_nd:], a.dtype), 0, window, strides, padding)
        return out / count**2
    return out


def global_pool_diagonal(a: jax.Array, batch_nd: int, mean: bool) -> jax.Array:
    """Global pooling of a kernel whose off-diagonal site pairs are 0: the sum of the
    diagonal, divided by |S|² for the average."""
    axes = tuple(range(batch_nd, a.ndim))
    total = jnp.sum(a, axis=axes)
    return total / math.prod(a.shape[batch_nd:]) ** 2 if mean else total
