r"""Normalization and regularization layers: LayerNorm, Dropout.

Both act on the kernel per point (and per site) without mixing points:

- `LayerNorm` rescales each point by its own variance, which concentrates at infinite width:
  K(x, x') ← K(x, x') / √(v(x) v(x'));
- `Dropout` (train mode) multiplies the entries that pair a unit with itself by 1/rate.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp

from theory.kernels import spatial
from theory.kernels.kernel import Kernel, check_channel_axis
from theory.kernels.stax._core import (
    KernelFn,
    _check_std,
    _stateless_init,
    axis_position,
    canonical_axis,
    check_axes,
    new_layer,
)
from theory.kernels.stax._masking import Masking, channel_constant

__all__ = ["LayerNorm", "Dropout"]


# ------------------------------------------------------------------------ LayerNorm


def _check_axes(axis) -> tuple[int, ...]:
    """``axis`` as a non-empty tuple of integers (not yet reduced modulo the rank)."""
    axes = (axis,) if not isinstance(axis, (tuple, list)) else tuple(axis)
    if not axes:
        raise ValueError("LayerNorm: axis must name at least one axis, got ()")
    for a in axes:
        if isinstance(a, bool):
            raise TypeError(f"LayerNorm: axis must be an integer or a tuple of them, got {axis!r}")
        try:
            operator.index(a)
        except TypeError:
            raise TypeError(
                f"LayerNorm: axis must be an integer or a tuple of them, got {axis!r}"
            ) from None
    return tuple(int(a) for a in axes)


def _canonical(axes: tuple[int, ...], ndim: int, axis, what: str) -> tuple[int, ...]:
    """``axes`` reduced modulo ``ndim`` (duplicates merged), or a ValueError naming ``axis``."""
    bad = [a for a in axes if not -ndim <= a < ndim]
    if bad:
        raise ValueError(
            f"LayerNorm: axis={axis!r} is out of range for {what} with {ndim} axes "
            f"(valid: {-ndim} to {ndim - 1})"
        )
    return tuple(sorted({a % ndim for a in axes}))


def LayerNorm(axis=-1, eps: float = 1e-12, batch_axis: int = 0, channel_axis: int = -1):
    r"""Layer normalisation over ``axis`` (an integer or a tuple of them), as neural-tangents'
    ``stax.LayerNorm`` (0.6.5).

    Finite network: y = (x − mean_axis(x)) / √(var_axis(x) + ε), mean and (biased) variance
    over the axes in ``axis`` of each input, no learned scale or shift.

    Kernel (neural-tangents' ``LayerNorm`` kernel; Novak et al. 2020, "Neural Tangents", §3):
    the channel count C is infinite, so over the channel axis the empirical mean of the iid
    centred Gaussian units tends to 0 and their empirical variance to the per-site variance
    q(x, s) = K(x, x) at site s (law of large numbers); over channels and sites, to the mean
    v(x) = ε + mean_{s over the normalized sites} q(x, s). The layer is then a deterministic
    rescaling of a Gaussian, so its output is Gaussian (``is_gaussian`` stays True, the width
    is unchanged) with

        K(x, s; x', s') ← K(x, s; x', s') / √(v(x, s) v(x', s')),   Θ ← Θ / √(v v'),

    the NTK by the same factor (the normalizer's own Jacobian acts along one of C directions
    and vanishes as C → ∞). v(x, s) is ε + q(x, s) when only the channel axis is normalized
    and the same for every site of a point when all its sites are; on the spatial diagonal
    (networks ending in Flatten) s = s', with the full spatial covariance (pooling) each pair
    of sites uses the variances of its two sites.

    Rules (neural-tangents'): the input must be Gaussian (right after a Dense or Conv, not an
    activation or the network's input); ``axis`` must contain the channel axis (normalizing
    over sites alone has no limit kernel: the mean over sites of one channel stays random).
    Unlike neural-tangents, normalizing over the batch axis is refused: it makes each point's
    kernel depend on which other points share its batch, so tiled and untiled computations
    would disagree. ``channel_axis`` names the channel axis (default the last; 1 for NCHW
    activations) and ``batch_axis`` the points' axis (any; ``axis`` and ``channel_axis`` are in
    the inputs' own layout). Neural-tangents sets no
    spatial-diagonal requirement for this layer (it is neutral in the fold); ``Diagonal(YES,
    NO)``, the default, picks the same mode except after a layer whose output is MAYBE
    (``ConvLocal``) and in ``parallel`` branches, where it may pick the full covariance while
    neural-tangents keeps the diagonal: the same numbers, more work. (A neutral value would
    need `Diagonal` and the combinators to support one.)
    """
    axes = _check_axes(axis)
    _check_std("eps", eps)
    eps = float(eps)
    channel_axis = check_axes("LayerNorm", batch_axis, channel_axis)
    name = f"LayerNorm(axis={axis!r})"

    def apply_fn(params, inputs, mask=None, **kwargs):
        ax = _canonical(axes, inputs.ndim, axis, f"inputs of shape {inputs.shape}")
        if mask is None:
            mean = jnp.mean(inputs, axis=ax, keepdims=True)
            var = jnp.var(inputs, axis=ax, keepdims=True)
        else:  # neural-tangents' masked moments: sums over all entries / present entries
            present = jnp.sum(~jnp.broadcast_to(mask, inputs.shape), axis=ax, keepdims=True)
            count = jnp.maximum(present, 1).astype(inputs.dtype)
            mean = jnp.sum(inputs, axis=ax, keepdims=True) / count
            var = jnp.sum((inputs - mean) ** 2, axis=ax, keepdims=True) / count
        return (inputs - mean) / jnp.sqrt(var + eps)

    def transform(k: Kernel) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"{name} takes one input; got {len(k)} branches")
        ndim = 2 + len(k.spatial)
        check_channel_axis(name, k, channel_axis, batch_axis)
        # the layer's axes are in its inputs' layout; the kernel has the points first
        c = canonical_axis(channel_axis, batch_axis, ndim, f"{name}: channel_axis")
        if not k.spatial:
            what = "fully connected inputs (N, C)"
        else:
            what = "NHWC inputs" if c == ndim - 1 else f"inputs with channels on axis {c}"
        ax = _canonical(axes, ndim, axis, what)
        b = axis_position(batch_axis, ndim, f"{name}: batch_axis")
        ax = tuple(sorted(0 if a == b else canonical_axis(a, batch_axis, ndim, name) for a in ax))
        if c not in ax:
            raise ValueError(
                f"{name}: axis must include the channel axis ({c} or {c - ndim}): normalizing "
                f"over sites alone has no infinite-width kernel (neural-tangents has the same "
                f"rule); got axis={axis!r}"
            )
        if 0 in ax:
            raise NotImplementedError(
                f"{name}: normalizing over the batch axis (0 in axis={axis!r}) makes each "
                "point's kernel depend on the other points of its batch; not supported"
            )
        if not k.is_gaussian:
            raise ValueError(
                f"{name}: the input to LayerNorm must be Gaussian; put a Dense or Conv layer "
                "right before it (neural-tangents has the same rule)"
            )
        sites = [a for a in range(1, ndim) if a != c]  # input axes of k.spatial, in order
        site_axes = tuple(1 + sites.index(a) for a in ax if a != c)  # axes of (n, *S)

        masks = k.site_masks()

        def variance(c, absent):
            """ε + the per-site variance, averaged over the normalized sites present: (n, *S)."""
            v = eps + (spatial.site_diagonal(c, 1) if k.full_spatial else c)
            if not site_axes:
                return v
            if absent is None:
                return jnp.mean(v, axis=site_axes, keepdims=True)
            present = jnp.sum(~absent, axis=site_axes, keepdims=True)
            total = jnp.sum(jnp.where(absent, 0, v), axis=site_axes, keepdims=True)
            return total / jnp.maximum(present, 1).astype(v.dtype)

        v1 = variance(k.cov1, None if masks is None else masks[0])
        v2 = v1 if k.cov2 is None else variance(k.cov2, None if masks is None else masks[1])
        if k.full_spatial:

            def left(v):
                return spatial.interleave(v, 1, first=True)

            def right(v):
                return spatial.interleave(v, 1, first=False)

            scale12 = jnp.sqrt(left(v1)[:, None] * right(v2)[None, :])
            scale1 = jnp.sqrt(left(v1) * right(v1))
            scale2 = None if k.cov2 is None else jnp.sqrt(left(v2) * right(v2))
        else:
            scale12 = jnp.sqrt(v1[:, None] * v2[None, :])
            scale1, scale2 = v1, v2
        return k.replace(
            nngp=k.nngp / scale12,
            ntk=None if k.ntk is None else k.ntk / scale12,
            cov1=k.cov1 / scale1,
            cov2=None if k.cov2 is None else k.cov2 / scale2,
        )

    kernel_fn = KernelFn(
        transform,
        name,
        channel_axis=channel_axis,
        batch_axis=batch_axis or None,  # 0: the default, not a claim
    )

    def kernel_mask(m, k_in, k_out):
        if m.shape[-1] != 1:
            channel_constant(m, name)
        return m

    return new_layer(
        _stateless_init, apply_fn, kernel_fn, masking=Masking(kernel=kernel_mask, takes_mask=True)
    )


# -------------------------------------------------------------------------- Dropout


def Dropout(rate: float, mode: str = "train"):
    r"""Dropout with keep probability ``rate`` (``rate=1`` keeps every unit), as
    neural-tangents' ``stax.Dropout`` (0.6.5) and ``jax.example_libraries.stax.Dropout``.

    Finite network, ``mode="train"``: y = m·x/rate with m ~ Bernoulli(rate) drawn per unit
    (each point, site and channel) from the ``rng`` keyword of ``apply_fn``, which is then
    required; ``mode="test"``: the identity.

    Kernel (train mode; neural-tangents' rule): E[m m'] / rate² is 1/rate when the two units
    are the same (same point, same site, same channel; the masks are otherwise independent)
    and 1 otherwise, so

        K(x, s; x', s') ← K(x, s; x', s') · (1/rate if (x, s) = (x', s') else 1),

    the NTK likewise (the gradient of each unit flows through its own mask): ``cov1``/``cov2``
    are scaled on their (site) diagonal, ``nngp``/``ntk`` only on the entries that pair a point
    with itself (``Kernel.self_pairs``), with the full spatial covariance only at the same
    site (`theory.kernels.spatial.site_diagonal_mask`). A cross kernel (``x2`` given) pairs no
    point with itself: its nngp/ntk are unchanged (the two batches get independent masks).
    Neural-tangents also treats an ``x2`` equal in value to ``x1`` as the same batch; here
    only ``x2=None`` does. The output is not Gaussian (an activation right after it is
    refused). Unlike neural-tangents, Dropout on the network's input is allowed (the rule
    above holds for any input). Test mode leaves the kernel unchanged. Spatial-diagonal
    requirement: none in neural-tangents, ``Diagonal(YES, NO)`` here (see `LayerNorm`).
    """
    if mode not in ("train", "test"):
        raise ValueError(f"Dropout: mode must be 'train' or 'test', got {mode!r}")
    if isinstance(rate, bool):
        raise TypeError(f"Dropout: rate must be a real number in (0, 1], got {rate!r}")
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise TypeError(f"Dropout: rate must be a real number in (0, 1], got {rate!r}") from None
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"Dropout: rate (the keep probability) must be in (0, 1], got {rate!r}")
    name = f"Dropout({rate}, {mode!r})"

    def apply_fn(params, inputs, **kwargs):
        if mode == "test":
            return inputs
        rng = kwargs.get("rng")
        if rng is None:
            raise ValueError(
                "Dropout in train mode needs a PRNG key: call apply_fn(params, inputs, rng=key) "
                "with e.g. key = jax.random.key(0)"
            )
        keep = jax.random.bernoulli(rng, rate, inputs.shape)
        return jnp.where(keep, inputs / rate, jnp.zeros((), inputs.dtype))

    def transform(k: Kernel) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"{name} takes one input; got {len(k)} branches")
        if mode == "test":
            return k
        factor = 1.0 / rate
        if k.full_spatial:
            # 1/rate on the site diagonal (S1 = S1', S2 = S2', …), 1 elsewhere
            site = jnp.where(spatial.site_diagonal_mask(k.spatial), factor, 1.0)
            site = site.astype(k.cov1.dtype)
        else:
            site = factor  # every stored entry is on the site diagonal
        nngp, ntk = k.nngp, k.ntk
        pairs = k.self_pairs()
        if pairs is not None:
            r, c = pairs
            nngp = nngp.at[r, c].multiply(site, mode="drop")
            ntk = None if ntk is None else ntk.at[r, c].multiply(site, mode="drop")
        return k.replace(
            nngp=nngp,
            ntk=ntk,
            cov1=k.cov1 * site,
            cov2=None if k.cov2 is None else k.cov2 * site,
            is_gaussian=False,
        )

    kernel_fn = KernelFn(transform, name)
    return new_layer(_stateless_init, apply_fn, kernel_fn)
