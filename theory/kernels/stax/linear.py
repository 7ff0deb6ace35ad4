"""Linear layers: Dense, Conv, Flatten and pooling. Each maps the kernel by a linear operator
(`theory.kernels.spatial` for the spatial ones) and an affine rescaling."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from theory.kernels import spatial
from theory.kernels.kernel import Kernel, channel_position, check_channel_axis
from theory.kernels.stax._core import (
    MAYBE,
    NO,
    YES,
    DenseRule,
    Diagonal,
    KernelFn,
    _check_std,
    axis_position,
    canonical_axis,
    check_axes,
    new_layer,
    standard_layout,
)
from theory.kernels.stax._masking import (
    Masking,
    by_points,
    channel_constant,
    collapse_channels,
    window_centres,
)

__all__ = [
    "Dense",
    "Conv",
    "ConvTranspose",
    "ConvLocal",
    "Flatten",
    "AvgPool",
    "SumPool",
    "MaxPool",
    "GlobalAvgPool",
    "GlobalSumPool",
    "Index",
    "Slice",
    "ImageResize",
    "DotGeneral",
]

# --------------------------------------------------------------------------- Dense


def _check_affine(W_std, b_std, parameterization, s):
    """Validated ``(W_std, b_std, parameterization, s)`` of a Dense or Conv layer."""
    _check_std("W_std", W_std)
    _check_std("b_std", b_std, allow_none=True)
    if not isinstance(parameterization, str) or parameterization.lower() not in (
        "ntk",
        "standard",
    ):
        raise ValueError(f"parameterization must be 'ntk' or 'standard', got {parameterization!r}")
    s = tuple(int(v) for v in s)
    if len(s) != 2 or min(s) < 1:
        raise ValueError(f"s must be a pair of positive integers, got {s!r}")
    b = None if b_std is None else float(b_std)
    return float(W_std), b, parameterization.lower(), s


def Dense(
    out_dim: int,
    W_std: float = 1.0,
    b_std: float | None = None,
    batch_axis: int = 0,
    channel_axis: int = -1,
    parameterization: str = "ntk",
    s: tuple[int, int] = (1, 1),
):
    r"""Fully-connected layer (Jacot et al. 2018, §2; Sohl-Dickstein et al. 2020).

    ==================  ========================  ========================================
    argument            symbol                    meaning
    ==================  ========================  ========================================
    ``out_dim``         n_{l+1}                   output width (ignored by the kernel in
                                                  the NTK parameterization)
    ``W_std``           σ_w                       weight scale
    ``b_std``           σ_b (β in Jacot et al.)   bias scale; ``None`` = no bias
    ``parameterization`` —                        ``"ntk"``: z = σ_w/√n W x + σ_b b with
                                                  W, b ~ N(0, 1); ``"standard"``:
                                                  W ~ N(0, σ_w²/n), b ~ N(0, σ_b²), z = Wx + b
    ``s``               (s_in, s_out)             width multipliers (standard only)
    ``channel_axis``    —                         the axis it acts on (default the last;
                                                  1 after an NCHW convolution); the other
                                                  axes are kept (one Dense per site)
    ==================  ========================  ========================================

    Parameters are ``(W, b)``, ``W`` of shape (n_in·s_in, out_dim·s_out), ``b`` None or of
    the output's rank with out_dim·s_out on the channel axis ((1, out_dim·s_out) for 2-D
    inputs), as in neural-tangents. ``batch_axis`` may be any other axis than the channel
    axis (the kernel does not depend on where the points are).
    """
    if not isinstance(out_dim, (int,)) or isinstance(out_dim, bool) or out_dim < 1:
        raise ValueError(f"out_dim must be a positive integer, got {out_dim!r}")
    channel_axis = check_axes(f"Dense({out_dim})", batch_axis, channel_axis)
    W_std, b_std, parameterization, s = _check_affine(W_std, b_std, parameterization, s)

    def position(ndim):
        if batch_axis == 0:
            return channel_position(channel_axis, ndim, f"Dense({out_dim}): channel_axis")
        canonical_axis(channel_axis, batch_axis, ndim, f"Dense({out_dim}): channel_axis")
        return axis_position(channel_axis, ndim, f"Dense({out_dim}): channel_axis")

    def init_fn(rng, input_shape):
        input_shape = tuple(input_shape)
        c = position(len(input_shape))
        n_in = input_shape[c]
        n_out = out_dim * (s[1] if parameterization == "standard" else 1)
        k1, k2 = jax.random.split(rng)
        W = jax.random.normal(k1, (n_in, n_out))
        # neural-tangents' layout: the bias broadcasts against the output, n_out on its axis
        b_shape = tuple(n_out if a == c else 1 for a in range(len(input_shape)))
        b = None if b_std is None else jax.random.normal(k2, b_shape)
        if parameterization == "standard":
            W = W * (W_std / math.sqrt(n_in / s[0]))
            b = None if b is None else b * b_std
        return input_shape[:c] + (n_out,) + input_shape[c + 1 :], (W, b)

    def apply_fn(params, inputs, **kwargs):
        W, b = params
        c = position(inputs.ndim)
        x = inputs if c == inputs.ndim - 1 else jnp.moveaxis(inputs, c, -1)
        prod = x @ W
        prod = prod if c == inputs.ndim - 1 else jnp.moveaxis(prod, -1, c)
        if parameterization == "ntk":
            out = (W_std / math.sqrt(inputs.shape[c])) * prod
            return out if b is None else out + b_std * b
        out = prod / math.sqrt(s[0])
        return out if b is None else out + b

    def transform(k: Kernel) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"Dense takes one input; got {len(k)} branches")
        check_channel_axis(f"Dense({out_dim})", k, channel_axis, batch_axis)

        def affine(m):
            m = W_std**2 * m
            return m if b_std is None else m + b_std**2

        nngp = affine(k.nngp)
        cov1 = affine(k.cov1)
        cov2 = None if k.cov2 is None else affine(k.cov2)
        ntk = k.ntk
        if ntk is not None:
            if parameterization == "ntk":
                ntk = nngp + W_std**2 * ntk
            else:
                ntk = (k.width / s[0]) * k.nngp + W_std**2 * ntk
                if b_std is not None:
                    ntk = ntk + 1.0
        width = out_dim * (s[1] if parameterization == "standard" else 1)
        return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, width=width, is_gaussian=True)

    rule = DenseRule(W_std, b_std, parameterization, tuple(s))
    # inputs of any rank: on NHWC inputs a Dense layer acts on the channels of every site (a
    # convolution with a 1×…×1 filter), as in neural-tangents
    kfn = KernelFn(
        transform,
        f"Dense({out_dim})",
        spatial_ndim="any",
        channel_axis=channel_axis,
        batch_axis=batch_axis or None,  # 0: the default, not a claim
    )
    masking = Masking(
        kernel=collapse_channels,
        apply=lambda mask, x: jnp.all(mask, axis=channel_axis, keepdims=True),
    )
    return new_layer(init_fn, apply_fn, kfn, rule, masking)


# ---------------------------------------------------------------- convolutions


_SPATIAL_LETTERS = {1: "W", 2: "HW", 3: "DHW"}


def _check_window(what: str, shape, strides, padding):
    """``(shape, strides, padding)`` of a filter or pooling window, validated: 1–3 positive
    sizes, one positive stride per axis (default 1), a padding of `spatial.PADDINGS`."""
    try:
        shape = tuple(int(f) for f in shape)
    except TypeError:
        raise TypeError(f"{what}_shape must be a sequence of integers, got {shape!r}") from None
    nd = len(shape)
    if nd not in _SPATIAL_LETTERS or min(shape) < 1:
        raise ValueError(f"{what}_shape must have 1 to 3 positive sizes, got {shape!r}")
    strides = (1,) * nd if strides is None else tuple(int(v) for v in strides)
    if len(strides) != nd or min(strides) < 1:
        raise ValueError(
            f"strides must have {nd} positive entries (one per {what} axis), got {strides!r}"
        )
    if not isinstance(padding, str) or padding.upper() not in spatial.PADDINGS:
        raise ValueError(f"padding must be one of {spatial.PADDINGS}, got {padding!r}")
    return shape, strides, padding.upper()


_CONV_KINDS = {"shared": "Conv", "transpose": "ConvTranspose", "local": "ConvLocal"}


def _conv_specs(layer: str, dimension_numbers, nd: int) -> tuple[str, str, str]:
    """``(lhs, rhs, out)`` layout strings of a convolution (``lax`` conventions: N batch,
    C channels, I/O the filter's input/output channels, any other letter a spatial axis;
    the filter shape and strides follow the rhs's spatial order); None: NHWC, HWIO, NHWC."""
    letters = _SPATIAL_LETTERS[nd]
    if dimension_numbers is None:
        return ("N" + letters + "C", letters + "IO", "N" + letters + "C")
    try:
        lhs, rhs, out = (str(s) if isinstance(s, str) else None for s in dimension_numbers)
    except (TypeError, ValueError):
        lhs = rhs = out = None
    ok = None not in (lhs, rhs, out) and all(len(s) == nd + 2 for s in (lhs, rhs, out))
    if ok:
        sp = set(lhs) - {"N", "C"}
        ok = (
            len(set(lhs)) == len(lhs) == len(set(out)) == len(set(rhs))
            and {"N", "C"} <= set(lhs)
            and set(out) == set(lhs)
            and set(rhs) == sp | {"I", "O"}
            and len(sp) == nd
        )
    if not ok:
        raise ValueError(
            f"{layer}: dimension_numbers must be three strings (lhs, rhs, out) of length "
            f"{nd + 2} for a {nd}-D filter, lhs and out made of N, C and the same {nd} spatial "
            f"letters, rhs of I, O and those letters, e.g. ('N{letters}C', '{letters}IO', "
            f"'N{letters}C') or ('NC{letters}', 'OI{letters}', 'NC{letters}'); got "
            f"{dimension_numbers!r}"
        )
    return lhs, rhs, out


def _conv_layer(
    kind: str,
    out_chan,
    filter_shape,
    strides,
    padding,
    W_std,
    b_std,
    dimension_numbers,
    parameterization,
    s,
):
    """Conv (``kind="shared"``), ConvTranspose (``"transpose"``) and ConvLocal (``"local"``):
    validation, the finite network and the kernel, one code path (see `Conv`)."""
    layer = _CONV_KINDS[kind]
    if not isinstance(out_chan, int) or isinstance(out_chan, bool) or out_chan < 1:
        raise ValueError(f"{layer}: out_chan must be a positive integer, got {out_chan!r}")
    filter_shape, strides, padding = _check_window("filter", filter_shape, strides, padding)
    nd = len(filter_shape)
    lhs, rhs, out = _conv_specs(layer, dimension_numbers, nd)
    W_std, b_std, parameterization, s = _check_affine(W_std, b_std, parameterization, s)
    transpose, shared = kind == "transpose", kind != "local"
    f_size = math.prod(filter_shape)
    # filter shape and strides are in the rhs's spatial order; the kernel works in the lhs's
    rhs_sp = [c for c in rhs if c not in "IO"]
    lhs_sp = [c for c in lhs if c not in "NC"]
    out_sp = [c for c in out if c not in "NC"]
    f_in = tuple(filter_shape[rhs_sp.index(c)] for c in lhs_sp)
    st_in = tuple(strides[rhs_sp.index(c)] for c in lhs_sp)
    to_out = tuple(lhs_sp.index(c) for c in out_sp)  # kernel sites: lhs order -> out order
    # neural-tangents' ConvLocal builds out_chan channels in both parameterizations (s[1] unused)
    n_out = out_chan * (s[1] if parameterization == "standard" and shared else 1)

    def out_sites(in_sites):
        """Output sites, in the lhs's spatial order, of inputs with ``in_sites`` (same order)."""
        if transpose:
            return spatial.conv_transpose_output_shape(in_sites, f_in, st_in, padding)
        return spatial.conv_output_shape(in_sites, f_in, st_in, padding)

    def output_shape(input_shape):
        in_sites = tuple(input_shape[lhs.index(c)] for c in lhs_sp)
        size = dict(zip(lhs_sp, out_sites(in_sites)), N=input_shape[lhs.index("N")], C=n_out)
        return tuple(size[c] for c in out)

    def _conv(x, W):
        pad = padding
        if padding == "CIRCULAR":
            pad = "VALID"
            if not transpose:  # wrap the input so that VALID gives SAME's sites
                in_sites = [x.shape[lhs.index(c)] for c in lhs_sp]
                width = [(0, 0)] * x.ndim
                for c, p in zip(lhs_sp, spatial.conv_pads(in_sites, f_in, st_in, "SAME")):
                    width[lhs.index(c)] = tuple(p)
                x = jnp.pad(x, width, mode="wrap")
        dn = (lhs, rhs, out)
        if transpose:
            y = jax.lax.conv_transpose(x, W, strides, pad, dimension_numbers=dn)
            if padding == "CIRCULAR":  # fold the VALID result onto SAME's n·s sites
                for c in lhs_sp:
                    n = x.shape[lhs.index(c)] * strides[rhs_sp.index(c)]
                    y = spatial.circular_fold(y, out.index(c), n)
            return y
        if shared:
            return jax.lax.conv_general_dilated(x, W, strides, pad, dimension_numbers=dn)
        return jax.lax.conv_general_dilated_local(
            x, W, strides, pad, filter_shape, dimension_numbers=dn
        )

    def init_fn(rng, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != nd + 2:
            raise ValueError(
                f"{layer} with a {nd}-D filter needs inputs of rank {nd + 2} ({lhs}), got "
                f"shape {input_shape}"
            )
        c_in = input_shape[lhs.index("C")]
        out_shape = output_shape(input_shape)
        if shared:  # filter taps; a bias per channel
            sizes = dict(zip(rhs_sp, filter_shape), I=c_in, O=n_out)
            b_shape = [n_out if c == "C" else 1 for c in out]
        else:  # one filter per output site, input taps fused with I (lax's local layout)
            sizes = dict(zip(out, out_shape), I=c_in * f_size, O=n_out)
            b_shape = [1 if c == "N" else n for c, n in zip(out, out_shape)]
        k1, k2 = jax.random.split(rng)
        W = jax.random.normal(k1, tuple(sizes[c] for c in rhs))
        b = None if b_std is None else jax.random.normal(k2, tuple(b_shape))
        if parameterization == "standard":
            W = W * (W_std / math.sqrt(c_in * f_size / s[0]))
            b = None if b is None else b * b_std
        return out_shape, (W, b)

    def apply_fn(params, inputs, **kwargs):
        W, b = params
        y = _conv(inputs, W)
        if parameterization == "ntk":
            y = (W_std / math.sqrt(inputs.shape[lhs.index("C")] * f_size)) * y
            return y if b is None else y + b_std * b
        y = y / math.sqrt(s[0])
        return y if b is None else y + b

    name = f"{layer}({out_chan}, {filter_shape}, {padding})"
    # the kernel's sites are the non-batch, non-channel axes in order: those of lhs on the
    # way in, of out on the way out (`to_out` permutes them); kernels hold the points first,
    # wherever the layouts put N (the output's channel axis counted with N moved first)
    out_pf = "N" + out.replace("N", "")
    out_channel = None if out_pf[-1] == "C" else out_pf.index("C")

    def transform(k: Kernel) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"{layer} takes one input; got {len(k)} branches")
        if len(k.spatial) != nd:
            raise ValueError(
                f"{layer} with a {nd}-D filter {filter_shape} needs inputs with {nd} spatial "
                f"axes ({lhs}), got {len(k.spatial)} (sites {k.spatial})"
            )
        check_channel_axis(f"{name} (lhs {lhs!r})", k, lhs.index("C"), lhs.index("N"))
        full = k.full_spatial
        if full:
            op = {
                "shared": spatial.conv_full,
                "transpose": spatial.conv_transpose_full,
                "local": spatial.conv_local_full,
            }[kind]
        else:
            op = spatial.conv_transpose_mean if transpose else spatial.conv_mean

        def mean(a, batch_nd):
            a = op(a, batch_nd, f_in, st_in, padding)
            return spatial.permute_sites(a, batch_nd, to_out, full)

        # unshared biases are independent across sites: with the full covariance they reach
        # the site diagonal only
        if full and not shared:
            out_full = out_sites(k.spatial)
            site_mask = spatial.site_diagonal_mask(tuple(out_full[p] for p in to_out))
        else:
            site_mask = None

        def shift(m, value):
            if site_mask is None:
                return m + value
            return m + jnp.where(site_mask, jnp.asarray(value, m.dtype), jnp.zeros((), m.dtype))

        def affine(m):
            m = W_std**2 * m
            return m if b_std is None else shift(m, b_std**2)

        k_mean = mean(k.nngp, 2)
        nngp = affine(k_mean)
        cov1 = affine(mean(k.cov1, 1))
        cov2 = None if k.cov2 is None else affine(mean(k.cov2, 1))
        ntk = k.ntk
        if ntk is not None:
            if parameterization == "ntk":
                ntk = nngp + W_std**2 * mean(ntk, 2)
            else:
                ntk = (k.width * f_size / s[0]) * k_mean + W_std**2 * mean(ntk, 2)
                if b_std is not None:
                    ntk = shift(ntk, 1.0)
        return k.replace(
            nngp=nngp,
            ntk=ntk,
            cov1=cov1,
            cov2=cov2,
            width=n_out,
            is_gaussian=True,
            spatial=tuple(nngp.shape[2::2] if full else nngp.shape[2:]),
            channel_axis=out_channel,
        )

    # Masks (see `theory.kernels.stax._masking`), channels collapsed first: Conv and ConvLocal
    # mark an output absent where the input at its window's centre is; ConvTranspose where
    # any input it reads is (neural-tangents' rules).
    lhs_perm = [lhs.index("N"), *(lhs.index(c) for c in lhs_sp), lhs.index("C")]
    out_perm = [out.index("N"), *(out.index(c) for c in out_sp), out.index("C")]

    def canonical_mask(m):
        """(n, *sites in lhs order, 1) → (n, *sites in out order, 1)."""
        m = collapse_channels(m)
        if transpose:  # the transposed convolution of the mask with a filter of ones
            ones = jnp.ones(
                [1 if c in "IO" else filter_shape[rhs_sp.index(c)] for c in rhs], jnp.float32
            )
            as_lhs = jnp.transpose(m.astype(jnp.float32), np.argsort(lhs_perm))
            reached = _conv(as_lhs, ones) > 0
            return jnp.transpose(reached, out_perm)
        pads = spatial.conv_pads(m.shape[1:-1], f_in, st_in, padding)
        m = window_centres(m, f_in, st_in, pads)
        return jnp.transpose(m, [0, *(1 + p for p in to_out), m.ndim - 1])

    def apply_mask(mask, x):
        m = jnp.transpose(jnp.broadcast_to(mask, x.shape), lhs_perm)
        return jnp.transpose(canonical_mask(m), np.argsort(out_perm))

    diagonal = Diagonal(YES, NO if shared else MAYBE)
    kfn = KernelFn(
        transform,
        name,
        spatial_ndim=nd,
        diagonal=diagonal,
        channel_axis=lhs.index("C"),
        batch_axis=lhs.index("N") or None,  # 0: the default, not a claim
    )
    masking = Masking(kernel=lambda m, k_in, k_out: canonical_mask(m), apply=apply_mask)
    return new_layer(init_fn, apply_fn, kfn, masking=masking)


_CONV_ARGS = r"""
    ==================== ==========================================================
    argument             meaning (neural-tangents 0.6.5's names and defaults)
    ==================== ==========================================================
    ``out_chan``         output channels (ignored by the kernel, NTK parameterization)
    ``filter_shape``     1–3 filter sizes, in the spatial order of the rhs spec
    ``strides``          one per filter axis, same order (default 1)
    ``padding``          ``"VALID"`` (default), ``"SAME"`` or ``"CIRCULAR"``
    ``W_std``, ``b_std`` σ_w, σ_b (``b_std=None``: no bias)
    ``dimension_numbers`` ``(lhs, rhs, out)`` as in ``lax.conv_general_dilated``,
                         default ('NHWC', 'HWIO', 'NHWC'); any layout, e.g.
                         ('NCHW', 'OIHW', 'NCHW') or permuted spatial letters
                         ('NHWC', 'WHIO', 'NWHC'), N anywhere (kernels hold the
                         points first whatever the layout); kernel_fn forms the
                         input kernel over lhs's channel axis; later layers that
                         name a ``channel_axis``/``batch_axis`` must name out's
    ``parameterization`` ``"ntk"``: z = σ_w/√(C_in·|f|) W ⋆ x + σ_b b, W, b ~ N(0, 1);
                         ``"standard"``: W ~ N(0, σ_w² s_in/(C_in·|f|)), b ~ N(0, σ_b²),
                         z = W ⋆ x/√s_in + b
    ``s``                (s_in, s_out) width multipliers (standard only)
    ==================== ==========================================================
"""


def Conv(
    out_chan: int,
    filter_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
    W_std: float = 1.0,
    b_std: float | None = None,
    dimension_numbers=None,
    parameterization: str = "ntk",
    s: tuple[int, int] = (1, 1),
):
    r"""Convolution over 1–3 spatial axes (``lax.conv_general_dilated``), weights shared
    across sites. ``padding`` SAME pads with zeros, CIRCULAR wraps around.

    Kernel (Novak et al. 2019, CNN-GP; Arora et al. 2019, CNTK), on the spatial diagonal
    (`theory.kernels.spatial.conv_mean`, 𝒞 the mean over the filter's offsets, the same
    offset on both sides of a pair): K ← σ_w² 𝒞(K) + σ_b²; NTK parameterization
    Θ ← K_new + σ_w² 𝒞(Θ); standard Θ ← (C_in·|f|/s_in) 𝒞(K_old) + σ_w² 𝒞(Θ) (+1 with a
    bias), as for `Dense` with fan-in C_in·|f|. With the full spatial covariance (networks
    with pooling, or whose output keeps its sites) the same rule acts on every pair of sites
    (`theory.kernels.spatial.conv_full`); the output's pair axes are zipped (S1, S1', S2, S2',
    …) and, unlike neural-tangents', never reversed. Diagonal requirement (YES, NO).

    ``filter_shape=()`` (no spatial axes, neural-tangents' "NC" convolution) is a `Dense`
    layer over the channels of (N, C) inputs: the same kernel, parameters W (C_in, out_chan)
    and b (out_chan,).
    """
    if isinstance(filter_shape, (tuple, list)) and len(filter_shape) == 0:
        if strides not in (None, (), []) or dimension_numbers not in (
            None, ("NC", "IO", "NC"), ["NC", "IO", "NC"]
        ):  # fmt: skip
            raise ValueError(
                "Conv with filter_shape=() has no spatial axes: strides must be None or () and "
                "dimension_numbers None or ('NC', 'IO', 'NC')"
            )
        return Dense(out_chan, W_std, b_std, parameterization=parameterization, s=s)
    return _conv_layer(
        "shared", out_chan, filter_shape, strides, padding, W_std, b_std, dimension_numbers,
        parameterization, s,
    )  # fmt: skip


def ConvTranspose(
    out_chan: int,
    filter_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
    W_std: float = 1.0,
    b_std: float | None = None,
    dimension_numbers=None,
    parameterization: str = "ntk",
    s: tuple[int, int] = (1, 1),
):
    r"""Transposed convolution (``lax.conv_transpose``, no kernel flip): the input's sites are
    spread ``strides`` apart with zeros between them, padded (`spatial.conv_transpose_pads`)
    and convolved with stride 1; n sites become n·s (SAME), n·s + max(f − s, 0) (VALID), or
    n·s for CIRCULAR, which is the VALID result wrapped onto the n·s sites around a circle
    (`spatial.circular_fold`, neural-tangents' rule). Normalisation as `Conv`: fan-in
    C_in·|f| although an output site sees only ≈ |f|/Π s of the taps.

    Kernel (neural-tangents 0.6.5's ConvTranspose): the same affine rule as `Conv` with 𝒞
    the transposed same-offset mean, K'[o] = (1/|f|) Σ_{t ∈ f} K̃[o + t] on the diagonal
    (`spatial.conv_transpose_mean`) and K'[o, o'] = (1/|f|) Σ_t K̃[o + t, o' + t] with the
    full covariance (`spatial.conv_transpose_full`), K̃ the dilated, padded kernel (0 between
    and around the input sites): E[W_t W_t'] = δ_tt' leaves one tap per pair of input sites.
    Diagonal requirement (YES, NO), as `Conv`.
    """
    return _conv_layer(
        "transpose", out_chan, filter_shape, strides, padding, W_std, b_std, dimension_numbers,
        parameterization, s,
    )  # fmt: skip


def ConvLocal(
    out_chan: int,
    filter_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
    W_std: float = 1.0,
    b_std: float | None = None,
    dimension_numbers=None,
    parameterization: str = "ntk",
    s: tuple[int, int] = (1, 1),
):
    r"""Locally connected layer (``lax.conv_general_dilated_local``): a convolution whose
    filter and bias differ at every output site. Parameters as neural-tangents': W of the
    rhs layout with spatial axes the output sites and I = C_in·|f| (input taps fused with
    the channels, lax's order), b of shape (1, *output sites, C_out) in the out layout. As in
    neural-tangents, the finite layer has ``out_chan`` channels in both parameterizations
    (``s[1]`` is not used).

    Kernel (Novak et al. 2019, §5.1, LCN): on the spatial diagonal it is `Conv`'s,
    K ← σ_w² 𝒞(K) + σ_b² (same NTK rules); with the full covariance distinct output sites
    share no weight and no bias, so off-diagonal site pairs are 0 and the diagonal is the
    diagonal rule applied to the input's site diagonal (`spatial.conv_local_full`); in the
    standard parameterization the NTK's bias term 1 also lands on the site diagonal only.
    Diagonal requirement (YES, MAYBE): since its output is 0 off the site diagonal, a pooling
    layer right after it is computed on the diagonal too (`spatial.pool_diagonal`), as in
    neural-tangents.
    """
    return _conv_layer(
        "local", out_chan, filter_shape, strides, padding, W_std, b_std, dimension_numbers,
        parameterization, s,
    )  # fmt: skip


for _layer in (Conv, ConvTranspose, ConvLocal):
    _layer.__doc__ += _CONV_ARGS


def Flatten(batch_axis: int = 0, batch_axis_out: int = 0):
    """Flatten all but the batch axis, into (n, −1) (``batch_axis_out=0``) or (−1, n) (1).
    Kernel (spatial diagonal): the mean over sites (`theory.kernels.spatial.flatten_mean`), a
    non-Gaussian FC kernel of width C·|S|, as in neural-tangents (an activation right after it
    is refused). Where the points are does not change the kernel."""
    for arg, value in (("batch_axis", batch_axis), ("batch_axis_out", batch_axis_out)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"Flatten: {arg} must be an integer, got {value!r}")
    if batch_axis_out not in (0, 1, -1, -2):
        raise ValueError(
            f"Flatten: batch_axis_out must be 0 or 1 (or -2, -1), got {batch_axis_out}"
        )
    out_first = batch_axis_out in (0, -2)

    def init_fn(rng, input_shape):
        b = axis_position(batch_axis, len(input_shape), "Flatten: batch_axis")
        rest = math.prod(input_shape) // input_shape[b]
        return ((input_shape[b], rest) if out_first else (rest, input_shape[b])), ()

    def apply_fn(params, inputs, **kwargs):
        b = axis_position(batch_axis, inputs.ndim, "Flatten: batch_axis")
        flat = jnp.moveaxis(inputs, b, 0).reshape(inputs.shape[b], -1)
        return flat if out_first else flat.T

    def transform(k: Kernel) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"Flatten takes one input; got {len(k)} branches")
        if not k.spatial:  # nothing to flatten; the mode flag as below
            return k.replace(diagonal_spatial=False)
        flat = spatial.flatten_full if k.full_spatial else spatial.flatten_mean
        return k.replace(
            nngp=flat(k.nngp, 2),
            ntk=None if k.ntk is None else flat(k.ntk, 2),
            cov1=flat(k.cov1, 1),
            cov2=None if k.cov2 is None else flat(k.cov2, 1),
            width=k.width * math.prod(k.spatial),
            is_gaussian=False,
            spatial=(),
            # no sites left; the flag says how sites a later layer creates are kept: in full,
            # as neural-tangents' Flatten says
            diagonal_spatial=False,
            channel_axis=None,
        )

    kfn = KernelFn(
        transform,
        "Flatten",
        spatial_ndim="any",
        diagonal=Diagonal(YES, YES),
        batch_axis=batch_axis if (batch_axis, batch_axis_out) != (0, 0) else None,
    )
    masking = Masking(
        # one mask entry per feature (the sites' masks, channels kept)
        kernel=lambda m, k_in, k_out: m.reshape(m.shape[0], -1),
        apply=lambda mask, x: apply_fn((), jnp.broadcast_to(mask, x.shape)),
    )
    return new_layer(init_fn, apply_fn, kfn, masking=masking)


def _reduce_windows(x, window_shape, strides, padding: str, init: float, op):
    """``op`` over each window of the sites of NHWC ``x`` (finite pooling layers): SAME pads
    with ``init``, CIRCULAR wraps around, VALID does not pad."""
    pads = spatial.conv_pads(x.shape[1:-1], window_shape, strides, padding)
    if padding == "CIRCULAR":
        x = jnp.pad(x, [(0, 0)] + [tuple(p) for p in pads] + [(0, 0)], mode="wrap")
        pads = [(0, 0)] * len(window_shape)
    cfg = [(0, 0)] + [tuple(p) for p in pads] + [(0, 0)]
    dims, steps = (1, *window_shape, 1), (1, *strides, 1)
    # a concrete init lets lax recognise the sum or max (differentiable window reductions)
    return jax.lax.reduce_window(x, np.array(init, x.dtype), op, dims, steps, cfg)


def _pool_init(window_shape, strides, padding: str):
    """The parameter-free ``init_fn`` of a pooling layer: the pooled output shape."""

    def init_fn(rng, input_shape):
        sites = spatial.pool_output_shape(input_shape[1:-1], window_shape, strides, padding)
        return (input_shape[0],) + sites + (input_shape[-1],), ()

    return init_fn


def _pool_layer(
    kind: str, window_shape, strides, padding, normalize_edges: bool, batch_axis, channel_axis
):
    window_shape, strides, padding = _check_window("window", window_shape, strides, padding)
    nd = len(window_shape)
    if kind == "sum":
        normalize = "sum"
    elif normalize_edges and padding == "SAME":
        normalize = "edges"
    else:
        normalize = "window"
    w_size = math.prod(window_shape)

    def _pool(x):
        out = _reduce_windows(x, window_shape, strides, padding, 0.0, jax.lax.add)
        if normalize == "window":
            return out / w_size
        if normalize == "edges":
            ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
            return out / _reduce_windows(ones, window_shape, strides, padding, 0.0, jax.lax.add)
        return out

    def apply_fn(params, inputs, **kwargs):
        return _pool(inputs)

    init_fn, apply_fn = standard_layout(
        _pool_init(window_shape, strides, padding), apply_fn, batch_axis, channel_axis
    )
    name = f"{'AvgPool' if kind == 'avg' else 'SumPool'}({window_shape}, {padding})"

    def transform(k: Kernel) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"{name} takes one input; got {len(k)} branches")
        if len(k.spatial) != nd:
            raise ValueError(
                f"{name} with a {nd}-D window needs inputs with {nd} spatial axes, got "
                f"{len(k.spatial)} (sites {k.spatial})"
            )
        check_channel_axis(name, k, channel_axis, batch_axis)
        try:  # a window larger than the (padded) sites: a clear error, not an empty kernel
            spatial.pool_output_shape(k.spatial, window_shape, strides, padding)
        except ValueError:
            raise ValueError(
                f"{name}: window {tuple(window_shape)} with {padding} padding does not fit the "
                f"input sites {k.spatial}"
            ) from None
        # on the diagonal only after a ConvLocal (Diagonal MAYBE): off-diagonal pairs are 0
        op = spatial.pool_full if k.full_spatial else spatial.pool_diagonal

        def pool(a, batch_nd):
            return op(a, batch_nd, window_shape, strides, padding, normalize)

        nngp = pool(k.nngp, 2)
        return k.replace(
            nngp=nngp,
            ntk=None if k.ntk is None else pool(k.ntk, 2),
            cov1=pool(k.cov1, 1),
            cov2=None if k.cov2 is None else pool(k.cov2, 1),
            spatial=tuple(nngp.shape[2::2] if k.full_spatial else nngp.shape[2:]),
        )

    kfn = KernelFn(
        transform, name, spatial_ndim=nd, diagonal=Diagonal(MAYBE, NO), channel_axis=channel_axis,
        batch_axis=batch_axis or None,  # 0: the default, not a claim
    )  # fmt: skip

    def canonical_mask(m):
        """An output absent where the input at its window's centre is (neural-tangents')."""
        m = channel_constant(m, name)
        pads = spatial.conv_pads(m.shape[1:-1], window_shape, strides, padding)
        return window_centres(m, window_shape, strides, pads)

    def apply_mask(mask, x):
        b = axis_position(batch_axis, x.ndim, "batch_axis")
        c = axis_position(channel_axis, x.ndim, "channel_axis")
        shape = list(x.shape)
        shape[c] = mask.shape[c]
        m = jnp.moveaxis(jnp.broadcast_to(mask, shape), (b, c), (0, -1))
        return jnp.moveaxis(canonical_mask(m), (0, -1), (b, c))

    masking = Masking(kernel=lambda m, k_in, k_out: canonical_mask(m), apply=apply_mask)
    return new_layer(init_fn, apply_fn, kfn, masking=masking)


def AvgPool(
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
    normalize_edges: bool = False,
    batch_axis: int = 0,
    channel_axis: int = -1,
):
    """Average pooling over windows (strides default 1). Kernel (full spatial covariance):
    independent offsets on the two sides of a pair, K'[o, o'] = Σ K[o s + t, o' s + t'] / w²
    per axis, or / count(o)·count(o') with SAME padding and ``normalize_edges``
    (`theory.kernels.spatial.pool_full`). ``channel_axis``: the inputs' channel axis (the
    window covers the other non-batch axes, in order)."""
    channel_axis = check_axes("AvgPool", batch_axis, channel_axis)
    return _pool_layer(
        "avg", window_shape, strides, padding, normalize_edges, batch_axis, channel_axis
    )


def SumPool(
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
    batch_axis: int = 0,
    channel_axis: int = -1,
):
    """Sum pooling over windows: as `AvgPool` without the division."""
    channel_axis = check_axes("SumPool", batch_axis, channel_axis)
    return _pool_layer("sum", window_shape, strides, padding, False, batch_axis, channel_axis)


def MaxPool(
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
):
    """Max pooling for the finite network only: the maximum of correlated Gaussians has no
    closed-form kernel (neural-tangents has no MaxPool either), so its ``kernel_fn`` raises
    `NotImplementedError` saying so; `AvgPool` is the kernel-friendly alternative."""
    window_shape, strides, padding = _check_window("window", window_shape, strides, padding)
    nd = len(window_shape)

    init_fn = _pool_init(window_shape, strides, padding)

    def apply_fn(params, inputs, **kwargs):
        return _reduce_windows(inputs, window_shape, strides, padding, -jnp.inf, jax.lax.max)

    def transform(k: Kernel) -> Kernel:
        raise NotImplementedError(
            "MaxPool has no infinite-width kernel: the maximum of correlated Gaussian "
            "pre-activations has no closed-form covariance (neural-tangents has no MaxPool "
            "either); use AvgPool, or estimate the kernel with monte_carlo_kernel"
        )

    kfn = KernelFn(transform, f"MaxPool({window_shape}, {padding})", spatial_ndim=nd)
    return new_layer(
        init_fn, apply_fn, kfn, masking=Masking(unsupported="MaxPool has no masked form here")
    )


def _global_pool(mean: bool, batch_axis: int, channel_axis: int):
    name = "GlobalAvgPool" if mean else "GlobalSumPool"
    channel_axis = check_axes(name, batch_axis, channel_axis)

    def axes(ndim):
        """(batch, channel) positions; the other axes are the sites pooled over."""
        b = axis_position(batch_axis, ndim, f"{name}: batch_axis")
        canonical_axis(channel_axis, batch_axis, ndim, f"{name}: channel_axis")  # distinct
        return b, axis_position(channel_axis, ndim, f"{name}: channel_axis")

    def init_fn(rng, input_shape):
        b, c = axes(len(input_shape))
        kept = sorted((b, c))  # the output keeps the batch and channel axes in their order
        return tuple(input_shape[a] for a in kept), ()

    def apply_fn(params, inputs, mask=None, **kwargs):
        b, c = axes(inputs.ndim)
        pooled = tuple(a for a in range(inputs.ndim) if a not in (b, c))
        total = jnp.sum(inputs, axis=pooled)
        if not mean:
            return total
        if mask is None:
            return total / math.prod(inputs.shape[a] for a in pooled)
        # the mean over the sites present (absent inputs are zero); 0 when none is
        present = jnp.sum(~jnp.broadcast_to(mask, inputs.shape), axis=pooled)
        return total / jnp.maximum(present, 1).astype(total.dtype)

    def transform(k: Kernel) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"{name} takes one input; got {len(k)} branches")
        if not k.spatial:
            return k  # no sites to pool over: the identity, as in neural-tangents
        check_channel_axis(name, k, channel_axis, batch_axis)
        # on the diagonal only after a ConvLocal (Diagonal MAYBE): off-diagonal pairs are 0
        op = spatial.global_pool_full if k.full_spatial else spatial.global_pool_diagonal

        masks = k.site_masks()
        if masks is None or not mean:

            def pool(a, batch_nd, side=0):
                return op(a, batch_nd, mean)

        else:
            # Masked: the mean over the present sites of each point, as apply_fn takes it:
            # Σ over present pairs / (u1·u2), u the point's number of present sites (absent
            # entries are already 0; a point with none present gives 0).
            u1, u2 = (jnp.maximum(jnp.sum(~s, axis=tuple(range(1, s.ndim))), 1) for s in masks)

            def pool(a, batch_nd, side=0):
                total = op(a, batch_nd, False)
                if side == 0:
                    count = u1[:, None] * u2[None, :]
                else:
                    count = (u1 if side == 1 else u2) ** 2
                return total / count.astype(total.dtype)

        return k.replace(
            nngp=pool(k.nngp, 2),
            ntk=None if k.ntk is None else pool(k.ntk, 2),
            cov1=pool(k.cov1, 1, 1),
            cov2=None if k.cov2 is None else pool(k.cov2, 1, 2),
            spatial=(),  # no sites left; the diagonal mode is kept (neural-tangents)
            channel_axis=None,
        )

    kfn = KernelFn(
        transform,
        name,
        spatial_ndim="any",  # NHWC, or (N, C) which passes unchanged
        diagonal=Diagonal(MAYBE, YES),
        channel_axis=channel_axis,
        batch_axis=batch_axis or None,  # 0: the default, not a claim
    )

    def kernel_mask(m, k_in, k_out):
        if not k_in.spatial:
            return m
        return by_points(channel_constant(m, name))  # absent when every site is

    def apply_mask(mask, x):
        b, c = axes(x.ndim)
        shape = list(x.shape)
        shape[c] = mask.shape[c]
        m = jnp.broadcast_to(mask, shape)
        if m.shape[c] != 1:
            channel_constant(jnp.moveaxis(m, c, -1), name)
        return jnp.all(m, axis=tuple(a for a in range(x.ndim) if a not in (b, c)))

    masking = Masking(kernel=kernel_mask, apply=apply_mask, takes_mask=True)
    return new_layer(init_fn, apply_fn, kfn, masking=masking)


def GlobalAvgPool(batch_axis: int = 0, channel_axis: int = -1):
    """The mean over all sites. Kernel: the mean over all pairs of sites (full covariance).
    Inputs without sites ((N, C)) pass unchanged, as in neural-tangents."""
    return _global_pool(True, batch_axis, channel_axis)


def GlobalSumPool(batch_axis: int = 0, channel_axis: int = -1):
    """The sum over all sites. Kernel: the sum over all pairs of sites (full covariance).
    Inputs without sites ((N, C)) pass unchanged, as in neural-tangents."""
    return _global_pool(False, batch_axis, channel_axis)


# --------------------------------------------------------------------------- Index


class _Slice:
    """``Slice[1:10, :, ::-1]`` is ``(slice(1, 10), slice(None), slice(None, None, -1))``: the
    index `Index` takes (Python has no slice literals outside brackets)."""

    def __getitem__(self, idx):
        return idx

    def __repr__(self) -> str:
        return "Slice"


Slice = _Slice()


def _full_index(idx, ndim: int, name: str) -> tuple:
    """``idx`` as one int or slice per axis of ``ndim``-D activations (Ellipsis expanded,
    missing trailing axes ``:``)."""
    idx = idx if isinstance(idx, tuple) else (idx,)
    for i in idx:
        if i is None:
            raise NotImplementedError(f"{name}: new axes (None in the index) are not supported")
        if (
            i is not Ellipsis
            and not isinstance(i, slice)
            and (isinstance(i, bool) or not isinstance(i, (int, np.integer)))
        ):
            raise TypeError(
                f"{name}: idx entries must be ints, slices or ..., got {type(i).__name__} "
                "(build it with stax.Slice[...])"
            )
    n_ell = sum(i is Ellipsis for i in idx)
    if n_ell > 1:
        raise IndexError(f"{name}: an index can only have a single ellipsis")
    if n_ell:
        at = idx.index(Ellipsis)
        idx = idx[:at] + (slice(None),) * (ndim - len(idx) + 1) + idx[at + 1 :]
    if len(idx) > ndim:
        raise IndexError(f"{name}: {len(idx)} indices for {ndim}-D inputs")
    return idx + (slice(None),) * (ndim - len(idx))


def _is_all(i) -> bool:
    return isinstance(i, slice) and i == slice(None)


def Index(idx, batch_axis: int = 0, channel_axis: int = -1):
    """``x[idx]``, as numpy indexes (ints, slices, ``...``; build ``idx`` with
    ``stax.Slice[...]``, as in neural-tangents).

    Kernel: the same selection applied to both sides of every pair — points i ∈ idx₀ of x1
    and of x2, sites s, s' ∈ idxₛ on each spatial axis (both copies of the axis with the full
    spatial covariance); an int removes its axis. The channel axis has infinitely many
    channels in the kernel and may only take ``:``; an int on the batch axis would remove
    the points and raises (both as neural-tangents does). Selecting points on the batch axis
    pairs the selected points of x1 with those of x2, so the network is computed untiled.
    """
    channel_axis = check_axes("Index", batch_axis, channel_axis)
    first = (idx if isinstance(idx, tuple) else (idx,))[:1]
    batch_untouched = batch_axis == 0 and (not first or first[0] is Ellipsis or _is_all(first[0]))
    _full_index(idx, 64, "Index")  # validates entries before any shape is known

    def init_fn(rng, input_shape):
        shape = jax.eval_shape(lambda x: x[idx], jax.ShapeDtypeStruct(tuple(input_shape), "f4"))
        return shape.shape, ()

    def apply_fn(params, inputs, **kwargs):
        return inputs[idx]

    def transform(k: Kernel) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"Index takes one input; got {len(k)} branches")
        ndim = 2 + len(k.spatial)
        full = _full_index(idx, ndim, "Index")
        bpos = axis_position(batch_axis, ndim, "Index: batch_axis")
        full = (full[bpos],) + full[:bpos] + full[bpos + 1 :]  # the kernel's layout: points first
        c = channel_position(k.channel_axis, ndim, "channel_axis")
        if not _is_all(full[c]):
            raise NotImplementedError(
                f"Index: idx indexes the channel axis {c} with {full[c]!r}; in the kernel the "
                "channels are infinitely many and can only be taken whole (:)"
            )
        b = full[0]
        if not isinstance(b, slice):
            raise NotImplementedError(
                f"Index: idx takes the single point {b} on the batch axis, which would remove "
                "the axis kernels pair points along; use a slice (e.g. {b}:{b + 1})"
            )
        sites = [full[a] for a in range(1, ndim) if a != c]
        new_spatial = tuple(
            len(range(n)[i]) for n, i in zip(k.spatial, sites) if isinstance(i, slice)
        )
        removed_before_c = sum(1 for a in range(1, c) if not isinstance(full[a], slice))

        def select(a, batch_nd):
            if a is None:
                return None
            lead = (b,) * batch_nd
            if k.full_spatial:
                rest = tuple(j for i in sites for j in (i, i))
            else:
                rest = tuple(sites)
            return a[lead + rest]

        new_c = None if k.channel_axis is None else c - removed_before_c
        if new_c is not None and new_c == 1 + len(new_spatial):
            new_c = None  # the channels are last again
        return k.replace(
            nngp=select(k.nngp, 2),
            ntk=select(k.ntk, 2),
            cov1=select(k.cov1, 1),
            cov2=select(k.cov2, 1),
            spatial=new_spatial,
            diagonal_spatial=k.diagonal_spatial,
            channel_axis=new_c,
            diag_offset=k.diag_offset if batch_untouched else None,
        )

    kfn = KernelFn(
        transform,
        f"Index({idx!r})",
        spatial_ndim="any",
        channel_axis=None if channel_axis == -1 else channel_axis,
        mixes_points=not batch_untouched,
        batch_axis=batch_axis or None,  # 0: the default, not a claim
    )

    def kernel_mask(m, k_in, k_out):
        """The same selection, on the mask laid out as the activations (points first)."""
        ndim = m.ndim
        full = _full_index(idx, ndim, "Index")
        bpos = axis_position(batch_axis, ndim, "Index: batch_axis")
        full = (full[bpos],) + full[:bpos] + full[bpos + 1 :]
        c = channel_position(k_in.channel_axis, ndim, "channel_axis")
        out = jnp.moveaxis(m, -1, c)[full]
        removed = sum(1 for a in range(1, c) if not isinstance(full[a], slice))
        return jnp.moveaxis(out, c - removed, -1)

    masking = Masking(
        kernel=kernel_mask, apply=lambda mask, x: jnp.broadcast_to(mask, x.shape)[idx]
    )
    return new_layer(init_fn, apply_fn, kfn, masking=masking)


# --------------------------------------------------------------------------- ImageResize

_KERNEL_RESIZE = {"linear": "linear", "bilinear": "linear", "trilinear": "linear",
                  "triangle": "linear", "nearest": "nearest"}  # fmt: skip


def _resize_matrix(n_in: int, n_out: int, method: str, antialias: bool) -> np.ndarray:
    """R (n_out, n_in) with resize(x)[o] = Σ_i R[o, i] x[i] along one axis: the resize of the
    identity (jax.image.resize's linear and nearest methods act axis by axis)."""
    with jax.ensure_compile_time_eval():  # constants, also when called inside a trace
        return _resize_matrix_eager(n_in, n_out, method, antialias)


def _resize_matrix_eager(n_in: int, n_out: int, method: str, antialias: bool) -> np.ndarray:
    eye = jnp.eye(n_in, dtype=jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    r = jax.image.resize(eye, (n_out, n_in), method=method, antialias=antialias,
                         precision=jax.lax.Precision.HIGHEST)  # fmt: skip
    return np.asarray(r)


def ImageResize(
    shape,
    method,
    antialias: bool = True,
    precision=jax.lax.Precision.HIGHEST,
    batch_axis: int = 0,
    channel_axis: int = -1,
):
    """``jax.image.resize`` of the inputs to ``shape`` (−1 keeps an axis), as neural-tangents'
    ``ImageResize``.

    Kernel: each resized site axis a is the linear map R_a (out × in, the resize of the
    identity), applied to both sites of every pair of the full spatial covariance,
    K' = (⊗ R_a) K (⊗ R_a)ᵀ; the layer therefore needs the full covariance (as in
    neural-tangents). Only ``"linear"`` (and its aliases) and ``"nearest"`` have kernels; other
    methods work in ``apply_fn`` and raise NotImplementedError in ``kernel_fn``. Resizing the
    batch or the channel axis has no kernel here (the channels are infinitely many; a resized
    batch would mix points) and raises NotImplementedError naming ``shape``.
    """
    channel_axis = check_axes("ImageResize", batch_axis, channel_axis)
    shape = tuple(int(d) for d in shape)
    if any(d < 1 and d != -1 for d in shape):
        raise ValueError(f"ImageResize: shape entries must be positive or -1, got {shape}")
    name = f"ImageResize({shape}, {method!r})"
    method_name = str(getattr(method, "name", method)).lower()

    def out_shape(input_shape):
        if len(input_shape) != len(shape):
            raise ValueError(
                f"{name}: shape has {len(shape)} entries for {len(input_shape)}-D inputs"
            )
        return tuple(i if d == -1 else d for i, d in zip(input_shape, shape))

    def init_fn(rng, input_shape):
        return out_shape(tuple(input_shape)), ()

    def apply_fn(params, inputs, **kwargs):
        return jax.image.resize(inputs, out_shape(inputs.shape), method=method,
                                antialias=antialias, precision=precision)  # fmt: skip

    nd = len(shape)
    fixed = {axis_position(batch_axis, nd, "ImageResize: batch_axis"),
             axis_position(channel_axis, nd, "ImageResize: channel_axis")}  # fmt: skip
    resizes_sites = any(d != -1 for a, d in enumerate(shape) if a not in fixed)

    def transform(k: Kernel) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"ImageResize takes one input; got {len(k)} branches")
        ndim = 2 + len(k.spatial)
        if len(shape) != ndim:
            raise ValueError(f"{name}: shape has {len(shape)} entries for {ndim}-D inputs")
        b = axis_position(batch_axis, ndim, "ImageResize: batch_axis")
        canon = (shape[b],) + shape[:b] + shape[b + 1 :]  # points first, as the kernel
        c = channel_position(k.channel_axis, ndim, "channel_axis")
        if canon[0] != -1 or canon[c] != -1:
            raise NotImplementedError(
                f"{name}: shape resizes the {'batch' if canon[0] != -1 else 'channel'} axis; "
                "only site axes have a kernel (set that entry to -1)"
            )
        targets = [canon[a] for a in range(1, ndim) if a != c]
        if all(t == -1 for t in targets):
            return k
        if method_name not in _KERNEL_RESIZE:
            raise NotImplementedError(
                f"{name}: method {method_name!r} has no kernel (only 'linear' and 'nearest'); "
                "apply_fn supports it"
            )
        if not k.full_spatial:
            raise ValueError(f"{name} needs the full spatial covariance (diagonal_spatial=False)")
        mats = [
            None
            if t == -1 or t == n
            else _resize_matrix(n, t, _KERNEL_RESIZE[method_name], antialias)
            for n, t in zip(k.spatial, targets)
        ]

        def resize(a, batch_nd):
            if a is None:
                return None
            for i, r in enumerate(mats):
                if r is None:
                    continue
                r = jnp.asarray(r, a.dtype)
                for axis in (batch_nd + 2 * i, batch_nd + 2 * i + 1):  # both sites of a pair
                    a = jnp.moveaxis(
                        jnp.tensordot(
                            r, a, axes=([1], [axis]), precision=jax.lax.Precision.HIGHEST
                        ),
                        0,
                        axis,
                    )
            return a

        new_spatial = tuple(n if t == -1 else t for n, t in zip(k.spatial, targets))
        return k.replace(
            nngp=resize(k.nngp, 2),
            ntk=resize(k.ntk, 2),
            cov1=resize(k.cov1, 1),
            cov2=resize(k.cov2, 1),
            spatial=new_spatial,
        )

    kfn = KernelFn(
        transform,
        name,
        spatial_ndim="any",
        diagonal=Diagonal(NO, NO) if resizes_sites else Diagonal(),
        channel_axis=None if channel_axis == -1 else channel_axis,
        batch_axis=batch_axis or None,  # 0: the default, not a claim
    )

    def resize_mask(mask, target):
        """Absent where only absent inputs contribute (neural-tangents' rule: the resize of
        the present entries, nonzero = present), so the mask never grows by interpolation."""
        present = jax.image.resize((~mask).astype(jnp.float32), target, method=method,
                                   antialias=antialias)  # fmt: skip
        return ~(present != 0)

    def kernel_mask(m, k_in, k_out):
        return resize_mask(m, (m.shape[0], *k_out.spatial, m.shape[-1]))

    def apply_mask(mask, x):
        return resize_mask(jnp.broadcast_to(mask, x.shape), out_shape(x.shape))

    masking = Masking(kernel=kernel_mask, apply=apply_mask)
    return new_layer(init_fn, apply_fn, kfn, masking=masking)


# --------------------------------------------------------------------------- DotGeneral


def _axis_after_dot(axis: int, contracting, batch, lhs_ndim: int | None) -> int:
    """Where input axis ``axis`` lands in ``lax.dot_general``'s output (batch dims first, then
    the lhs's free dims, then the rhs's); ``lhs_ndim`` is the constant's rank when the inputs
    are the rhs, None when they are the lhs."""
    if axis in batch:
        return list(batch).index(axis)
    pos = axis - sum(1 for i in contracting if i < axis) + sum(1 for i in batch if i > axis)
    return pos + (0 if lhs_ndim is None else lhs_ndim - len(batch) - len(contracting))


def _unzip_sites(a: jax.Array, batch_nd: int, sites) -> jax.Array:
    """(…, S1, S1', S2, S2', …) → (…, |S|, |S|)."""
    nd = len(sites)
    head = tuple(range(batch_nd))
    perm = (
        head
        + tuple(batch_nd + 2 * d for d in range(nd))
        + tuple(batch_nd + 2 * d + 1 for d in range(nd))
    )
    size = math.prod(sites)
    return a.transpose(perm).reshape(a.shape[:batch_nd] + (size, size))


def _zip_sites(a: jax.Array, batch_nd: int, sites) -> jax.Array:
    """(…, |S|, |S|) → (…, S1, S1', S2, S2', …)."""
    nd = len(sites)
    a = a.reshape(a.shape[:batch_nd] + tuple(sites) + tuple(sites))
    head = tuple(range(batch_nd))
    return a.transpose(head + tuple(batch_nd + j for d in range(nd) for j in (d, nd + d)))


def DotGeneral(
    *,
    lhs=None,
    rhs=None,
    dimension_numbers=(((), ()), ((), ())),
    precision=None,
    batch_axis: int = 0,
    channel_axis: int = -1,
):
    r"""A constant linear map: ``lax.dot_general(inputs, rhs, dimension_numbers, precision)``
    (``rhs`` given) or ``lax.dot_general(lhs, inputs, …)`` (``lhs`` given); neither: the
    identity. neural-tangents' ``DotGeneral``: scaling (a scalar), mixing, permuting,
    striding, summing sites — any linear map of the non-channel axes, with no parameters.

    Kernel: write the map on one point's sites as y[s'] = Σ_s A[s', s] x[s] (A is the map of
    the identity: ``dot_general`` applied to one-hot inputs; with the batch axis among the
    batch dimensions each point i has its own A_i). Then, for a pair of points,

        K'(s', t') = Σ_{s,t} A_i[s', s] K(s, t) A_j[t', t]      (full spatial covariance),
        K'(s')     = Σ_s A_i[s', s] A_j[s', s] K(s, s)           (spatial diagonal),

    the same for Θ (no parameters) and the per-point blocks; the diagonal form is exact when
    no site axis is contracted (each output reads one input site), else the network takes
    the full covariance. The channel axis may not appear in ``dimension_numbers`` (the kernel
    has infinitely many channels; ValueError). ``channel_axis`` left at −1 makes no claim:
    the channels are where the kernel has them (``kernel_fn(..., channel_axis=)`` or the
    last convolution's out spec), as neural-tangents reads them from its kernel.

    Contracting the batch axis sums over the points, y = Σ_i A_i x_i: x1's output is one
    array read from all of x1's points, paired once with x2's. Its kernel has no point axes,
    only the output's sites S' (its non-channel axes, in order):

        K'(s', t') = Σ_{i,j} Σ_{s,t} A_i[s', s] K(x1_i, x2_j; s, t) A_j[t', t],

    and cov1/cov2 the same of x1 (x2) with itself. It needs every pair of points, so, as in
    neural-tangents, it is computed only with ``kernel_fn(..., diagonal_batch=False)``
    (ValueError otherwise), untiled, and no layer may follow it (`serial` refuses).
    Masks: an output is absent when every input it reads with a nonzero coefficient is
    (neural-tangents' rule).
    """
    if lhs is not None and rhs is not None:
        raise ValueError(
            "DotGeneral: at most one of lhs and rhs may be given; the other factor is the "
            "layer's inputs"
        )
    channel_axis = check_axes("DotGeneral", batch_axis, channel_axis)
    identity = lhs is None and rhs is None
    is_lhs = rhs is None  # the constant is the lhs, the inputs the rhs
    other = np.asarray(1.0 if identity else (lhs if is_lhs else rhs))
    try:
        (lc, rc), (lb, rb) = dimension_numbers
        lc, rc, lb, rb = (tuple(int(a) for a in t) for t in (lc, rc, lb, rb))
    except (TypeError, ValueError):
        raise ValueError(
            "DotGeneral: dimension_numbers must be ((lhs_contracting, rhs_contracting), "
            f"(lhs_batch, rhs_batch)), got {dimension_numbers!r}"
        ) from None
    if identity:
        lc = rc = lb = rb = ()
    in_c, in_b = (rc, rb) if is_lhs else (lc, lb)
    lhs_ndim = other.ndim if is_lhs else None
    name = "DotGeneral(" + ("" if identity else ("lhs" if is_lhs else "rhs")) + ")"

    def dot_fn(x, factor=None):
        o = jnp.asarray(other if factor is None else factor, x.dtype)
        if identity:
            return x * o
        args = (o, x) if is_lhs else (x, o)
        return jax.lax.dot_general(*args, ((lc, rc), (lb, rb)), precision)

    def axes(ndim, k: Kernel | None = None):
        """(b, c, b_out, c_out): the points' and channels' axes of the inputs and outputs.
        The channels are where the layer says; at the default (−1, no claim) where the
        kernel ``k`` has them (neural-tangents reads them from its kernel: call-time
        ``channel_axis`` decides)."""
        b = axis_position(batch_axis, ndim, "DotGeneral: batch_axis")
        if channel_axis == -1 and k is not None:
            have = channel_position(k.channel_axis, ndim, "channel_axis")  # points first
            c = have - 1 if have <= b else have  # in the inputs' layout
        else:
            c = axis_position(channel_axis, ndim, "DotGeneral: channel_axis")
        if c == b:
            raise ValueError(
                f"DotGeneral: channel_axis={channel_axis} is the batch axis {b} of {ndim}-D "
                "inputs; name the channel axis (the layer's channel_axis, or kernel_fn's)"
            )
        if c in in_c + in_b:
            raise ValueError(
                f"DotGeneral: dimension_numbers name the channel axis {c}; in the kernel the "
                "channels are infinitely many and pass through unchanged"
            )
        b_out = None if b in in_c else _axis_after_dot(b, in_c, in_b, lhs_ndim)
        c_out = _axis_after_dot(c, in_c, in_b, lhs_ndim)
        return b, c, b_out, c_out

    def init_fn(rng, input_shape):
        out = jax.eval_shape(dot_fn, jax.ShapeDtypeStruct(tuple(input_shape), "f4"))
        return out.shape, ()

    def apply_fn(params, inputs, **kwargs):
        return dot_fn(inputs)

    def site_map(k: Kernel, n: int):
        """A (n or 1, |S'|, |S|) and the output sites S' and channel position."""
        ndim = 2 + len(k.spatial)
        b, c, b_out, c_out = axes(ndim, k)
        per_point = b in in_b
        size = math.prod(k.spatial)
        eye = jnp.eye(size, dtype=k.nngp.dtype).reshape((1, *k.spatial, size))
        n_probe = n if per_point else 1
        basis = jnp.broadcast_to(eye, (n_probe, *k.spatial, size))
        y = dot_fn(jnp.moveaxis(basis, (0, ndim - 1), (b, c)))
        y = jnp.moveaxis(y, (b_out, c_out), (0, y.ndim - 1))
        out_sites = tuple(y.shape[1:-1])
        c_can = c_out + (1 if c_out < b_out else 0)  # channel position with points first
        return y.reshape(n_probe, math.prod(out_sites), size), out_sites, c_can, y.ndim

    def contraction_map(k: Kernel, n: int):
        """For a map that sums over the points: A (1, |S'|, n, |S|) (the one output read
        from n points' sites), the output sites S' (its non-channel axes) and the channel
        position with a point axis put in front."""
        ndim = 2 + len(k.spatial)
        b, c, b_out, c_out = axes(ndim, k)
        size = math.prod(k.spatial)
        basis = jnp.eye(n * size, dtype=k.nngp.dtype).reshape((n, *k.spatial, n * size))
        y = dot_fn(jnp.moveaxis(basis, (0, ndim - 1), (b, c)))
        y = jnp.moveaxis(y, c_out, -1)
        out_sites = tuple(y.shape[:-1])
        return y.reshape(1, math.prod(out_sites), n, size), out_sites, c_out + 1, y.ndim + 1

    def contracted(k: Kernel) -> Kernel:
        """The kernel of the sums over x1's points and over x2's, from the kernel of x1 and
        x2 stacked (`KernelFn._contracted`): one output point per part, K' = A K Aᵀ with A
        reading only its part's points; per-point blocks are K''s diagonal blocks."""
        if k.points_split is None:
            raise ValueError(
                f"{name}: dimension_numbers contract the batch axis, so every output reads "
                "all points; compute the kernel with kernel_fn(..., diagonal_batch=False) "
                "(neural-tangents' rule)"
            )
        if k.cov2 is not None:
            raise ValueError(f"{name}: the stacked kernel must be of the points with themselves")
        n, s = k.nngp.shape[0], k.points_split
        parts = [(0, s)] if s == n else [(0, s), (s, n)]
        rows = []
        for lo, hi in parts:
            a, out_sites, c_can, ndim_out = contraction_map(k, hi - lo)
            rows.append(jnp.pad(a, ((0, 0), (0, 0), (lo, n - hi), (0, 0))))
        a = jnp.concatenate(rows, axis=0)  # (parts, |S'|, n, |S|)
        full = k.full_spatial or (not k.spatial and len(out_sites) > 0 and not k.diagonal_spatial)
        hi_p = jax.lax.Precision.HIGHEST

        def mapped(m):
            if m is None:
                return None
            if k.full_spatial:
                m = _unzip_sites(m, 2, k.spatial)
                out = jnp.einsum("pais,ijst,qbjt->pqab", a, m, a, precision=hi_p)
            else:
                m = m.reshape(m.shape[:2] + (-1,))
                spec = "pais,ijs,qbjs->pqab" if full else "pais,ijs,qajs->pqa"
                out = jnp.einsum(spec, a, m, a, precision=hi_p)
            if k.full_spatial or full:
                return _zip_sites(out, 2, out_sites)
            return out.reshape(out.shape[:2] + out_sites)

        nngp = mapped(k.nngp)
        idx = jnp.arange(len(parts))
        return k.replace(
            nngp=nngp,
            ntk=mapped(k.ntk),
            cov1=nngp[idx, idx],
            cov2=None,
            spatial=out_sites,
            diagonal_spatial=not full,
            channel_axis=None if c_can == ndim_out - 1 else c_can,
            points_split=None,
        )

    def transform(k: Kernel) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"{name} takes one input; got {len(k)} branches")
        if identity:
            return k
        if channel_axis != -1:  # the default makes no claim: the kernel's channels
            check_channel_axis(name, k, channel_axis, batch_axis)
        if axes(2 + len(k.spatial), k)[2] is None:
            return contracted(k)
        n1, n2 = k.nngp.shape[:2]
        a1, out_sites, c_can, ndim_out = site_map(k, n1)
        a2 = a1 if n2 == n1 or a1.shape[0] == 1 else site_map(k, n2)[0]
        a1 = jnp.broadcast_to(a1, (n1, *a1.shape[1:]))
        a2 = jnp.broadcast_to(a2, (n2, *a2.shape[1:]))
        full = k.full_spatial or (not k.spatial and len(out_sites) > 0 and not k.diagonal_spatial)
        hi = jax.lax.Precision.HIGHEST

        def mapped(m, a_left, a_right, batch_nd):
            """A_left (·) A_rightᵀ on the site axes of m (2 point axes: a pair kernel; 1: a
            per-point block)."""
            if m is None:
                return None
            pts = "ij"[:batch_nd]
            left, right = pts[0], pts[-1]
            if k.full_spatial:
                m = _unzip_sites(m, batch_nd, k.spatial)
                spec = f"{left}at,{pts}ts,{right}bs->{pts}ab"
            else:
                m = m.reshape(m.shape[:batch_nd] + (-1,))
                if full:  # no sites on the way in, sites out: their full covariance
                    spec = f"{left}as,{pts}s,{right}bs->{pts}ab"
                else:
                    spec = f"{left}as,{pts}s,{right}as->{pts}a"
            out = jnp.einsum(spec, a_left, m, a_right, precision=hi)
            if k.full_spatial or full:
                return _zip_sites(out, batch_nd, out_sites)
            return out.reshape(out.shape[:batch_nd] + out_sites)

        return k.replace(
            nngp=mapped(k.nngp, a1, a2, 2),
            ntk=mapped(k.ntk, a1, a2, 2),
            cov1=mapped(k.cov1, a1, a1, 1),
            cov2=mapped(k.cov2, a2, a2, 1),
            spatial=out_sites,
            diagonal_spatial=not full,
            channel_axis=None if c_can == ndim_out - 1 else c_can,
        )

    def mask_in_layout(mask):
        """~dot(~mask) with the constant's nonzero pattern: absent when no input read with a
        nonzero coefficient is present (mask in the inputs' layout, channel extent kept)."""
        present = dot_fn((~mask).astype(jnp.float32), (other != 0).astype(np.float32))
        return ~(present > 0)

    def kernel_mask(m, k_in, k_out):
        if identity:
            return m
        ndim = m.ndim
        b, c, b_out, c_out = axes(ndim, k_in)
        if b_out is None:  # summed over the points: one output mask per part
            n, s = m.shape[0], k_in.points_split
            parts = [m] if s == n else [m[:s], m[s:]]
            outs = []
            for part in parts:
                out = mask_in_layout(jnp.moveaxis(part, (0, ndim - 1), (b, c)))
                outs.append(jnp.moveaxis(out, c_out, -1)[None])
            return jnp.concatenate(outs, axis=0)
        shaped = jnp.moveaxis(m, (0, ndim - 1), (b, c))
        out = mask_in_layout(shaped)
        return jnp.moveaxis(out, (b_out, c_out), (0, out.ndim - 1))

    def apply_mask(mask, x):
        if identity:
            return mask
        ndim = x.ndim
        b = axis_position(batch_axis, ndim, "DotGeneral: batch_axis")
        c = axis_position(channel_axis, ndim, "DotGeneral: channel_axis")
        shape = list(x.shape)
        if c != b:  # else the default −1 lands on the points: keep the full shape
            shape[c] = mask.shape[c]
        return mask_in_layout(jnp.broadcast_to(mask, shape))

    input_site_contracted = bool(
        [a for a in in_c if a not in (batch_axis, channel_axis)]  # checked against rank later
    )
    kfn = KernelFn(
        transform,
        name,
        spatial_ndim="any",
        diagonal=Diagonal(NO if input_site_contracted else YES, NO),
        channel_axis=None if channel_axis == -1 else channel_axis,
        # a map per point, or a sum over the points: computed untiled
        mixes_points=batch_axis in in_b + in_c,
        contracts_points=not identity and batch_axis in in_c,
        batch_axis=batch_axis,  # the inputs' layout, even 0: later layers may name others
    )
    return new_layer(init_fn, apply_fn, kfn, masking=Masking(kernel=kernel_mask, apply=apply_mask))
