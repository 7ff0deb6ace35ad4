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

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
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
    spatial = a.shape[batch_nd:]
    pads = conv_pads(spatial, filter_shape, strides, padding)
    if padding == "CIRCULAR":
        a = jnp.pad(a, [(0, 0)] * batch_nd + [tuple(p) for p in pads], mode="wrap")
        pads = [(0, 0)] * len(spatial)
    window = (1,) * batch_nd + tuple(filter_shape)
    steps = (1,) * batch_nd + tuple(strides)
    full_pads = [(0, 0)] * batch_nd + [tuple(p) for p in pads]
    out = lax.reduce_window(a, jnp.zeros((), a.dtype), lax.add, window, steps, full_pads)
    return out / math.prod(filter_shape)


def flatten_mean(a: jax.Array, batch_nd: int) -> jax.Array:
    """The mean over the trailing site axes (diagonal-mode Flatten)."""
    axes = tuple(range(batch_nd, a.ndim))
    return a if not axes else jnp.mean(a, axis=axes)
