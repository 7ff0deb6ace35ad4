r"""Softmax attention by positive random features: FAVOR+ (the Performer).

Choromanski et al. 2021, ICLR, "Rethinking attention with Performers" (Lemma 1, §2.3–2.4):
for W with rows w_1, …, w_m ~ N(0, I_d) the positive random features

    φ(x) = exp(W x − ‖x‖²/2) / √m ∈ R^m_{>0}

satisfy E_W[φ(q)ᵀφ(k)] = exp(⟨q, k⟩) exactly (each term is exp(wᵀ(q + k) − ‖q‖²/2 − ‖k‖²/2),
whose Gaussian mean is exp(‖q + k‖²/2 − ‖q‖²/2 − ‖k‖²/2)). Softmax attention with scale s,

    Att(Q, K, V) = D⁻¹ A V,   A = exp(s Q Kᵀ),   D = diag(A 1),

is then estimated by scaling the queries and keys by √s each, q' = √s·q, k' = √s·k, and
replacing A by φ(Q')φ(K')ᵀ, computed right to left in O(n m d) instead of O(n n_k d):

    Att ≈ φ(Q') (φ(K')ᵀ V) / φ(Q') (φ(K')ᵀ 1).

The scale defaults to s = 1/d, the package's convention (Alman & Song use exp(Q Kᵀ/d); the
Performer paper and `jax.nn.dot_product_attention` use 1/√d: pass ``scale=d**-0.5`` for that).
A negative s is allowed: q' = −√|s|·q, k' = √|s|·k.

Orthogonal random features (``orthogonal=True``, §2.4): the rows of W come in blocks of d
exactly orthogonal directions (the columns of a Haar-random orthogonal matrix, by QR of a
Gaussian matrix with the signs of R's diagonal fixed), the last block truncated, and each row is
rescaled to an independent χ_d-distributed length (the norm of a fresh N(0, I_d) vector). Each
row is still marginally N(0, I_d), so the estimate stays unbiased; the paper shows its
variance is lower (§2.4). Once m ≫ d the blocks are independent and the gain is a constant
factor: the error still falls like 1/√m. ``orthogonal=False`` draws i.i.d. Gaussian rows.

Numerical stability (the trick of the Performer reference code, ``softmax_kernel_transformation``):
the exponents are shifted before exponentiating, by the maximum over the features for each
query, and by one maximum over all keys and features for the keys. A per-query factor cancels
in the ratio above (numerator and denominator are both linear in φ(q_i)); a factor common to
all keys cancels too. So the output equals the unshifted estimate exactly, up to rounding, and
the largest exponentiated value is 1: nothing overflows. The ratio of the Monte Carlo
estimates is a ratio estimator, consistent (error O(1/√m)) but not exactly unbiased; only the
kernel values φ(q)ᵀφ(k) are unbiased.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

_HI = jax.lax.Precision.HIGHEST  # no TF32 shortcut on GPU: exponents need full precision


# ---------------------------------------------------------------------------- validation


def _is_traced(a) -> bool:
    return isinstance(a, jax.core.Tracer)


def _as_float(name: str, a, min_ndim: int = 2) -> jax.Array:
    """``a`` as a float array with at least ``min_ndim`` axes ((…, tokens, features) for 2).
    Finiteness is checked inside the compiled computation (`_raise_flags`): one compilation
    per shape, not one per eager check."""
    a = jnp.asarray(a)
    if not jnp.issubdtype(a.dtype, jnp.floating):
        if not (jnp.issubdtype(a.dtype, jnp.integer) or a.dtype == jnp.bool_):
            raise ValueError(f"{name} must be a real numeric array, got dtype {a.dtype}")
        a = a.astype(jnp.result_type(float))
    if jnp.finfo(a.dtype).bits < 32:
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype} (exp overflows)")
    if a.ndim < min_ndim:
        what = "(..., tokens, features)" if min_ndim == 2 else "(..., 2n - 1)"
        raise ValueError(f"{name} must have shape {what}, got shape {a.shape}")
    return a


def _raise_flags(flags, messages) -> None:
    """Raise ValueError with the first message whose flag (computed under jit) is false."""
    if _is_traced(flags):
        return  # inside a user's jit the values are unknown
    for ok, msg in zip(np.asarray(flags), messages, strict=True):
        if not ok:
            raise ValueError(msg)


def _check_batch_and_width(q, k, v) -> None:
    """q, k, v share their leading (batch) axes, and q and k their width d."""
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ValueError(
            f"q, k and v must have the same leading (batch) axes, got shapes {q.shape}, "
            f"{k.shape} and {v.shape}"
        )
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"q and k must have the same width d, got {q.shape} and {k.shape}")


def _check_qkv(q, k, v):
    """Validated (q, k, v): q (…, n, d), k (…, n_k, d), v (…, n_k, d_v), one float dtype."""
    q, k, v = _as_float("q", q), _as_float("k", k), _as_float("v", v)
    _check_batch_and_width(q, k, v)
    if v.shape[-2] != k.shape[-2]:
        raise ValueError(f"k and v must have the same length n_k, got {k.shape} and {v.shape}")
    if k.shape[-2] < 1:
        raise ValueError("k must hold at least one key")
    if q.shape[-1] < 1:
        raise ValueError("q and k must have at least one feature (d >= 1)")
    dtype = jnp.result_type(q, k, v)
    return q.astype(dtype), k.astype(dtype), v.astype(dtype)


def _check_num_features(num_features) -> int:
    if (
        isinstance(num_features, bool)
        or not isinstance(num_features, int | jnp.integer)
        or num_features < 1
    ):
        raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
    return int(num_features)


def _check_key(key) -> jax.Array:
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if not (typed and key.shape == ()) and not (key.dtype == jnp.uint32 and key.shape == (2,)):
        raise ValueError(
            "key must be a single PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), "
            f"got dtype {key.dtype} and shape {key.shape}"
        )
    return key


def _check_scale(scale, d: int) -> float:
    if scale is None:
        return 1.0 / d
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be a real number or None, got {scale!r}") from None
    if not math.isfinite(s):
        raise ValueError(f"scale must be finite, got {scale!r}")
    return s


# ---------------------------------------------------------------------------- features


def random_feature_matrix(key, num_features: int, dim: int, orthogonal: bool = True, dtype=None):
    """The (num_features, dim) projection W of FAVOR+, every row marginally N(0, I_dim).

    ``orthogonal=True``: ⌈m/d⌉ independent blocks of d orthogonal unit rows (columns of a
    Haar-random orthogonal d × d matrix: Q of a Gaussian matrix's QR, columns multiplied by the
    signs of diag R), truncated to m rows, each row multiplied by an independent χ_d length
    ‖g‖, g ~ N(0, I_d). ``orthogonal=False``: i.i.d. N(0, 1) entries. ``dtype``: default the
    default float dtype (float64 under ``jax_enable_x64``).
    """
    key = _check_key(key)
    m = _check_num_features(num_features)
    if isinstance(dim, bool) or not isinstance(dim, int | jnp.integer) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    return _feature_matrix(key, m=m, d=int(dim), orthogonal=bool(orthogonal), dtype=dtype)


@jax.jit(static_argnames=("m", "d", "orthogonal", "dtype"))
def _feature_matrix(key, m: int, d: int, orthogonal: bool, dtype) -> jax.Array:
    if not orthogonal:
        return jax.random.normal(key, (m, d), dtype)
    n_blocks = -(-m // d)
    # one draw for the directions and the lengths (one threefry kernel to compile, not two)
    g_all = jax.random.normal(key, (n_blocks * d + m, d), dtype)
    g, g_len = g_all[: n_blocks * d].reshape(n_blocks, d, d), g_all[n_blocks * d :]
    qm, r = jnp.linalg.qr(g)  # (blocks, d, d); Haar after the sign fix below
    sign = jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))
    qm = qm * jnp.where(sign == 0, 1, sign)[:, None, :]
    rows = jnp.swapaxes(qm, -1, -2).reshape(n_blocks * d, d)[:m]  # unit, orthogonal per block
    lengths = jnp.linalg.norm(g_len, axis=1)  # χ_d, independent of the directions
    return rows * lengths[:, None]


def performer_features(x, w, scale=1.0) -> jax.Array:
    """Positive random features φ(x) = exp(√s W x − s‖x‖²/2) / √m of the rows of ``x``.

    E_W[φ(x)ᵀφ(y)] = exp(s⟨x, y⟩) when the rows of W are N(0, I_d) (Choromanski et al. 2021,
    Lemma 1). No stabilising shift: the values are the exact features (they overflow or
    underflow when s‖x‖² or √s‖x‖‖w‖ is large; `performer_attention` shifts them). Usable as
    the ``feature_map`` of `theory.attention.fft.rpe_kernelized_attention` via
    ``functools.partial(performer_features, w=W, scale=s)``.

    Args:
        x: (..., d) points (finite; integers are converted to floats).
        w: (m, d) projection, e.g. `random_feature_matrix`.
        scale: s ≥ 0 (default 1: the features of x as written in the paper).

    Returns (..., m), in the promoted float dtype of x and w.
    """
    x = jnp.asarray(x)
    w = jnp.asarray(w)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (..., d), got shape {x.shape}")
    if w.ndim != 2 or w.shape[0] < 1:
        raise ValueError(f"w must have shape (m, d) with m >= 1, got shape {w.shape}")
    if w.shape[1] != x.shape[-1]:
        raise ValueError(f"x and w must have the same width d, got {x.shape} and {w.shape}")
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be a real number, got {scale!r}") from None
    if not (math.isfinite(s) and s >= 0):
        raise ValueError(f"scale must be finite and >= 0, got {scale!r}")
    dtype = jnp.result_type(x, w, float)
    phi, flags = _features(x.astype(dtype), w.astype(dtype), jnp.asarray(s, dtype))
    _raise_flags(flags, ("x contains non-finite values", "w contains non-finite values"))
    return phi


@jax.jit
def _features(x, w, s):
    u = jnp.matmul(x, w.T, precision=_HI) * jnp.sqrt(s)
    h = 0.5 * s * jnp.sum(x * x, axis=-1, keepdims=True)
    phi = jnp.exp(u - h) / math.sqrt(w.shape[0])
    return phi, jnp.stack([jnp.all(jnp.isfinite(x)), jnp.all(jnp.isfinite(w))])


# ---------------------------------------------------------------------------- attention


@jax.jit
def _favor(q, k, v, w, q_mult, k_mult):
    """FAVOR+ on q' = q_mult·q, k' = k_mult·k (…, n, d) with projection w (m, d).

    Returns (out, flags, ok): flags say whether q, k, v are finite, ok whether out is."""
    flags = jnp.stack([jnp.all(jnp.isfinite(a)) for a in (q, k, v)])
    q, k = q * q_mult, k * k_mult
    # exponents W x − ‖x‖²/2, (…, n, m) and (…, n_k, m)
    eq = jnp.einsum("...nd,md->...nm", q, w, precision=_HI) - 0.5 * jnp.sum(q * q, -1)[..., None]
    ek = jnp.einsum("...nd,md->...nm", k, w, precision=_HI) - 0.5 * jnp.sum(k * k, -1)[..., None]
    # shifts: one per query (cancels in the ratio), one per batch element for all keys; the
    # output does not depend on them, so no gradient flows through them
    sg = jax.lax.stop_gradient
    phi_q = jnp.exp(eq - sg(jnp.max(eq, axis=-1, keepdims=True)))
    phi_k = jnp.exp(ek - sg(jnp.max(ek, axis=(-2, -1), keepdims=True)))
    # the common 1/√m of the features cancels in the ratio too, so it is left out
    kv = jnp.einsum("...jm,...je->...me", phi_k, v, precision=_HI)  # φ(K)ᵀV, (…, m, d_v)
    ksum = jnp.sum(phi_k, axis=-2)  # φ(K)ᵀ1, (…, m)
    num = jnp.einsum("...im,...me->...ie", phi_q, kv, precision=_HI)
    den = jnp.einsum("...im,...m->...i", phi_q, ksum, precision=_HI)
    out = num / den[..., None]
    ok = jnp.all(den > 0) & jnp.all(jnp.isfinite(out))
    return out, flags, ok


def performer_attention(q, k, v, key, num_features: int, scale=None, orthogonal: bool = True):
    """FAVOR+ estimate of softmax attention D⁻¹ exp(s Q Kᵀ) V (Choromanski et al. 2021).

    out[i] = φ(q'_i)ᵀ Σ_j φ(k'_j) v_jᵀ / φ(q'_i)ᵀ Σ_j φ(k'_j),  q' = √s q, k' = √s k, with
    φ(x) = exp(W x − ‖x‖²/2)/√m and W the (m, d) matrix `random_feature_matrix(key, m, d,
    orthogonal)`. Cost O(n m d + n_k m d + (n + n_k) m d_v), memory O((n + n_k) m); the error
    falls like 1/√m for fixed inputs and grows quickly with the input norms: the relative
    variance of each kernel estimate φ(q')ᵀφ(k') is (exp(‖q' + k'‖²) − 1)/m for i.i.d. rows
    (orthogonal rows lower it).

    Args:
        q: (…, n, d) queries; k: (…, n_k, d) keys; v: (…, n_k, d_v) values; finite floats,
            with identical leading (batch) axes; one W serves every batch element.
        key: a JAX PRNG key for W (the same key gives the same W, hence the same estimate).
        num_features: m ≥ 1, the number of random features.
        scale: s; None gives 1/d (the package's and Alman & Song's convention); the Performer
            paper uses 1/√d.
        orthogonal: orthogonal blocks with χ_d row lengths (default) or i.i.d. rows.

    Returns (…, n, d_v) in the inputs' float dtype. Differentiable in q, k, v.

    Raises:
        ValueError naming the argument for bad shapes, non-finite inputs, num_features < 1, a
        non-finite scale or a bad key; FloatingPointError if the output is not finite (all
        features of a query underflowed against the keys: s‖q‖‖k‖ too large for the dtype).
    """
    q, k, v = _check_qkv(q, k, v)
    key = _check_key(key)
    m = _check_num_features(num_features)
    d = q.shape[-1]
    s = _check_scale(scale, d)
    root = math.sqrt(abs(s))
    q_mult, k_mult = (jnp.asarray(a, q.dtype) for a in (math.copysign(root, s), root))
    w = _feature_matrix(key, m=m, d=d, orthogonal=bool(orthogonal), dtype=q.dtype)
    out, flags, ok = _favor(q, k, v, w, q_mult, k_mult)
    _raise_flags(flags, [f"{a} contains non-finite values" for a in ("q", "k", "v")])
    if not _is_traced(ok) and not bool(ok):
        raise FloatingPointError(
            f"performer_attention: non-finite output from finite inputs ({q.dtype}): the "
            "random-feature denominators underflowed; use float64 or a smaller scale"
        )
    return out
