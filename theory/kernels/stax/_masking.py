"""Masked inputs (neural-tangents' ``mask_constant``): padding in a batch of sequences,
missing pixels, graphs of different sizes.

``apply_fn(params, x, mask_constant=v)`` and ``kernel_fn(x1, x2, get, mask_constant=v)``
treat the input entries equal to ``v`` (NaN matches NaN) as absent. The semantics are those
of the finite network, and the kernel is derived from them:

- every layer **zeroes its masked inputs** before computing (so a masked entry contributes
  nothing), and returns its outputs with a **mask** that says which outputs are absent
  (`MaskedArray`); `unmask_fn` turns the network's output into an array with those entries
  zeroed;
- each layer maps the mask (its `Masking` rule): elementwise layers, Dropout, LayerNorm and
  Aggregate keep it; Dense marks a site absent when all of its channels are; a convolution
  or a window pool marks an output absent when the input at the centre of its window is
  (neural-tangents' rule), a transposed convolution when any input it reads is; global
  pooling marks a point absent when all of its sites are, and averages over the present
  sites only; Flatten flattens it; ImageResize marks an output absent when it reads only
  absent inputs; FanInSum/FanInProd mark an output absent when it is absent in every
  branch; FanInConcat concatenates the masks; Index indexes it;
- in the kernel (`theory.kernels.kernel.Kernel.mask1`/``mask2``, per point and site, channels
  last) every layer's output has the entries that pair an absent site set to zero
  (`Kernel.remask`), which is what "the next layer zeroes its masked inputs" means for the
  covariances; global average pooling divides by the number of present pairs.

A mask that differs between the channels of one site (an input masked entry by entry)
survives only where zeros stay zeros: an elementwise layer with φ(0) ≠ 0, a window or global
pool, LayerNorm, or attention with positional embeddings before any Dense/Conv layer raises
`NotImplementedError` (the kernel, an average over channels, cannot zero some channels of a
site), as neural-tangents does. Attention drops absent keys (−1e20 before a softmax, 0
before the elementwise mechanisms) and gives absent sites no positional embedding.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from theory.kernels.kernel import Kernel, masked_entries

__all__ = ["MaskedArray", "unmask_fn", "Masking"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MaskedArray:
    """A layer's output with its mask (neural-tangents' ``MaskedArray``): ``masked_value`` the
    activations, ``mask`` a boolean array broadcastable to them, True where an entry is
    absent. Layers zero the absent entries of their inputs; `unmask_fn` zeroes them at the
    end."""

    masked_value: Any
    mask: Any


def _is_masked_array(x) -> bool:
    return isinstance(x, MaskedArray)


def unmask_fn(fn: Callable) -> Callable:
    """``fn`` (an ``apply_fn``) with every `MaskedArray` in its output replaced by its values
    with the absent entries zeroed: what `theory.kernels.monte_carlo_kernel_fn` and the
    empirical kernels need from a network called with ``mask_constant``."""

    def unmask(x):
        if isinstance(x, MaskedArray):
            return jnp.where(x.mask, jnp.zeros((), x.masked_value.dtype), x.masked_value)
        return x

    @functools.wraps(fn)
    def fn_no_mask(*args, **kwargs):
        out = fn(*args, **kwargs)
        return jax.tree_util.tree_map(unmask, out, is_leaf=_is_masked_array)

    return fn_no_mask


def split_masked(x, mask_constant):
    """``(values, mask)`` of a layer input: a `MaskedArray` gives its own; an array gives the
    entries equal to ``mask_constant`` (None when it is None); lists/tuples (fan-in inputs)
    element by element. The values come back with the absent entries zeroed."""
    if isinstance(x, (list, tuple)):
        pairs = [split_masked(a, mask_constant) for a in x]
        return type(x)(p[0] for p in pairs), [p[1] for p in pairs]
    if isinstance(x, MaskedArray):
        value, mask = x.masked_value, x.mask
    elif mask_constant is None or x is None:
        return x, None
    else:
        value = jnp.asarray(x)
        mask = masked_entries(value, mask_constant)
    if mask is None:
        return value, None
    return jnp.where(mask, jnp.zeros((), value.dtype), value), mask


def _any_mask(mask) -> bool:
    if isinstance(mask, list):
        return any(m is not None for m in mask)
    return mask is not None


@dataclasses.dataclass(frozen=True)
class Masking:
    """How one layer treats absent inputs.

    ``kernel(m, k_in, k_out)``: the output mask of one side from that side's input mask ``m``
    (points first, channels last: (n, *S, c); a list for fan-in layers), the input kernel(s)
    and the output kernel (None: unchanged). ``apply(mask, x)``: the same in the layer's own
    layout, from the input mask and input array (None: unchanged). ``takes_mask``: the
    layer's ``apply_fn`` needs the mask (``mask=`` keyword: global average pooling, layer
    normalisation, attention). ``unsupported``: a reason, and the layer raises
    NotImplementedError when anything is masked."""

    kernel: Callable | None = None
    apply: Callable | None = None
    takes_mask: bool = False
    unsupported: str | None = None


IDENTITY = Masking()


def masked_apply(apply_fn: Callable, masking: Masking, name: str) -> Callable:
    """``apply_fn`` taking ``mask_constant=`` and `MaskedArray` inputs: absent inputs
    zeroed, the output a `MaskedArray` when anything is masked (else the plain array)."""

    def apply(params, inputs, *, mask_constant=None, **kwargs):
        x, mask = split_masked(inputs, mask_constant)
        if not _any_mask(mask):
            return apply_fn(params, x, **kwargs)
        if masking.unsupported:
            raise NotImplementedError(
                f"{name}: masked inputs are not supported: {masking.unsupported}"
            )
        if isinstance(mask, list) and any(m is None for m in mask):
            mask = [
                jnp.zeros(jnp.shape(a), bool) if m is None else m for a, m in zip(x, mask)
            ]  # an input without a mask: nothing absent
        extra = {"mask": mask} if masking.takes_mask else {}
        out = apply_fn(params, x, **extra, **kwargs)
        out_mask = mask if masking.apply is None else masking.apply(mask, x)
        return MaskedArray(out, out_mask)

    return apply


def masked_transform(transform: Callable, masking: Masking, name: str) -> Callable:
    """A layer's kernel ``transform`` that maps the masks of its input kernel(s) and zeroes
    the output's entries that pair an absent site (`Kernel.remask`). Unchanged cost when
    nothing is masked."""

    def run(k, **kwargs):
        ks = k if isinstance(k, (list, tuple)) else [k]
        kernels = [kk for kk in ks if isinstance(kk, Kernel)]
        if not any(kk.mask1 is not None for kk in kernels):
            return transform(k, **kwargs)
        if masking.unsupported:
            raise NotImplementedError(
                f"{name}: masked inputs (mask_constant) are not supported: {masking.unsupported}"
            )
        out = transform(k, **kwargs)
        if not isinstance(out, Kernel):
            return out

        def side(which):
            if isinstance(k, (list, tuple)):
                m = [_side_mask(kk, which) for kk in k]
                if which == 2 and all(kk.mask2 is None for kk in k):
                    return None
            else:
                m = _side_mask(k, which)
                if which == 2 and k.mask2 is None:
                    return None
            return m if masking.kernel is None else masking.kernel(m, k, out)

        return out.replace(mask1=side(1), mask2=side(2)).remask()

    return run


def _side_mask(k: Kernel, which: int):
    """The mask of one side of ``k`` (all False when that side has none)."""
    m = k.mask1 if which == 1 else (k.mask1 if k.mask2 is None else k.mask2)
    if m is None:
        n = k.nngp.shape[0 if which == 1 else 1]
        m = jnp.zeros((n, *k.spatial, 1), bool)
    return m


# --------------------------------------------------------------------- rules used by layers


def collapse_channels(m, k_in=None, k_out=None):
    """A site is absent when all of its channels are (a layer that mixes channels)."""
    return jnp.all(m, axis=-1, keepdims=True)


def channel_constant(m, name: str):
    """Refuse masks that differ between the channels of one site (see the module notes)."""
    if m.shape[-1] != 1:
        raise NotImplementedError(
            f"{name}: its input mask differs between the channels of one site (inputs masked "
            "entry by entry reach it before any Dense or Conv layer); the kernel averages over "
            "channels and cannot zero only some of them. Mask whole sites (every channel), or "
            "put a Dense/Conv layer first"
        )
    return m


def window_centres(m, window, strides, pads):
    """Output mask of a window operation (convolution, pool) over the site axes of ``m``
    (n, *S, c): absent where the input at the centre of its window is (offset (w − 1) // 2
    from the window's start, padding included: neural-tangents' rule). ``pads``: (low, high)
    per site axis. A centre inside the padding (possible only with more low padding than
    (w − 1) // 2) takes the nearest site."""
    idx = [slice(None)]
    for d, (w, s, (lo, _hi)) in enumerate(zip(window, strides, pads)):
        size = m.shape[1 + d]
        n_out = (size + lo + _hi - w) // s + 1
        centres = np.clip(-lo + (w - 1) // 2 + s * np.arange(n_out), 0, size - 1)
        idx.append(centres)
    out = m
    for d in range(len(window)):
        out = jnp.take(out, jnp.asarray(idx[1 + d]), axis=1 + d)
    return out


def by_points(m) -> jax.Array:
    """(n, *S, c) → (n, c): a point absent when all of its sites are (global pooling)."""
    return jnp.all(m, axis=tuple(range(1, m.ndim - 1)))
