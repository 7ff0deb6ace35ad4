r"""Attention layers: GlobalSelfAttention (Hron, Bahri, Sohl-Dickstein & Novak 2020,
"Infinite attention: NNGP and NTK for deep attention networks", ICML, arXiv:2006.10540).

The kernel needs every pair of sites (the attention weights mix all of them), so a network
with this layer is computed with the full spatial covariance: nngp/ntk (n1, n2, S1, S1', …),
cov1 (n1, S1, S1', …), pair axes zipped (see `theory.kernels.spatial`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from theory.kernels import spatial
from theory.kernels.kernel import Kernel, check_channel_axis
from theory.kernels.stax._core import (
    NO,
    Diagonal,
    KernelFn,
    _check_std,
    check_axes,
    new_layer,
    standard_layout,
)
from theory.kernels.stax._masking import Masking, channel_constant, collapse_channels

__all__ = ["GlobalSelfAttention"]

_MECHANISMS = ("SOFTMAX", "IDENTITY", "ABS", "RELU")
_POS_EMB_TYPES = ("NONE", "SUM", "CONCAT")


# A masked key's logit before a softmax: finite, so that a query whose keys are all masked
# gets uniform weights over zero values (neural-tangents' constant) instead of NaN.
_NEG_INF = -1e20


def _masked_logits(g, absent, mech: str):
    """Logits with absent keys removed: −1e20 before a softmax, 0 before the elementwise
    mechanisms (neural-tangents' rule)."""
    if absent is None:
        return g
    fill = _NEG_INF if mech == "SOFTMAX" else 0.0
    return jnp.where(absent, jnp.asarray(fill, g.dtype), g)


def _mechanism_fn(name: str, axes: tuple[int, ...]):
    """The attention nonlinearity: softmax jointly over ``axes`` (all key sites), or an
    elementwise function."""
    if name == "SOFTMAX":
        return lambda g: jax.nn.softmax(g, axis=axes)
    return {"IDENTITY": lambda g: g, "ABS": jnp.abs, "RELU": jax.nn.relu}[name]


def _pos_emb_distance(sites: tuple[int, ...]) -> list[np.ndarray]:
    """The per-axis absolute offsets |s_d − s'_d| between pairs of sites, one array per axis
    d, each broadcastable to the zipped (S1, S1', S2, S2', …) shape."""
    out = []
    for d, n in enumerate(sites):
        r = np.arange(n, dtype=np.float64)
        off = np.abs(r[:, None] - r[None, :])
        shape = [1] * (2 * len(sites))
        shape[2 * d], shape[2 * d + 1] = n, n
        out.append(off.reshape(shape))
    return out


def _pos_emb_cov(sites: tuple[int, ...], p_norm: float, decay_fn: Callable | None) -> np.ndarray:
    """The positional embeddings' covariance R over pairs of sites, zipped (S1, S1', …), as a
    float64 NumPy array: the indicator of s = s' (one-hot embeddings) when ``decay_fn`` is
    None, else decay_fn(Σ_d |s_d − s'_d|^p) (Hron et al. 2020, positional encodings;
    neural-tangents' convention: the L-p distance to the power p, unnormalised)."""
    if decay_fn is None:
        r = np.eye(math.prod(sites)).reshape(sites + sites)
        return np.transpose(r, [a for d in range(len(sites)) for a in (d, d + len(sites))])
    dist = sum(off**p_norm for off in _pos_emb_distance(sites))
    dist = np.broadcast_to(dist, tuple(n for n in sites for _ in (0, 1)))
    with jax.ensure_compile_time_eval():
        try:
            r = np.asarray(decay_fn(dist), np.float64)
        except Exception as e:  # report what the user's function did
            raise ValueError(
                f"GlobalSelfAttention: pos_emb_decay_fn failed on the distance array of shape "
                f"{dist.shape}: {type(e).__name__}: {e}"
            ) from e
    if r.shape != dist.shape:
        try:
            r = np.broadcast_to(r, dist.shape)
        except ValueError:
            raise ValueError(
                f"GlobalSelfAttention: pos_emb_decay_fn must map the distance array of shape "
                f"{dist.shape} elementwise, got shape {r.shape}"
            ) from None
    if not np.all(np.isfinite(r)):
        raise ValueError(
            "GlobalSelfAttention: pos_emb_decay_fn returned non-finite values on the pairwise "
            f"distances (L-{p_norm} distance to the power {p_norm}, from 0 to {dist.max():g})"
        )
    return np.array(r)


def _pos_emb_factor(sites: tuple[int, ...], p_norm: float, decay_fn: Callable) -> np.ndarray:
    """L with L Lᵀ = R (Cholesky, sites flattened in row-major order), so that L z has the
    covariance R for z ~ N(0, I): the finite network's embeddings with a decay function."""
    size = math.prod(sites)
    r = _pos_emb_cov(sites, p_norm, decay_fn)
    nd = len(sites)
    unzip = tuple(range(0, 2 * nd, 2)) + tuple(range(1, 2 * nd, 2))
    r = np.transpose(r, unzip).reshape(size, size)
    try:
        return np.linalg.cholesky(r)
    except np.linalg.LinAlgError:
        raise ValueError(
            "GlobalSelfAttention: pos_emb_decay_fn does not give a positive definite covariance "
            f"over the {size} sites {sites}, so the finite network cannot draw embeddings with "
            "it (the kernel is still defined)"
        ) from None


def _check_positive_int(name: str, value) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"GlobalSelfAttention: {name} must be a positive integer, got {value!r}")
    return int(value)


def GlobalSelfAttention(
    n_chan_out: int,
    n_chan_key: int,
    n_chan_val: int,
    n_heads: int,
    linear_scaling: bool = True,
    W_key_std: float = 1.0,
    W_value_std: float = 1.0,
    W_query_std: float = 1.0,
    W_out_std: float = 1.0,
    b_std: float | None = None,
    attention_mechanism: str = "SOFTMAX",
    pos_emb_type: str | None = "NONE",
    pos_emb_p_norm: float = 2,
    pos_emb_decay_fn: Callable | None = None,
    n_chan_pos_emb: int | None = None,
    W_pos_emb_std: float = 1.0,
    val_pos_emb: bool = False,
    batch_axis: int = 0,
    channel_axis: int = -1,
):
    r"""Global scaled dot-product self-attention over all sites of NHWC inputs (1–3 spatial
    axes), with neural-tangents 0.6.5's signature, defaults, parameters and kernel (Hron et al.
    2020, arXiv:2006.10540; neural-tangents 0.6.5's ``stax.GlobalSelfAttention``).

    **Finite network** (NTK parameterization, every weight N(0, 1); x of shape (n, *S, C),
    sites flattened to t = 1…|S|, heads h = 1…H):

    - positional embeddings (``pos_emb_type``): a parameter p of shape (1, *S, P) (P =
      ``n_chan_pos_emb``, default C), multiplied by L (L Lᵀ = R, Cholesky) when a
      ``pos_emb_decay_fn`` is given, then by σ_pe = ``W_pos_emb_std``; ``"SUM"``: x̃ = x + p
      (P must be C); ``"CONCAT"``: x̃ = [x, p] (C̃ = C + P channels); ``"NONE"``: x̃ = x. Values
      read x̃ when ``val_pos_emb``, else x;
    - keys k_h = x̃ W_K^h (W_K^h: C̃ × d_k); queries q_h = k_h (``linear_scaling=True``: tied)
      or x̃ W_Q^h;
    - logits G_h = σ_Q σ_K q_h k_hᵀ / (C̃ d_k) (linear scaling) or / (C̃ √d_k); weights
      A_h = φ(G_h), φ = softmax over the key sites, identity, |·| or ReLU;
    - f = σ_O σ_V / √(d_v H C_v) · concat_h(A_h x_v W_V^h) W_O + σ_b b, W_O of shape
      (H d_v, ``n_chan_out``), C_v the values' input channels; the concatenation puts the
      head index fastest (unit j of head h at row j·H + h, neural-tangents' layout).

    Parameters: ``(W_Q or None, W_K, W_V, W_O, b or None, p or None)``, shapes
    (H, C̃, d_k), (H, C̃, d_k), (H, C_v, d_v), (H d_v, n_chan_out), (1, …, 1, n_chan_out),
    (1, *S, P), as neural-tangents'.

    **Kernel** (heads and channels → ∞; Hron et al. 2020, in the form neural-tangents 0.6.5
    computes). Per point, the logits' covariance input is the interpolation
    K̃ = w_x K + w_p R, R the embeddings' covariance over pairs of sites (the indicator of
    s = s' without decay function, else decay(Σ_d |s_d − s'_d|^p), p = ``pos_emb_p_norm``),
    (w_x, w_p) = (1, σ_pe²) for SUM and (C/(C+P), σ_pe² P/(C+P)) for CONCAT (C the input's
    finite channel count), K̃ = K without embeddings. The value kernel K_v (and Θ_v) is K̃
    (and w_x Θ + w_p R) when ``val_pos_emb``, else K (and Θ).

    - ``linear_scaling=True``: the logits converge to σ_QK K̃(x)[s, t] (σ_QK = σ_Q σ_K), so
      A(x) = φ(σ_QK K̃(x, x)) is deterministic, with softmax over all key sites t jointly:

          K'(x, y)[s, s'] = σ_OV² Σ_{t, t'} A(x)[s, t] K_v(x, y)[t, t'] A(y)[s', t'] + σ_b²,
          Θ'(x, y) = σ_OV² A(x) Θ_v(x, y) A(y)ᵀ + σ_b² + 2 (K' − σ_b²),

      (σ_OV = σ_O σ_V; the last term is the gradient of W_V and W_O).
    - ``linear_scaling=False``: the logits stay Gaussian and a closed form exists only for
      ``"IDENTITY"`` (Hron et al. 2020): with ⟨A, B⟩ = Σ_{s, s'} A[s, s'] B[s, s'],

          K'(x, y) = σ_QK² σ_OV² ⟨K̃, K_v⟩(x, y) K̃(x, y) + σ_b²,
          Θ'(x, y) = σ_QK² σ_OV² (D K̃ + ⟨K̃, K_v⟩ (Θ̃ + 4 K̃)) + σ_b²,

      Θ̃ = w_x Θ + w_p R, D = 2⟨K̃, Θ̃⟩ (without embeddings or with ``val_pos_emb``) else
      ⟨K̃, Θ⟩ + ⟨K, Θ̃⟩. Other mechanisms raise `NotImplementedError` (as neural-tangents).

    The Diagonal requirement is neural-tangents' ``Diagonal(input=NO)``: the input must carry
    the full spatial covariance, and so does the output. ``channel_axis`` may be any
    non-batch axis (the parameters keep the channel-last layout: ``pos_emb`` is
    (1, *S, C_pos) whatever it is), and ``batch_axis`` any other axis. Masked inputs
    (``mask_constant``): absent keys leave the attention (logit −1e20 before a softmax, 0
    before the other mechanisms) and absent sites get no positional embedding.
    """
    n_chan_out = _check_positive_int("n_chan_out", n_chan_out)
    n_chan_key = _check_positive_int("n_chan_key", n_chan_key)
    n_chan_val = _check_positive_int("n_chan_val", n_chan_val)
    n_heads = _check_positive_int("n_heads", n_heads)
    if not isinstance(linear_scaling, (bool, np.bool_)):
        raise TypeError(
            f"GlobalSelfAttention: linear_scaling must be True or False, got {linear_scaling!r}"
        )
    linear_scaling = bool(linear_scaling)
    stds = dict(
        W_key_std=W_key_std,
        W_value_std=W_value_std,
        W_query_std=W_query_std,
        W_out_std=W_out_std,
        W_pos_emb_std=W_pos_emb_std,
    )
    for name, v in stds.items():
        _check_std(f"GlobalSelfAttention: {name}", v)
    _check_std("GlobalSelfAttention: b_std", b_std, allow_none=True)
    mech = attention_mechanism.upper() if isinstance(attention_mechanism, str) else None
    if mech not in _MECHANISMS:
        raise ValueError(
            f"GlobalSelfAttention: attention_mechanism must be one of {_MECHANISMS}, got "
            f"{attention_mechanism!r}"
        )
    pe_type = "NONE" if pos_emb_type is None else pos_emb_type
    pe_type = pe_type.upper() if isinstance(pe_type, str) else None
    if pe_type not in _POS_EMB_TYPES:
        raise ValueError(
            f"GlobalSelfAttention: pos_emb_type must be one of {_POS_EMB_TYPES} (or None), got "
            f"{pos_emb_type!r}"
        )
    try:
        p_norm = float(pos_emb_p_norm)
    except (TypeError, ValueError):
        raise TypeError(
            f"GlobalSelfAttention: pos_emb_p_norm must be a real number, got {pos_emb_p_norm!r}"
        ) from None
    if not math.isfinite(p_norm) or p_norm <= 0:
        raise ValueError(
            f"GlobalSelfAttention: pos_emb_p_norm must be a finite number > 0, got "
            f"{pos_emb_p_norm!r}"
        )
    if pos_emb_decay_fn is not None and not callable(pos_emb_decay_fn):
        raise TypeError(
            "GlobalSelfAttention: pos_emb_decay_fn must be None or a function of the distance, "
            f"got {pos_emb_decay_fn!r}"
        )
    if n_chan_pos_emb is not None:
        n_chan_pos_emb = _check_positive_int("n_chan_pos_emb", n_chan_pos_emb)
    if not isinstance(val_pos_emb, (bool, np.bool_)):
        raise TypeError(
            f"GlobalSelfAttention: val_pos_emb must be True or False, got {val_pos_emb!r}"
        )
    val_pos_emb = bool(val_pos_emb)
    channel_axis = check_axes("GlobalSelfAttention", batch_axis, channel_axis)
    qk_std = float(W_query_std) * float(W_key_std)
    ov_std = float(W_out_std) * float(W_value_std)
    b_std = None if b_std is None else float(b_std)
    pe_std = float(W_pos_emb_std)
    use_pe = pe_type != "NONE"

    def pos_channels(c_in: int) -> int:
        p = c_in if n_chan_pos_emb is None else n_chan_pos_emb
        if pe_type == "SUM" and p != c_in:
            raise ValueError(
                f"GlobalSelfAttention: pos_emb_type='SUM' adds the embeddings to the inputs, so "
                f"n_chan_pos_emb must be None or the input channel count {c_in}, got "
                f"{n_chan_pos_emb}"
            )
        return p

    def check_shape(shape, where):
        if len(shape) not in (3, 4, 5):
            raise ValueError(
                f"GlobalSelfAttention: {where} must be NHWC with 1 to 3 spatial axes, got shape "
                f"{tuple(shape)}"
            )

    # --------------------------------------------------------------- finite network

    def init_fn(rng, input_shape):
        input_shape = tuple(input_shape)
        check_shape(input_shape, "input_shape")
        c_in = input_shape[-1]
        rq, rk, rv, ro, rb, rp = jax.random.split(rng, 6)
        c_keys = c_vals = c_in
        pos_emb = None
        if use_pe:
            p = pos_channels(c_in)
            pos_emb = jax.random.normal(rp, (1,) + input_shape[1:-1] + (p,))
            if pe_type == "CONCAT":
                c_keys += p
                c_vals += p if val_pos_emb else 0
        W_K = jax.random.normal(rk, (n_heads, c_keys, n_chan_key))
        W_V = jax.random.normal(rv, (n_heads, c_vals, n_chan_val))
        W_O = jax.random.normal(ro, (n_chan_val * n_heads, n_chan_out))
        b = (
            None
            if b_std is None
            else jax.random.normal(rb, (1,) * (len(input_shape) - 1) + (n_chan_out,))
        )
        W_Q = None if linear_scaling else jax.random.normal(rq, (n_heads, c_keys, n_chan_key))
        return input_shape[:-1] + (n_chan_out,), (W_Q, W_K, W_V, W_O, b, pos_emb)

    def apply_fn(params, inputs, mask=None, **kwargs):
        W_Q, W_K, W_V, W_O, b, pos_emb = params
        check_shape(inputs.shape, "inputs")
        n, sites = inputs.shape[0], tuple(inputs.shape[1:-1])
        x_val = inputs
        if use_pe:
            if pos_emb_decay_fn is not None:
                L = jnp.asarray(_pos_emb_factor(sites, p_norm, pos_emb_decay_fn), pos_emb.dtype)
                flat = pos_emb.reshape(math.prod(sites), -1)
                pos_emb = (L @ flat).reshape(pos_emb.shape)
            pos_emb = pe_std * pos_emb
            if mask is not None:  # no embedding at absent entries
                pos_emb = jnp.where(mask, jnp.zeros((), pos_emb.dtype), pos_emb)
            if pe_type == "SUM":
                pos_channels(inputs.shape[-1])
                x_key = inputs + pos_emb
            else:
                x_key = jnp.concatenate(
                    [inputs, jnp.broadcast_to(pos_emb, (n,) + pos_emb.shape[1:])], axis=-1
                )
            if val_pos_emb:
                x_val = x_key
        else:
            x_key = inputs
        x_key = x_key.reshape(n, -1, x_key.shape[-1])  # (n, T, C̃)
        x_val = x_val.reshape(n, -1, x_val.shape[-1])
        hi = jax.lax.Precision.HIGHEST
        keys = jnp.einsum("ntc,hcd->hntd", x_key, W_K, precision=hi)
        queries = keys if linear_scaling else jnp.einsum("ntc,hcd->hntd", x_key, W_Q, precision=hi)
        values = jnp.einsum("ntc,hcd->hntd", x_val, W_V, precision=hi)
        scale = x_key.shape[-1] * (n_chan_key if linear_scaling else math.sqrt(n_chan_key))
        logits = jnp.einsum("hnsd,hntd->hnst", queries, keys, precision=hi) * (qk_std / scale)
        if mask is not None:  # absent keys: a site is absent when all its channels are
            absent = jnp.all(mask, axis=-1).reshape(1, n, 1, -1)
            logits = _masked_logits(logits, absent, mech)
        weights = _mechanism_fn(mech, (-1,))(logits)
        heads = jnp.einsum("hnst,hntd->nsdh", weights, values, precision=hi)
        heads = heads.reshape(n, heads.shape[1], -1)  # (n, T, d_v·H), as neural-tangents
        out = jnp.dot(heads, W_O, precision=hi) * (
            ov_std / math.sqrt(n_chan_val * n_heads * x_val.shape[-1])
        )
        out = out.reshape((n,) + sites + (n_chan_out,))
        return out if b is None else out + b_std * b

    # ----------------------------------------------------------------------- kernel

    def transform(k: Kernel) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"GlobalSelfAttention takes one input; got {len(k)} branches")
        if not k.spatial:
            raise ValueError(
                "GlobalSelfAttention needs inputs with 1 to 3 spatial axes (NHWC: attention is "
                "over sites); its input kernel has none (fully connected)"
            )
        check_channel_axis("GlobalSelfAttention", k, channel_axis, batch_axis)
        if not k.full_spatial:  # Diagonal(input=NO) makes every such network run full
            raise AssertionError("GlobalSelfAttention received a spatial-diagonal kernel")
        if not linear_scaling and mech != "IDENTITY":
            raise NotImplementedError(
                f"GlobalSelfAttention: no closed-form kernel for linear_scaling=False with "
                f"attention_mechanism={mech!r} (the softmax/ABS/RELU of Gaussian logits has no "
                "known closed-form covariance); use linear_scaling=True, or "
                "attention_mechanism='IDENTITY'"
            )
        nd = len(k.spatial)
        dtype = k.nngp.dtype
        keep = k.pair_keep()  # masked inputs: (keep12, keep11, keep22), else None
        if use_pe:
            R = jnp.asarray(_pos_emb_cov(k.spatial, p_norm, pos_emb_decay_fn), dtype)
            if pe_type == "CONCAT":
                p = pos_channels(k.width)
                w_x, w_p = k.width / (k.width + p), pe_std**2 * p / (k.width + p)
            else:
                pos_channels(k.width)
                w_x, w_p = 1.0, pe_std**2

            def interp(a, which=None):
                """a with the embeddings' covariance added; ``which``: 0 for a pair kernel,
                1/2 for x1's/x2's blocks — masked, no embedding at absent sites."""
                if a is None:
                    return None
                r = R if keep is None or which is None else jnp.where(keep[which], R, 0)
                return w_x * a + w_p * r

        else:

            def interp(a, which=None):
                return a

        def affine(a, std):
            a = std**2 * a
            return a if b_std is None else a + b_std**2

        c1, c2 = interp(k.cov1, 1), interp(k.cov2, 2)
        val = interp if val_pos_emb else (lambda a, which=None: a)
        masks = k.site_masks()

        def absent_keys(s):
            """(n, 1, t1, 1, t2, …): the key (second) site of each zipped pair is absent."""
            return None if masks is None else spatial.interleave(s, 1, first=False)

        if linear_scaling:
            phi = _mechanism_fn(mech, tuple(range(2, 2 * nd + 1, 2)))
            k1 = absent_keys(masks[0]) if masks is not None else None
            k2 = absent_keys(masks[1]) if masks is not None else None
            A1 = phi(_masked_logits(qk_std * c1, k1, mech))
            A2 = A1 if c2 is None else phi(_masked_logits(qk_std * c2, k2, mech))

            def weigh(a, Ax, Ay, batch):
                # subscripts: per spatial axis d, s_d / s'_d / t_d / t'_d
                s = [chr(ord("a") + 4 * d) for d in range(nd)]
                sp = [chr(ord("b") + 4 * d) for d in range(nd)]
                t = [chr(ord("c") + 4 * d) for d in range(nd)]
                tp = [chr(ord("d") + 4 * d) for d in range(nd)]
                x, y = "X", ("Y" if batch == 2 else "X")
                pts = "XY" if batch == 2 else "X"
                ax = x + "".join(u + v for u, v in zip(s, t))
                ay = y + "".join(u + v for u, v in zip(sp, tp))
                am = pts + "".join(u + v for u, v in zip(t, tp))
                out = pts + "".join(u + v for u, v in zip(s, sp))
                r = jnp.einsum(
                    f"{ax},{am},{ay}->{out}", Ax, a, Ay,
                    precision=jax.lax.Precision.HIGHEST, optimize=True,
                )  # fmt: skip
                return affine(r, ov_std)

            cov1 = weigh(val(k.cov1, 1), A1, A1, 1)
            cov2 = None if k.cov2 is None else weigh(val(k.cov2, 2), A2, A2, 1)
            nngp = weigh(val(k.nngp, 0), A1, A2, 2)
            ntk = None
            if k.ntk is not None:
                bias = 0.0 if b_std is None else b_std**2
                ntk = weigh(val(k.ntk, 0), A1, A2, 2) + 2 * (nngp - bias)
        else:  # IDENTITY with 1/√d_k scaling: Gaussian logits
            std = qk_std * ov_std

            def inner(a, b, batch):
                axes = tuple(range(batch, a.ndim))
                r = jnp.sum(a * b, axis=axes)
                return r.reshape(r.shape + (1,) * len(axes))

            n12 = interp(k.nngp, 0)
            dot11 = inner(c1, val(k.cov1, 1), 1)
            dot12 = inner(n12, val(k.nngp, 0), 2)
            cov1 = affine(dot11 * c1, std)
            cov2 = None if c2 is None else affine(inner(c2, val(k.cov2, 2), 1) * c2, std)
            nngp = affine(dot12 * n12, std)
            ntk = None
            if k.ntk is not None:
                t12 = interp(k.ntk, 0)
                if val_pos_emb or not use_pe:
                    d = 2 * inner(n12, t12, 2)
                else:
                    d = inner(n12, k.ntk, 2) + inner(k.nngp, t12, 2)
                ntk = affine(d * n12 + dot12 * (t12 + 4 * n12), std)
        return k.replace(
            nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, width=n_chan_out, is_gaussian=True
        )

    name = f"GlobalSelfAttention({n_chan_out}, {mech}"
    name += "" if linear_scaling else ", linear_scaling=False"
    name += "" if not use_pe else f", pos_emb_type={pe_type!r}"
    name += ")"
    kfn = KernelFn(
        transform,
        name,
        spatial_ndim="sites",
        diagonal=Diagonal(NO, NO),
        channel_axis=channel_axis,
        batch_axis=batch_axis or None,  # 0: the default, not a claim
    )

    # Masks: absent keys leave the attention (−1e20 before a softmax, 0 otherwise) and carry
    # no positional embedding; a site is absent when all of its channels are.
    def kernel_mask(m, k_in, k_out):
        if use_pe and m.shape[-1] != 1:  # embeddings zeroed channel by channel: no kernel
            channel_constant(m, name)
        return collapse_channels(m)

    masking = Masking(
        kernel=kernel_mask,
        apply=lambda mask, x: jnp.all(mask, axis=channel_axis, keepdims=True),
        takes_mask=True,
    )
    return new_layer(
        *standard_layout(init_fn, apply_fn, batch_axis, channel_axis), kfn, masking=masking
    )
