"""Combinators: serial and parallel composition, fan-out and fan-in, Identity."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from theory.kernels.kernel import channel_position
from theory.kernels.stax._core import (
    IdentityRule,
    KernelFn,
    Layer,
    Masking,
    SerialRule,
    _stateless_init,
    as_layer,
    new_layer,
)

__all__ = [
    "serial",
    "repeat",
    "parallel",
    "FanOut",
    "FanInSum",
    "FanInProd",
    "FanInConcat",
    "Identity",
]


# --------------------------------------------------------------------- combinators


def Identity() -> Layer:
    """The identity layer."""
    return new_layer(
        _stateless_init,
        lambda params, x, **kw: x,
        KernelFn(lambda k: k, "Identity", spatial_ndim="any"),  # inputs of any rank
        IdentityRule(),
    )


def serial(*layers) -> Layer:
    """Compose layers: the output of each feeds the next. Parameters are a list, one entry
    per layer."""
    if not layers:
        raise ValueError("serial needs at least one layer")
    layers = [as_layer(x, f"serial: argument {i}") for i, x in enumerate(layers)]
    inits, applies, kernels = zip(*layers)
    last = max((i for i, kf in enumerate(kernels) if kf.contracts_points), default=None)
    if last is not None and last < len(kernels) - 1:
        raise ValueError(
            f"serial: {kernels[last].__name__} (argument {last}) sums over the points (the "
            "batch axis is among its contracting dimensions); its outputs have no point axis, "
            "so no layer may follow it (neural-tangents has the same rule)"
        )

    def init_fn(rng, input_shape):
        params = []
        for init in inits:
            rng, sub = jax.random.split(rng)
            input_shape, p = init(sub, input_shape)
            params.append(p)
        return input_shape, params

    def apply_fn(params, inputs, **kwargs):
        # each layer its own key (two Dropout layers must not share a mask), as neural-tangents
        rng = kwargs.pop("rng", None)
        rngs = [None] * len(applies) if rng is None else jax.random.split(rng, len(applies))
        for f, p, key in zip(applies, params, rngs):
            inputs = f(p, inputs, rng=key, **kwargs)
        return inputs

    # One XLA computation per activation, with the linear layers before it fused in.
    groups, pending = [], []
    for kf in kernels:
        pending.append(kf)
        if kf.is_activation:
            groups.append(pending)
            pending = []
    if pending:
        groups.append(pending)

    def run_group(kfs, k_and_kwargs):
        k, kwargs = k_and_kwargs
        for kf in kfs:
            k = _apply(kf, k, kwargs)
        return k

    def transform(k, **kwargs):
        for kfs in groups:
            k = _fusion_boundary(functools.partial(run_group, kfs), (k, kwargs))
        return k

    kfn = _combined("serial", transform, kernels, lambda a, b: a >> b)
    return new_layer(
        init_fn, apply_fn, kfn, SerialRule(tuple(f.rule for f in applies)), masking=None
    )


def repeat(layer, n: int) -> Layer:
    """``layer`` composed with itself ``n`` times in a compiled loop (`jax.lax.scan`):
    the same network, kernel and numbers as ``serial(*[layer] * n)`` (neural-tangents'
    ``repeat``), compiled once instead of n times. ``layer`` must keep its input's shape
    (and its kernel's layout, e.g. two convolutions per repeat, as neural-tangents warns);
    parameters are those of one layer stacked along a leading axis of size n, drawn with
    neural-tangents' key schedule (``rng, k = split(rng)`` per repeat)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"repeat: n must be a non-negative integer, got {n!r}")
    layer = as_layer(layer, "repeat: argument 0")
    init, apply, kf = layer

    def init_fn(rng, input_shape):
        out_shape, _ = init(rng, input_shape)
        if tuple(out_shape) != tuple(input_shape):
            raise ValueError(
                f"repeat: the layer maps shape {tuple(input_shape)} to {tuple(out_shape)}; "
                "repeat needs a layer that keeps its input's shape (use serial(*[layer] * n))"
            )

        def one(key, _):
            key, sub = jax.random.split(key)
            return key, init(sub, input_shape)[1]

        _, params = jax.lax.scan(one, rng, None, n)
        return out_shape, params

    def apply_fn(params, inputs, **kwargs):
        def one(x, p):
            return apply(p, x, **kwargs), None

        return jax.lax.scan(one, inputs, params, n)[0]

    def transform(k, **kwargs):
        if n == 0:
            return k
        k = _apply(kf, k, kwargs)  # the first application may set metadata; then a loop

        def one(k, _):
            return _apply(kf, k, kwargs), None

        return jax.lax.scan(one, k, None, n - 1)[0]

    kfn = _combined(f"repeat[{n}]", transform, [kf], lambda a, b: a >> b)
    return new_layer(init_fn, apply_fn, kfn, masking=None)


def _combined(name: str, transform: Callable, kernels, fold) -> KernelFn:
    """The `KernelFn` of a combinator over ``kernels``: their names, hints, input needs (site
    axes; the inputs' channel axis, the first one a layer names, as in neural-tangents) and
    call-time keywords, and their `Diagonal` requirements folded with ``fold`` (``>>`` in
    series, ``&`` in parallel)."""
    return KernelFn(
        transform,
        f"{name}(" + ", ".join(kf.__name__ for kf in kernels) + ")",
        hints=tuple(h for kf in kernels for h in kf.hints),
        spatial_ndim=_spatial_ndim(kernels),
        diagonal=functools.reduce(fold, [kf.diagonal for kf in kernels]),
        call_kwargs=tuple(n for kf in kernels for n in kf.call_kwargs),
        channel_axis=next((kf.channel_axis for kf in kernels if kf.channel_axis is not None), None),
        mixes_points=any(kf.mixes_points for kf in kernels),
        batch_axis=next((kf.batch_axis for kf in kernels if kf.batch_axis is not None), None),
        contracts_points=any(kf.contracts_points for kf in kernels),
    )


def _apply(kf, k, kwargs: dict):
    """``kf``'s transform of ``k``, given the call-time keywords that ``kf`` declares."""
    return kf.transform(k, **{n: v for n, v in kwargs.items() if n in kf.call_kwargs})


def _spatial_ndim(kernels) -> int | str | None:
    """The site axes a network's inputs need: those of its first convolution or pool; else
    ``"sites"`` (NHWC, any number of site axes) if a layer needs sites without fixing their
    number (attention, graphs); else ``"any"`` if a layer takes inputs of any rank (global
    pooling: NHWC, or (N, C) which it passes unchanged); else None (2-D inputs)."""
    nds = [kf.spatial_ndim for kf in kernels]
    fixed = [nd for nd in nds if isinstance(nd, int)]
    if fixed:
        return fixed[0]
    if "sites" in nds:
        return "sites"
    return "any" if "any" in nds else None


def _fusion_boundary(f: Callable, k):
    """``f(k)``, compiled as its own XLA computation.

    XLA fuses elementwise producers into every consumer; in a deep kernel the NTK of layer
    l reads the NNGP of layer l, so without a boundary each layer's fusion recomputes the
    whole NNGP chain before it (O(depth²) work: 8× slower at depth 10; and O(depth²)
    compile time: 36 s instead of 3 s for a depth-50 kernel, measured). A
    ``lax.cond`` whose two branches are the same function is semantically ``f(k)`` whatever
    the predicate, but XLA cannot fuse across it. The predicate reads the data so that it
    cannot be constant-folded away.
    """
    leaves = [a for a in jax.tree_util.tree_leaves(k) if np.size(a)]
    if not leaves or not isinstance(leaves[0], jax.core.Tracer):
        return f(k)  # eager use (or no entries, e.g. a shape probe): nothing to fuse
    probe = leaves[0].reshape(-1)[0]
    return jax.lax.cond(probe == probe, f, f, k)


def parallel(*layers) -> Layer:
    """Apply layer i to input i of a list (as produced by `FanOut`)."""
    if not layers:
        raise ValueError("parallel needs at least one layer")
    layers = [as_layer(x, f"parallel: argument {i}") for i, x in enumerate(layers)]
    inits, applies, kernels = zip(*layers)

    def init_fn(rng, input_shapes):
        keys = jax.random.split(rng, len(layers))
        out = [init(key, shape) for init, key, shape in zip(inits, keys, input_shapes)]
        return [o[0] for o in out], [o[1] for o in out]

    def apply_fn(params, inputs, **kwargs):
        rng = kwargs.pop("rng", None)
        rngs = [None] * len(applies) if rng is None else jax.random.split(rng, len(applies))
        return [f(p, x, rng=r, **kwargs) for f, p, x, r in zip(applies, params, inputs, rngs)]

    def transform(ks, **kwargs):
        if not isinstance(ks, (list, tuple)) or len(ks) != len(kernels):
            raise ValueError(
                f"parallel of {len(kernels)} layers needs {len(kernels)} inputs (use FanOut)"
            )
        return [_apply(kf, k, kwargs) for kf, k in zip(kernels, ks)]

    kfn = _combined("parallel", transform, kernels, lambda a, b: a & b)
    return new_layer(init_fn, apply_fn, kfn, masking=None)


def FanOut(num: int) -> Layer:
    """Copy the input into ``num`` branches."""
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")

    def init_fn(rng, input_shape):
        return [input_shape] * num, ()

    return new_layer(
        init_fn,
        lambda params, x, **kw: [x] * num,
        KernelFn(lambda k: [k] * num, f"FanOut({num})"),
        masking=None,  # copies the masks with the inputs
    )


def _fan_in_check(ks, name):
    if not isinstance(ks, (list, tuple)) or not ks:
        raise ValueError(f"{name} needs a list of branches (use FanOut and parallel)")
    widths = {k.width for k in ks}
    if len(widths) != 1:
        raise ValueError(f"{name}: all branches must have the same width, got {sorted(widths)}")


def _fan_in_init(rng, input_shapes):
    return input_shapes[0], ()


def _and_masks(masks, *_):
    """An output entry is absent when it is absent in every branch (neural-tangents' rule for
    sums and products: a present branch carries the value)."""
    return functools.reduce(jnp.logical_and, masks)


_ABSENT_IN_EVERY_BRANCH = Masking(kernel=_and_masks, apply=_and_masks)


def FanInSum() -> Layer:
    """Sum the branches: K = Σ Kᵢ, Θ = Σ Θᵢ (branches must be Gaussian, as in
    neural-tangents: the sum of non-centred branches would need their means)."""

    def transform(ks):
        _fan_in_check(ks, "FanInSum")
        gaussian = all(k.is_gaussian for k in ks)
        if not gaussian and len(ks) != 1:
            raise NotImplementedError(
                "FanInSum needs every branch to end in a Dense layer (mean-zero Gaussian)"
            )

        def total(name):
            vals = [getattr(k, name) for k in ks]
            return None if vals[0] is None else functools.reduce(jnp.add, vals)

        return ks[0].replace(
            nngp=total("nngp"),
            ntk=total("ntk"),
            cov1=total("cov1"),
            cov2=total("cov2"),
            is_gaussian=gaussian,
        )

    return new_layer(
        _fan_in_init,
        lambda params, xs, **kw: functools.reduce(jnp.add, xs),
        KernelFn(transform, "FanInSum"),
        masking=_ABSENT_IN_EVERY_BRANCH,
    )


def FanInProd() -> Layer:
    """Multiply the branches elementwise: K = Π Kᵢ, Θ = Σᵢ Θᵢ Π_{j≠i} Kⱼ (independent
    branches)."""

    def transform(ks):
        _fan_in_check(ks, "FanInProd")
        nngp, ntk = 1.0, 0.0
        for k in ks:
            ntk = None if k.ntk is None or ntk is None else ntk * k.nngp + nngp * k.ntk
            nngp = nngp * k.nngp
        cov1 = functools.reduce(jnp.multiply, [k.cov1 for k in ks])
        cov2 = None if ks[0].cov2 is None else functools.reduce(jnp.multiply, [k.cov2 for k in ks])
        return ks[0].replace(
            nngp=nngp,
            ntk=ntk,
            cov1=cov1,
            cov2=cov2,
            is_gaussian=len(ks) == 1 and ks[0].is_gaussian,
        )

    return new_layer(
        _fan_in_init,
        lambda params, xs, **kw: functools.reduce(jnp.multiply, xs),
        KernelFn(transform, "FanInProd"),
        masking=_ABSENT_IN_EVERY_BRANCH,
    )


def FanInConcat(axis: int = -1) -> Layer:
    """Concatenate the branches along ``axis`` of their activations (neural-tangents'
    ``FanInConcat``; batch axis 0, channels where the network keeps them, sites between).

    The kernel, for branches with kernels Kᵢ (the same rules for Θ and the per-point blocks):

    - **channel axis**: a neuron of the next layer sums over all Σ cᵢ channels, branch i
      contributing cᵢ of them, so K = Σ cᵢ Kᵢ / Σ cᵢ (the plain mean when the widths are
      equal); width Σ cᵢ. The output is not a Gaussian after a Dense (as in neural-tangents,
      a Dense or Conv must follow before FanInSum or another concatenation off the channels).
    - **batch axis** (0): the points of branch 1, then of branch 2, …; branches are
      independent mean-zero Gaussians, so two points from different branches are
      uncorrelated: K is block-diagonal, ``(Σ n1ᵢ, Σ n2ᵢ)``. The output's points are not the
      inputs' points, so such a network is computed untiled (neural-tangents warns that
      batching it is inconsistent; ours never slices it).
    - **a site axis**: the sites concatenated; on the spatial diagonal a plain concatenation,
      with the full covariance block-diagonal in that axis's pair of sites (different branches
      are independent).

    Off the channel axis the branches must be mean-zero Gaussians (end in Dense/Conv, as
    neural-tangents requires; else `NotImplementedError`), and every other axis must agree.
    """
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"FanInConcat: axis must be an integer, got {axis!r}")

    def transform(ks):
        if not isinstance(ks, (list, tuple)) or not ks:
            raise ValueError("FanInConcat needs a list of branches (use FanOut and parallel)")
        k0 = ks[0]
        ndim = 2 + len(k0.spatial)
        if not -ndim <= axis < ndim:
            raise ValueError(
                f"FanInConcat: axis={axis} is out of range for the branches' {ndim}-D activations"
            )
        ax = axis % ndim
        c = channel_position(k0.channel_axis, ndim, "channel_axis")
        sites = [a for a in range(1, ndim) if a != c]
        for i, k in enumerate(ks[1:], 1):
            if (k.channel_axis, k.full_spatial) != (k0.channel_axis, k0.full_spatial):
                raise ValueError(
                    f"FanInConcat: branch {i} holds its channels or sites differently from branch 0"
                )
            shape0 = (k0.nngp.shape[0], *k0.spatial, k0.width)
            shape = (k.nngp.shape[0], *k.spatial, k.width)
            order = [0, *sites, c]  # activation axis -> position in shape
            other = [j for j, a in enumerate(order) if a != ax and a != 0]
            if len(k.spatial) != len(k0.spatial) or any(shape[j] != shape0[j] for j in other):
                raise ValueError(
                    f"FanInConcat(axis={axis}): the branches' activations must agree off the "
                    f"concatenated axis, got sites×channels {k0.spatial}×{k0.width} and "
                    f"{k.spatial}×{k.width} (branch {i})"
                )
            if ax != 0 and k.nngp.shape[:2] != k0.nngp.shape[:2]:
                raise ValueError("FanInConcat: the branches must have the same points")
        if ax == c:
            widths = [k.width for k in ks]
            total = sum(widths)

            def mean(name):
                vals = [getattr(k, name) for k in ks]
                if vals[0] is None:
                    return None
                return functools.reduce(jnp.add, [v * (w / total) for v, w in zip(vals, widths)])

            return k0.replace(
                nngp=mean("nngp"), ntk=mean("ntk"), cov1=mean("cov1"), cov2=mean("cov2"),
                width=total, is_gaussian=False,
            )  # fmt: skip
        if not all(k.is_gaussian for k in ks):
            raise NotImplementedError(
                f"FanInConcat(axis={axis}) off the channel axis needs every branch to end in a "
                "Dense or Conv layer (mean-zero Gaussian), as in neural-tangents"
            )
        if ax == 0:
            pair, block = (0, 1), (0,)
            spatial = k0.spatial
        else:
            j = sites.index(ax)
            spatial = list(k0.spatial)
            spatial[j] = sum(k.spatial[j] for k in ks)
            spatial = tuple(spatial)
            if k0.full_spatial:
                pair, block = (2 + 2 * j, 3 + 2 * j), (1 + 2 * j, 2 + 2 * j)
            else:
                pair, block = (2 + j,), (1 + j,)

        def join(mats, axes):
            if mats[0] is None:
                return None
            if len(axes) == 1:
                return jnp.concatenate(mats, axes[0])
            a, b = axes  # block-diagonal in the pair (a, b): zero blocks between branches
            sizes = [m.shape[a] for m in mats]
            rows = []
            for i, m in enumerate(mats):
                pads = [(0, 0)] * m.ndim
                pads[a] = (sum(sizes[:i]), sum(sizes[i + 1 :]))
                rows.append(jnp.pad(m, pads))
            return jnp.concatenate(rows, b)

        def per_point(name):
            mats = [getattr(k, name) for k in ks]
            if mats[0] is None:
                return None
            # a point's own block: with the full covariance its sites pair (block of 2 axes)
            return join(mats, block if ax != 0 else (0,))

        return k0.replace(
            nngp=join([k.nngp for k in ks], pair),
            ntk=join([k.ntk for k in ks], pair),
            cov1=per_point("cov1"),
            cov2=per_point("cov2"),
            spatial=spatial,
            diag_offset=None,
            is_gaussian=True,
        )

    kfn = KernelFn(transform, f"FanInConcat({axis})", mixes_points=_concat_may_mix(axis))

    def init_fn(rng, input_shapes):
        shapes = [tuple(s) for s in input_shapes]
        ndim = len(shapes[0])
        ax = axis % ndim
        out = list(shapes[0])
        sizes = [s[ax] for s in shapes]
        out[ax] = -1 if any(n is None or n < 0 for n in sizes) else sum(sizes)
        return tuple(out), ()

    def kernel_mask(masks, ks, out):
        ndim = 2 + len(ks[0].spatial)
        ax = axis % ndim
        c = channel_position(ks[0].channel_axis, ndim, "channel_axis")
        if ax == c:  # every channel its own mask entry
            return jnp.concatenate(
                [jnp.broadcast_to(m, (*m.shape[:-1], k.width)) for m, k in zip(masks, ks)], -1
            )
        at = 0 if ax == 0 else 1 + [a for a in range(1, ndim) if a != c].index(ax)
        extent = max(m.shape[-1] for m in masks)
        return jnp.concatenate([jnp.broadcast_to(m, (*m.shape[:-1], extent)) for m in masks], at)

    def apply_mask(masks, xs):
        return jnp.concatenate(
            [jnp.broadcast_to(m, jnp.shape(x)) for m, x in zip(masks, xs)], axis=axis
        )

    return new_layer(
        init_fn,
        lambda params, xs, **kw: jnp.concatenate(xs, axis=axis),
        kfn,
        masking=Masking(kernel=kernel_mask, apply=apply_mask),
    )


def _concat_may_mix(axis: int) -> bool:
    """Whether `FanInConcat(axis)` may concatenate points (axis 0, or −ndim of activations whose
    rank is not known when the layer is built): such networks are computed untiled."""
    return axis == 0 or axis <= -2
