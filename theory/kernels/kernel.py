"""The `Kernel` state carried through a network description, and input validation.

A `Kernel` holds, for two batches of inputs ``x1`` (n1 points) and ``x2`` (n2 points),
the covariances of a layer's pre-activations in the infinite-width limit:

============  ==========  ==========================================================
field         shape       meaning
============  ==========  ==========================================================
``nngp``      (n1, n2)    K(x1_i, x2_j) = E[z(x1_i) z(x2_j)]  (NNGP kernel)
``ntk``       (n1, n2)    Θ(x1_i, x2_j), or None when only the NNGP is asked for
``cov1``      (n1,)       K(x1_i, x1_i)
``cov2``      (n2,)       K(x2_j, x2_j), or None when x2 is x1
``width``     static      channel count of the finite network at this point (needed by
                          the standard parameterization, Sohl-Dickstein et al. 2020)
``is_gaussian`` static    the pre-activations are a centred GP (true after a Dense)
``diag_offset`` ()        for a tile of a symmetric kernel: entry (r, c) pairs a point
                          with itself iff r + diag_offset == c; None elsewhere
``spatial``   static      the site shape S of spatial (NHWC) inputs, () for FC; then
                          nngp/ntk are (n1, n2, *S) and cov1/cov2 (n1, *S), (n2, *S):
                          the spatial diagonal, K(x_i at s, x_j at s) (see
                          `theory.kernels.spatial`)
``diagonal_batch`` static False when ``cov1``/``cov2`` hold every pair of x1's (x2's)
                          points, (n1, n1, …) and (n2, n2, …), as ``kernel_fn(...,
                          diagonal_batch=False)`` returns; True (the per-point variances)
                          everywhere inside a network
``mask1``     (n1, *S, c) where the inputs are masked (``kernel_fn(..., mask_constant=v)``:
``mask2``     (n2, *S, c) input entries equal to v are zeroed and count as absent, as in
                          neural-tangents): True at a masked point and site, with the
                          points first and the channels last (c = 1 when every channel of a
                          site shares its mask, else the width); None when nothing is
                          masked, and ``mask2`` None when x2 is x1. Each layer maps the masks
                          (`theory.kernels.stax.Masking`) and zeroes every kernel entry that
                          pairs a masked site (`remask`)
``channel_axis`` static   where the network's activations at this point hold their
                          channels: None for the last axis (NHWC, and (N, C) for FC),
                          else the axis (1 for NCHW); the sites S are the other non-batch
                          axes in order, so the arrays above do not depend on it: layers
                          that name a ``channel_axis`` check it (`check_channel_axis`)
============  ==========  ==========================================================

Conventions follow neural-tangents: the input kernel is ``x1·x2ᵀ / d`` and the NTK is 0
before the first trainable layer.

Numerical guards shared by every public kernel function (``stax`` ``kernel_fn``, `batch`,
`monte_carlo_kernel`, `empirical_ntk`):

- inputs must be finite 2-D arrays of float32 or float64 (`check_inputs`); 16-bit floats are
  refused (`TypeError`), not upcast (see `check_precision`);
- outputs computed from finite inputs must be finite, else `NonFiniteKernelError` is raised
  (`check_outputs`), never a silent NaN or inf: a kernel with NaN or inf has no valid use
  downstream (`predict` rejects it), and the error says which quantity and how to fix it
  (usually float64). The offending result stays available as ``error.result`` for callers
  who want it anyway;
- an output that cannot fit in memory is refused before anything is allocated
  (`check_memory`, `KernelMemoryError`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Kernel:
    """Infinite-width covariances of one layer (see module docstring for the fields)."""

    nngp: jax.Array
    ntk: jax.Array | None
    cov1: jax.Array
    cov2: jax.Array | None
    width: int = dataclasses.field(metadata=dict(static=True))
    is_gaussian: bool = dataclasses.field(default=False, metadata=dict(static=True))
    diag_offset: jax.Array | None = None
    spatial: tuple[int, ...] = dataclasses.field(default=(), metadata=dict(static=True))
    diagonal_spatial: bool = dataclasses.field(default=True, metadata=dict(static=True))
    channel_axis: int | None = dataclasses.field(default=None, metadata=dict(static=True))
    diagonal_batch: bool = dataclasses.field(default=True, metadata=dict(static=True))
    mask1: jax.Array | None = None
    mask2: jax.Array | None = None
    # set while a network that contracts the points' axis is computed on x1 and x2 stacked
    # (`KernelFn._contracted`): the first ``points_split`` points are x1's, the rest x2's
    points_split: int | None = dataclasses.field(default=None, metadata=dict(static=True))

    def replace(self, **kw: Any) -> Kernel:
        """A copy with fields replaced. ``shape1``/``shape2`` (neural-tangents' fields; here
        derived) set ``width`` and ``spatial`` from the activations' shape they describe
        (points first, channels on ``channel_axis``); the points must be this kernel's."""
        for name in ("shape1", "shape2"):
            if name not in kw:
                continue
            shape = tuple(int(d) for d in kw.pop(name))
            n = self.nngp.shape[0 if name == "shape1" else 1]
            if len(shape) < 2 or shape[0] != n:
                raise ValueError(
                    f"replace: {name}={shape} must be (points, …, channels) with {n} points"
                )
            c = channel_position(kw.get("channel_axis", self.channel_axis), len(shape), name)
            rest = {"width": shape[c], "spatial": shape[1:c] + shape[c + 1 :]}
            for field, value in rest.items():
                if kw.setdefault(field, value) != value:
                    raise ValueError(
                        f"replace: {name}={shape} gives {field} {value}, but {kw[field]} was "
                        "asked for (x1's and x2's activations share their non-point axes)"
                    )
        return dataclasses.replace(self, **kw)

    def _shape(self, n: int) -> tuple[int, ...]:
        shape = [n, *self.spatial]
        c = len(shape) if self.channel_axis is None else self.channel_axis
        return tuple(shape[:c] + [self.width] + shape[c:])

    @property
    def shape1(self) -> tuple[int, ...]:
        """Shape of the finite network's activations on x1 at this layer (neural-tangents'
        ``shape1``): (n1, *sites, width), the channels where the network holds them."""
        return self._shape(self.nngp.shape[0])

    @property
    def shape2(self) -> tuple[int, ...]:
        """As `shape1`, on x2 (x1 when x2 is None)."""
        return self._shape(self.nngp.shape[1])

    def var2(self) -> jax.Array:
        return self.cov1 if self.cov2 is None else self.cov2

    @property
    def full_spatial(self) -> bool:
        """The kernel holds every pair of sites (S1, S1', …), not only the spatial diagonal."""
        return bool(self.spatial) and not self.diagonal_spatial

    def outer_vars(self) -> tuple[jax.Array, jax.Array]:
        """``(q11, q22)`` broadcastable against ``nngp``: shapes (n1, 1, *S) and (1, n2, *S) (FC:
        (n1, 1), (1, n2)); with the full spatial covariance each site's variance, at zipped
        positions (n1, 1, S1, 1, …) and (1, n2, 1, S1, …)."""
        if not self.full_spatial:
            return self.cov1[:, None], self.var2()[None, :]
        from theory.kernels import spatial

        v1 = spatial.interleave(spatial.site_diagonal(self.cov1, 1), 1, first=True)
        v2 = spatial.interleave(spatial.site_diagonal(self.var2(), 1), 1, first=False)
        return v1[:, None], v2[None, :]

    def block_vars(self, c: jax.Array):
        """``(q11, q22, same)`` for a per-point block ``c`` (cov1 or cov2) as input to a dual:
        ``(c, c, True)`` on the spatial diagonal and for FC (every entry pairs a point and site
        with itself); with the full covariance the sites' variances on either side of each
        pair and the mask of the site diagonal."""
        if not self.full_spatial:
            return c, c, True
        from theory.kernels import spatial

        v = spatial.site_diagonal(c, 1)
        same = spatial.site_diagonal_mask(self.spatial)[None]
        return spatial.interleave(v, 1, True), spatial.interleave(v, 1, False), same

    def site_masks(self) -> tuple[jax.Array, jax.Array] | None:
        """``(s1, s2)``, True at a masked point and site, shapes (n1, *S) and (n2, *S): a site
        counts as masked when all of its channels are (`mask1`, `mask2`); None when nothing
        is masked."""
        if self.mask1 is None:
            return None
        s1 = jnp.all(self.mask1, axis=-1)
        s2 = s1 if self.mask2 is None else jnp.all(self.mask2, axis=-1)
        return s1, s2

    def pair_keep(self) -> tuple[jax.Array, jax.Array, jax.Array] | None:
        """``(keep12, keep11, keep22)``: True where neither member of a pair is masked,
        broadcastable against ``nngp``, ``cov1`` and ``cov2`` (with the full spatial covariance
        at zipped site positions); None when nothing is masked."""
        masks = self.site_masks()
        if masks is None:
            return None
        k1, k2 = ~masks[0], ~masks[1]
        if not self.full_spatial:
            return k1[:, None] & k2[None, :], k1, k2
        from theory.kernels import spatial

        a1, b1 = spatial.interleave(k1, 1, True), spatial.interleave(k1, 1, False)
        a2, b2 = spatial.interleave(k2, 1, True), spatial.interleave(k2, 1, False)
        return a1[:, None] & b2[None, :], a1 & b1, a2 & b2

    def remask(self) -> Kernel:
        """This kernel with every entry that pairs a masked point and site set to 0 (the
        activations there are zero: each layer zeroes its masked inputs)."""
        keep = self.pair_keep()
        if keep is None:
            return self
        if not self.diagonal_batch:
            raise NotImplementedError("masks with diagonal_batch=False blocks inside a network")
        k12, k11, k22 = keep

        def zero(a, m):
            return None if a is None else jnp.where(m, a, jnp.zeros((), a.dtype))

        return self.replace(
            nngp=zero(self.nngp, k12),
            ntk=zero(self.ntk, k12),
            cov1=zero(self.cov1, k11),
            cov2=zero(self.cov2, k22),
        )

    def self_pairs(self) -> tuple[jax.Array, jax.Array] | None:
        """Indices (rows, cols) of the entries that pair a point with itself, or None.

        Untiled symmetric kernel: the diagonal. Tile of a symmetric kernel: (r, r + offset),
        with out-of-range columns (tiles off the diagonal) set past the end, so that
        ``.at[rows, cols].set(..., mode="drop")`` skips them.
        """
        n1, n2 = self.nngp.shape[:2]
        rows = jnp.arange(n1)
        if self.diag_offset is not None:
            cols = rows + self.diag_offset
            return rows, jnp.where((cols >= 0) & (cols < n2), cols, n2)
        if self.cov2 is None:
            return rows, rows
        return None


def check_inputs(
    x1: Any,
    x2: Any = None,
    name1: str = "x1",
    name2: str = "x2",
    spatial_ndim: int | str | None = None,
):
    """Validate a pair of input batches; return them as arrays of a common float dtype.

    ``spatial_ndim`` None: 2-D (n_points, n_features); an integer k: NHWC arrays
    (n_points, *S, channels) with k site axes (networks with convolutions); ``"sites"``: NHWC
    with any number ≥ 1 of site axes (networks that start with global pooling or attention);
    ``"any"``: any
    array whose first axis indexes points (finite networks: `empirical_ntk`,
    `monte_carlo_kernel`)."""
    x1 = _check_matrix(x1, name1, spatial_ndim)
    if x2 is not None:
        x2 = _check_matrix(x2, name2, spatial_ndim)
        if x1.shape[1:] != x2.shape[1:]:
            what = "feature dimension" if x1.ndim == 2 else "shape after the point axis"
            raise ValueError(
                f"{name1} and {name2} must have the same {what}, got "
                f"{name1}.shape={x1.shape} and {name2}.shape={x2.shape}"
            )
        dtype = jnp.result_type(x1.dtype, x2.dtype)
        x1, x2 = x1.astype(dtype), x2.astype(dtype)
    return x1, x2


def same_inputs(x2):
    """``x2``, or None when it says "x1 against itself": None, or a tree of Nones (neural-tangents
    passes ``(None, None)`` for a network with two inputs)."""
    if x2 is None:
        return None
    leaves = jax.tree_util.tree_leaves(x2, is_leaf=lambda z: z is None)
    return None if leaves and all(v is None for v in leaves) else x2


def _check_matrix(x: Any, name: str, spatial_ndim: int | str | None = None) -> jax.Array:
    if isinstance(x, jax.core.Tracer):
        arr = x
    else:
        if not hasattr(x, "shape"):
            x = np.asarray(x)
        arr = x
    if spatial_ndim == "any":
        if arr.ndim < 2:
            raise ValueError(
                f"{name} must be an array of shape (n_points, ...) with at least 2 axes, got "
                f"shape {arr.shape}"
            )
    elif spatial_ndim == "sites":
        if arr.ndim < 3:
            raise ValueError(
                f"{name} must be an NHWC array (n_points, spatial axes, channels) with at least "
                f"one spatial axis for this network's spatial layers, got shape {arr.shape}"
            )
    elif spatial_ndim is None and arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_points, n_features), got shape {arr.shape}"
        )
    elif spatial_ndim is not None and arr.ndim != 2 + spatial_ndim:
        raise ValueError(
            f"{name} must be a {2 + spatial_ndim}-D array of shape (n_points, "
            f"{spatial_ndim} spatial axes, channels) (NHWC) for this network's convolutions, "
            f"got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must have at least one point (row), got shape {arr.shape}")
    if 0 in arr.shape[1:]:
        raise ValueError(f"{name} must have at least one feature, got shape {arr.shape}")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        if jnp.issubdtype(arr.dtype, jnp.integer) or arr.dtype == bool:
            arr = jnp.asarray(arr, dtype=jnp.result_type(float))
        else:
            raise TypeError(f"{name} must be a real floating-point array, got dtype {arr.dtype}")
    check_precision(name, arr.dtype)
    if not isinstance(arr, jax.core.Tracer):
        # evaluated now even inside a caller's jax.jit, where ops on constants are staged
        with jax.ensure_compile_time_eval():
            finite = bool(jnp.all(jnp.isfinite(arr)))
        if not finite:
            raise ValueError(f"{name} contains NaN or inf")
    return jnp.asarray(arr)


def _zero_ntk(nngp: jax.Array) -> jax.Array:
    """The NTK before the first trainable layer: 0, as ``nngp * 0`` rather than a constant.

    A literal zero array is a compile-time constant, and XLA's constant folding then evaluates
    every linear layer applied to it (the Conv shifts, the pools) at compile time: 7 s of a
    Myrtle CNN's 20 s compilation, minutes for a 500 × 500 CNN-GP tile (measured). ``nngp * 0``
    is data, costs one pass, and is 0 for the finite ``nngp`` that the input checks guarantee.
    """
    return nngp * 0


def input_kernel(
    x1: jax.Array,
    x2: jax.Array | None,
    compute_ntk: bool,
    diagonal_spatial: bool = True,
    channel_axis: int | None = None,
    mask_constant=None,
) -> Kernel:
    """The kernel of the raw inputs: ``x1 x2ᵀ / d`` (neural-tangents' convention); for NHWC
    inputs (ndim > 2) Σ_c x1[i, s, c] x2[j, s', c] / C on the spatial diagonal (s = s') or,
    with ``diagonal_spatial=False``, for every pair of sites. ``channel_axis``: the inputs'
    channel axis (None or −1: the last; 1 for NCHW), as the network's first layer that names
    one declares it (`theory.kernels.stax.KernelFn.channel_axis`). ``mask_constant``: input
    entries equal to it (NaN matches NaN) are zeroed and recorded in ``mask1``/``mask2``."""
    if mask_constant is not None:
        m1 = masked_entries(x1, mask_constant)
        m2 = None if x2 is None else masked_entries(x2, mask_constant)
        x1 = jnp.where(m1, jnp.zeros((), x1.dtype), x1)
        x2 = None if x2 is None else jnp.where(m2, jnp.zeros((), x2.dtype), x2)
        k = input_kernel(x1, x2, compute_ntk, diagonal_spatial, channel_axis)
        c = channel_position(channel_axis, x1.ndim, "channel_axis")

        def canonical(m):
            return None if m is None else jnp.moveaxis(m, c, -1)

        return k.replace(mask1=canonical(m1), mask2=canonical(m2))
    if x1.ndim > 2:
        from theory.kernels import spatial

        c = channel_position(channel_axis, x1.ndim, "channel_axis")
        if c != x1.ndim - 1:  # sites are the other non-batch axes, in order
            x1 = jnp.moveaxis(x1, c, -1)
            x2 = None if x2 is None else jnp.moveaxis(x2, c, -1)

        make = spatial.input_kernel_diagonal if diagonal_spatial else spatial.input_kernel_full
        nngp, cov1, cov2 = make(x1, x2)
        ntk = _zero_ntk(nngp) if compute_ntk else None
        return Kernel(
            nngp=nngp,
            ntk=ntk,
            cov1=cov1,
            cov2=cov2,
            width=x1.shape[-1],
            is_gaussian=False,
            spatial=tuple(x1.shape[1:-1]),
            diagonal_spatial=diagonal_spatial,
            channel_axis=None if c == x1.ndim - 1 else c,
        )
    d = x1.shape[1]
    y = x1 if x2 is None else x2
    nngp = jnp.dot(x1, y.T, precision=jax.lax.Precision.HIGHEST) / d  # (n1, n2)
    cov1 = jnp.sum(x1 * x1, axis=1) / d  # (n1,)
    cov2 = None if x2 is None else jnp.sum(x2 * x2, axis=1) / d
    ntk = _zero_ntk(nngp) if compute_ntk else None
    # no sites; the flag still says how sites a later layer creates are to be kept
    # (neural-tangents' rule: DotGeneral with a site-carrying constant)
    return Kernel(
        nngp=nngp,
        ntk=ntk,
        cov1=cov1,
        cov2=cov2,
        width=d,
        is_gaussian=False,
        diagonal_spatial=diagonal_spatial,
    )


def masked_entries(x, mask_constant) -> jax.Array:
    """True where ``x`` equals ``mask_constant`` (NaN where it is NaN), neural-tangents'
    rule for masked inputs; ``mask_constant`` may be traced."""
    c = jnp.asarray(mask_constant)
    return jnp.where(jnp.isnan(c), jnp.isnan(x), x == c.astype(x.dtype))


def channel_position(channel_axis: int | None, ndim: int, name: str) -> int:
    """``channel_axis`` (None: the last) as a position in 0 … ndim − 1 of ``ndim``-D
    activations whose batch axis is 0; ValueError naming ``name`` when it is out of range or
    the batch axis."""
    if channel_axis is None:
        return ndim - 1
    if not -ndim <= channel_axis < ndim or channel_axis % ndim == 0:
        raise ValueError(
            f"{name}={channel_axis} is not a channel axis of {ndim}-D inputs whose batch axis "
            f"is 0: it must be one of 1 … {ndim - 1} (or −{ndim - 1} … −1)"
        )
    return channel_axis % ndim


def check_channel_axis(layer: str, k: Kernel, channel_axis: int, batch_axis: int = 0) -> None:
    """Raise ValueError unless ``k``'s activations hold their channels on ``channel_axis``
    (what a layer built with that ``channel_axis`` expects; neural-tangents' rule). ``k`` is
    laid out with its points on axis 0; a layer whose points are on ``batch_axis`` names its
    channel axis in its own layout, renumbered here."""
    ndim = 2 + len(k.spatial)
    have = channel_position(k.channel_axis, ndim, "channel_axis")
    if batch_axis != 0:
        from theory.kernels.stax._core import canonical_axis

        want = canonical_axis(channel_axis, batch_axis, ndim, f"{layer}: channel_axis")
    else:
        want = channel_position(channel_axis, ndim, f"{layer}: channel_axis")
    if want != have:
        raise ValueError(
            f"{layer}: channel_axis={channel_axis} is axis {want} of its {ndim}-D inputs, but "
            f"the network's activations there hold their channels on axis {have} (set by the "
            f"network's input layout or the last convolution's output dimension_numbers); "
            f"build {layer.split('(')[0]} with channel_axis={have}"
        )


# ------------------------------------------------------------------ numerical guards

SUPPORTED_DTYPES = "float32 or float64"


def check_precision(name: str, dtype) -> None:
    """Refuse floating dtypes narrower than 32 bits (float16, bfloat16, float8 variants).

    Computed in 16 bits, a depth-3 ReLU kernel of 50 points is off by up to 1.6e-3
    (float16) and 2.2e-2 (bfloat16) relative to float64, against 4.6e-7 in float32
    (measured), and float16 overflows at 65504. Refusing rather than upcasting with a
    warning keeps the rule "the output has the input's dtype", and makes the caller choose
    the precision with one ``astype``.
    """
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
        raise TypeError(
            f"{name} has dtype {jnp.dtype(dtype).name}: kernels are computed in "
            f"{SUPPORTED_DTYPES} only (in 16 bits a depth-3 ReLU kernel is off by 1.6e-3 to "
            f"2.2e-2, and float16 overflows at 65504); cast it first, e.g. "
            f"{name}.astype(np.float32)"
        )


class NonFiniteKernelError(FloatingPointError, ValueError):
    """A kernel computed from finite inputs came out NaN or inf (see `check_outputs`).

    ``result`` holds what the computation returned, for callers who want the values anyway.
    """

    def __init__(self, message: str, result: Any = None):
        super().__init__(message)
        self.result = result


def any_rank_promotion(fn: Callable) -> Callable:
    """``fn`` run with JAX's implicit rank promotion allowed, whatever the user's setting.

    The library broadcasts deliberately (per-point variances against pair matrices, …); a user
    who sets ``jax_numpy_rank_promotion='raise'`` for their own code (neural-tangents' tests
    do) must still be able to call it. Only operations traced inside ``fn`` are affected.
    """

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.numpy_rank_promotion("allow"):
            return fn(*args, **kwargs)

    return wrapped


class KernelMemoryError(MemoryError):
    """A requested kernel cannot fit in the available memory (see `check_memory`)."""


def nonfinite_probe(a: jax.Array) -> jax.Array:
    """Traceable: Σ (a − a), which is 0 when every entry is finite and NaN otherwise
    (inf − inf and NaN − NaN are NaN). A plain float sum, which XLA vectorises: on CPU it
    costs a tenth of ``all(isfinite(a))`` inside the tiled kernel loop (measured)."""
    return jnp.sum(a - a)


def all_finite(arrays: Sequence[jax.Array | None]) -> jax.Array:
    """Traceable: whether every entry of every (non-None) array is finite, a scalar bool."""
    probes = [nonfinite_probe(a) for a in arrays if a is not None]
    return functools.reduce(jnp.add, probes, jnp.zeros(())) == 0


def _is_concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs if x is not None)


def _describe(a) -> str | None:
    """ "3 NaN and 5 inf of 25 entries; largest finite |entry| …", or None if all finite."""
    h = np.asarray(a)
    nan, inf = int(np.isnan(h).sum()), int(np.isinf(h).sum())
    if not nan and not inf:
        return None
    parts = [f"{n} {what}" for n, what in ((nan, "NaN"), (inf, "inf")) if n]
    finite = h[np.isfinite(h)]
    big = f"; largest finite |entry| {np.max(np.abs(finite)):.3g}" if finite.size else ""
    return f"{' and '.join(parts)} of {h.size} entries{big}"


def check_outputs(
    where: str,
    ok,
    arrays: dict[str, Any],
    inputs: Sequence,
    result: Any = None,
    hints: Sequence[str] = (),
) -> None:
    """Raise `NonFiniteKernelError` unless ``ok`` (an `all_finite` of the outputs computed
    inside the jitted computation) is True; ``arrays`` are the outputs by name. The
    inputs were validated as finite, so a non-finite output means the computation left the
    dtype's range (or a user-supplied dual returned NaN). The message names each offending
    quantity, the input dtype, the remedy (float64 through
    ``jax.config.update("jax_enable_x64", True)``), whether the inputs' own scale already
    overflows the input kernel ``x·xᵀ/d``, and any layer-specific ``hints``. Skipped when
    traced (values unknown).
    """
    if not _is_concrete(ok) or bool(ok):
        return
    inputs = [x for x in inputs if x is not None]
    dtype = jnp.result_type(*[x.dtype for x in inputs])
    finfo = jnp.finfo(dtype)
    found = {n: _describe(a) for n, a in arrays.items() if a is not None}
    bad = [f"{n}: {d}" for n, d in found.items() if d is not None]
    lines = [
        f"{where} returned non-finite values from finite {jnp.dtype(dtype).name} inputs "
        f"({'; '.join(bad)})."
    ]
    # The input kernel x·xᵀ/d in the inputs' dtype: does it already overflow?
    scale = max(float(np.max(np.sum(np.asarray(x, np.float64) ** 2, axis=1))) / x.shape[1]
                for x in inputs)  # fmt: skip
    if scale > float(finfo.max):
        big = max(float(np.max(np.abs(np.asarray(x, np.float64)))) for x in inputs)
        lines.append(
            f"The inputs are too large for {finfo.dtype.name}: max |x| = {big:.3g}, so the input "
            f"kernel x·xᵀ/d reaches {scale:.3g}, beyond {finfo.dtype.name}'s largest value "
            f"{float(finfo.max):.3g}, before any layer. Rescale the inputs (e.g. divide by "
            "their norm; kernels of ReLU networks scale as |x|²)"
            + (" or use float64." if finfo.bits < 64 else ".")
        )
    elif finfo.bits < 64:
        lines.append(
            f"The true values most likely exceed {finfo.dtype.name}'s range (largest value "
            f"{float(finfo.max):.3g}; deep or large-W_std networks grow like W_std^(2·depth))."
        )
    if finfo.bits < 64:
        lines.append(
            'Remedy: enable float64 with jax.config.update("jax_enable_x64", True) at start-up '
            "and pass float64 inputs (float64 reaches 1.8e308)."
        )
    else:
        lines.append(
            "float64 overflowed too: lower W_std, the depth or the input scale (the kernel is "
            "homogeneous in them)."
        )
    lines.extend(hints)
    raise NonFiniteKernelError(" ".join(lines), result)


def _cgroup_free() -> int | None:
    """Memory left under this process's cgroup limit (v2, then v1), or None if unlimited.

    Usage counts page cache; its inactive file pages are reclaimable, so they are subtracted
    (as docker and the kubelet do), lest a container that has read files refuse a kernel that
    fits."""
    for limit_f, usage_f, stat_f, inactive_key in (
        (
            "/sys/fs/cgroup/memory.max",
            "/sys/fs/cgroup/memory.current",
            "/sys/fs/cgroup/memory.stat",
            "inactive_file",
        ),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
            "/sys/fs/cgroup/memory/memory.stat",
            "total_inactive_file",
        ),
    ):
        try:
            with open(limit_f) as f:
                limit = f.read().strip()
            with open(usage_f) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            return max(0, int(limit) - usage + _stat_value(stat_f, inactive_key))
    return None


def _stat_value(path: str, key: str) -> int:
    """One ``key value`` line of a cgroup ``memory.stat`` file (0 if absent)."""
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def available_memory(device: jax.Device | None = None) -> int | None:
    """Bytes that a new allocation on ``device`` (default: the first device) can use, or None.

    Accelerators: ``bytes_limit − bytes_in_use`` from ``device.memory_stats()``. CPU:
    ``MemAvailable`` from /proc/meminfo (else physical pages × page size), capped by the
    cgroup limit when there is one.
    """
    device = jax.devices()[0] if device is None else device
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return None
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if free is None:
        try:
            free = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    cg = _cgroup_free()
    return free if cg is None else min(free, cg)


# Below this many bytes the available memory is not even looked up.
_MEMORY_CHECK_FLOOR = 64 * 2**20


def check_memory(
    where: str,
    x1,
    x2,
    names: Sequence[str],
    dtype=None,
    devices: Sequence[jax.Device] | None = None,
    copies: int = 1,
    extra_bytes: int = 0,
    pair_size: int = 1,
    shards: int = 1,
) -> None:
    """Raise `KernelMemoryError` before allocating if the outputs cannot fit in memory.

    The estimate is a lower bound: ``len(names)`` arrays of n1 × n2 entries (n1 rows of
    ``x1``, n2 of ``x2``, or of ``x1`` when ``x2`` is None) of ``dtype`` (default ``x1``'s),
    ``copies`` times (buffers the algorithm holds at once), plus ``extra_bytes`` (one tile's
    or one block's working set), on each of ``devices`` (``shards``: the outputs are split
    into that many parts, one per device). Devices that share host memory (CPU) add up. A
    computation this check refuses cannot succeed; one it lets through may still need more
    (the layers' intermediates).
    """
    n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
    itemsize = jnp.dtype(x1.dtype if dtype is None else dtype).itemsize
    per_device = -(-len(names) * n1 * n2 * pair_size * itemsize * copies // shards) + extra_bytes
    devices = list(jax.devices()[:1] if not devices else devices)
    on_host = [d for d in devices if d.platform == "cpu"]
    checks = [(d, per_device) for d in devices if d.platform != "cpu"]
    if on_host:
        checks.append((on_host[0], per_device * len(on_host)))
    for device, need in checks:
        if need < _MEMORY_CHECK_FLOOR:
            continue
        free = available_memory(device)
        if free is None or need <= free:
            continue
        what = " and ".join(names)
        raise KernelMemoryError(
            f"{where}: the {n1} x {n2} {what} output needs at least {need / 1e9:.1f} GB "
            f"({len(names)} x {n1} x {n2}"
            + (f" x {pair_size} sites" if pair_size > 1 else "")
            + f" x {itemsize} bytes"
            + (f", x {copies} buffers" if copies > 1 else "")
            + (
                f", x {len(on_host)} host devices"
                if device.platform == "cpu" and len(on_host) > 1
                else ""
            )  # fmt: skip
            + f") but only {free / 1e9:.1f} GB is available on {device.platform}; nothing was "
            "allocated. theory.kernels.batch(kernel_fn, batch_size, shard_output=True) "
            "splits the output over devices (1/D each; with jax.distributed, over hosts); "
            "theory.kernels.kernel_to_disk(kernel_fn, x1, x2, path) writes it tile by tile "
            "into an on-disk zarr array, in one tile's memory, resumably"
            + ("; get='nngp' alone needs half of this." if len(names) > 1 else ".")
        )


def kernel_names(get, compute_ntk: bool) -> tuple[str, ...]:
    """The (n1, n2) arrays a stax computation holds for ``get``: the NTK needs the NNGP."""
    return ("nngp", "ntk") if compute_ntk else ("nngp",)
