"""Infinite-width training dynamics in function space: gradient flow on MSE and GP posteriors.

Under gradient flow on the mean squared error, an infinitely wide network is a linear model in
its parameters, so its outputs on the training set obey a linear ODE driven by the (constant)
neural tangent kernel Θ, Jacot et al. (2018), §5; Lee et al. (2019), §2.

Conventions follow neural-tangents 0.6.5 ``predict`` exactly:

- the loss is ``L = 1/(2|Y|) Σ (f − y)²`` with ``|Y| = y_train.size`` (training points times
  outputs), i.e. ½·mean over *all* entries of ``y_train``, so the function-space flow is
  ``df/dt = −η Θ ∇_f L = −(η/|Y|) Θ (f − y)``;
- ``t`` counts steps: absolute time is ``η·t``, so ``η`` and ``t`` are interchangeable;
- the kernel is ``Θ ⊗ I`` over the output axis (``trace_axes=(-1,)``);
- ``diag_reg`` adds ``diag_reg·I`` (``diag_reg_absolute_scale=True``) or
  ``diag_reg·mean(diag Θ)·I`` (the default) to the train-train kernel, everywhere it is used.

Shapes: ``k_train_train`` ``(N, N)``, ``y_train`` ``(N, K)`` (or ``(N,)`` with
``trace_axes=()``), ``k_test_train`` ``(M, N)``, ``k_test_test`` ``(M, M)``; times ``t`` of any
shape ``T`` give outputs of shape ``T + (N, K)`` and ``T + (M, K)``.

Nothing here enables float64; tests that need it do so themselves (see ``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from theory.kernels.kernel import check_precision

__all__ = [
    "Gaussian",
    "PrincipalComponentDecay",
    "gp_inference",
    "gradient_descent_mse",
    "ntk_ensemble_posterior",
    "principal_component_decay",
    "project_onto_principal_components",
]


# ---------------------------------------------------------------------------------------------
# Boundary checks (skipped for traced values, which cannot be inspected)
# ---------------------------------------------------------------------------------------------


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _as_float_array(name: str, x, dtype=None) -> jax.Array:
    try:
        x = jnp.asarray(x, dtype=dtype)
    except TypeError as e:
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}") from e
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    check_precision(name, x.dtype)
    return x


@jax.jit
def _all_finite(x):
    return jnp.all(jnp.isfinite(x))


@jax.jit
def _kernel_stats(k):
    """(all finite, max |K − Kᵀ|, max |K|), in one compiled pass."""
    return jnp.all(jnp.isfinite(k)), jnp.max(jnp.abs(k - k.T)), jnp.max(jnp.abs(k))


def _on_host(raw) -> bool:
    """Host data (numpy, lists, scalars) is checked with numpy: no compilation, no transfer."""
    return not isinstance(raw, jax.Array)


def _check_finite(name: str, x: jax.Array, raw=None) -> None:
    if not _concrete(x) or not x.size:
        return
    raw = x if raw is None else raw
    finite = np.all(np.isfinite(np.asarray(raw))) if _on_host(raw) else _all_finite(x)
    if not bool(finite):
        raise ValueError(f"{name} contains NaN or inf; pass finite values")


def _check_scalar(name: str, value, allow_zero: bool) -> float:
    if not _concrete(value):
        return value
    try:
        v = float(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a real scalar, got {value!r}") from e
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def _check_kernel(name: str, raw, dtype=None) -> jax.Array:
    k = _as_float_array(name, raw, dtype)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"{name} must be a square 2-D (N, N) kernel matrix, got shape {k.shape}")
    if _concrete(k) and k.size:
        if _on_host(raw):
            h = np.asarray(raw, dtype=k.dtype)
            finite, asym, scale = np.all(np.isfinite(h)), np.max(np.abs(h - h.T)), np.max(abs(h))
        else:
            finite, asym, scale = (float(v) for v in _kernel_stats(k))
        if not finite:
            raise ValueError(f"{name} contains NaN or inf; pass finite values")
        # Kernels assembled by different op orders are symmetric only to roundoff.
        tol = float(np.sqrt(np.finfo(k.dtype).eps)) * scale
        if asym > tol:
            raise ValueError(
                f"{name} must be symmetric; max |K - K^T| = {asym:.3g} exceeds {tol:.3g}"
            )
    return k


def _check_targets(y_train, n: int, trace_axes, dtype) -> jax.Array:
    """Return ``y_train`` as ``(N, K)`` after checking it against the kernel and trace_axes."""
    y = _as_float_array("y_train", y_train, dtype)
    axes = tuple(trace_axes)
    if y.ndim == 2 and axes in ((-1,), (1,)):
        pass
    elif y.ndim == 1 and axes == ():
        y = y[:, None]
    else:
        raise ValueError(
            "y_train must be (N, K) with trace_axes=(-1,) or (N,) with trace_axes=(); got "
            f"shape {y.shape} with trace_axes={trace_axes!r}"
        )
    if y.shape[0] != n:
        raise ValueError(f"y_train has {y.shape[0]} rows but k_train_train is {n} x {n}")
    _check_finite("y_train", y, y_train)
    return y


def _check_cross_kernel(name: str, raw, n: int, dtype) -> jax.Array:
    k = _as_float_array(name, raw, dtype)
    if k.ndim != 2 or k.shape[1] != n:
        raise ValueError(f"{name} must be 2-D (M, {n}) (test x train), got shape {k.shape}")
    _check_finite(name, k, raw)
    return k


def _regularize(k: jax.Array, diag_reg: float, diag_reg_absolute_scale: bool) -> jax.Array:
    """``K + diag_reg·I`` or ``K + diag_reg·mean(diag K)·I`` (neural-tangents' convention)."""
    scale = diag_reg if diag_reg_absolute_scale else diag_reg * jnp.trace(k) / k.shape[0]
    return k + scale * jnp.eye(k.shape[0], dtype=k.dtype)


@partial(jax.jit, static_argnums=2)
def _eigh(k, diag_reg, diag_reg_absolute_scale):
    """Eigenvalues (ascending) and eigenvectors of the regularized kernel."""
    return jnp.linalg.eigh(_regularize(k, diag_reg, diag_reg_absolute_scale))


@partial(jax.jit, static_argnums=2)
def _cholesky_factor(k, diag_reg, diag_reg_absolute_scale):
    """Lower Cholesky factor L of the regularized kernel (NaN if it is not positive definite)."""
    return jnp.linalg.cholesky(_regularize(k, diag_reg, diag_reg_absolute_scale))


def _cho_solve(chol, b):
    return jsl.cho_solve((chol, True), b)


# ---------------------------------------------------------------------------------------------
# Gradient flow on MSE
# ---------------------------------------------------------------------------------------------


def indefinite_tolerance(n: int, dtype) -> float:
    """Relative size ``N·ε`` below which a negative eigenvalue counts as roundoff.

    The rank tolerance of ``numpy.linalg.matrix_rank`` (σ_max·max(M, N)·ε): an eigensolver's
    backward error is O(N·ε·‖K‖), and kernels from `theory.kernels.stax` carry relative
    entry errors of a few ε. Measured on float32 ``kernel_fn`` kernels (ReLU, Erf, GELU, depth
    1 and 10, N = 500 to 2000): λ_min/λ_max ≥ −2.1e-7, against N·ε = 6e-5 to 2.4e-4.
    """
    return n * float(np.finfo(dtype).eps)


def _check_psd(name: str, evals: jax.Array, diag_reg: float) -> None:
    """Raise if the (regularized) kernel has a negative eigenvalue beyond roundoff.

    Gradient flow on MSE multiplies the residual along eigenvector v by e^{−ηλt/|Y|}: for
    λ < 0 that grows without bound, so there is no t = ∞ limit, and clamping λ to 0 (the
    silent fix) would return the flow of a different kernel. An NTK is a Gram matrix of
    Jacobians, hence PSD; a kernel that is not came from a bug or a non-kernel input.
    """
    if not _concrete(evals):
        return
    lam_min, lam_max = float(evals[0]), float(jnp.max(jnp.abs(evals)))
    tol = indefinite_tolerance(evals.shape[0], evals.dtype)
    if lam_min < -tol * lam_max:
        raise ValueError(
            f"{name} (+ diag_reg={diag_reg}) is indefinite: smallest eigenvalue {lam_min:.3g} "
            f"< -N·eps·max|λ| = {-tol * lam_max:.3g} (roundoff tolerance, N = {evals.shape[0]}, "
            f"{evals.dtype.name}). Gradient flow on MSE diverges along that eigenvector (the "
            "residual grows like exp(η|λ|t/|Y|)), so there is no honest answer to clamp to. "
            "Pass a positive semi-definite kernel (an NTK is one), or shift it with "
            f"diag_reg >= {-lam_min:.3g} and diag_reg_absolute_scale=True. A kernel computed "
            "in float32 and cast to float64 carries float32 roundoff (about 1e-7·max|λ|): "
            "pass it as float32, so that the tolerance matches."
        )


@jax.jit
def _flow_factors(evals: jax.Array, t: jax.Array, normalization):
    """Eigenvalue functions of the flow at absolute times ``t`` (shape ``T``), each ``T + (N,)``.

    ``decay − 1 = expm1(−λt/|Y|)`` and ``(e^{−λt/|Y|} − 1)/λ``. Negative eigenvalues are
    clamped to 0: only roundoff ones reach here (beyond ``N·ε·max|λ|`` `_check_psd` raises).
    At λ = 0 the second tends to ``−t/|Y|`` for finite t; at t = ∞ it is set to 0, the
    Moore–Penrose choice, which is also the limit whenever the joint kernel is PSD (then
    ``k_test_train`` vanishes on the null space of Θ).
    """
    lam = jnp.maximum(evals, 0.0)
    positive = lam > 0
    lam_safe = jnp.where(positive, lam, 1.0)  # keeps 0·∞ out of both where-branches
    t = t[..., None]
    expm1 = jnp.expm1(jnp.where(positive, -lam_safe * t / normalization, 0.0))
    at_zero = jnp.where(jnp.isinf(t), 0.0, -t / normalization)
    return expm1, jnp.where(positive, expm1 / lam_safe, at_zero)


@partial(jax.jit, static_argnames=("y_shape",))
def _flow(evals, evecs, y, t, lr, normalization, f0, k_test_train=None, g0=None, *, y_shape):
    """Train (and test, when ``k_test_train`` is given) outputs at steps ``t`` (time ``lr·t``)."""
    n_out = y.shape[1]
    f0 = jnp.broadcast_to(f0, y_shape).reshape(y.shape)  # (N, K)
    expm1, inv_expm1 = _flow_factors(evals, lr * t, normalization)  # T + (N,)
    proj = evecs.T @ (f0 - y)  # (N, K): initial residual along the eigenvectors of Θ
    fx_train = f0 + jnp.einsum("ij,...j,jk->...ik", evecs, expm1, proj)
    fx_train = fx_train.reshape(t.shape + y_shape)
    if k_test_train is None:
        return fx_train
    m = k_test_train.shape[0]
    test_shape = (m,) + y_shape[1:]
    g0 = jnp.broadcast_to(g0, test_shape).reshape(m, n_out)
    k_test_evecs = k_test_train @ evecs  # (M, N)
    fx_test = g0 + jnp.einsum("mj,...j,jk->...mk", k_test_evecs, inv_expm1, proj)
    return fx_train, fx_test.reshape(t.shape + test_shape)


def _check_broadcast(name: str, x, shape: tuple[int, ...]) -> None:
    try:
        ok = np.broadcast_shapes(jnp.shape(x), shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name} of shape {jnp.shape(x)} does not broadcast to {shape}")


def _check_times(t) -> None:
    if _concrete(t):
        t = np.asarray(t)
        if np.any(np.isnan(t) | (t < 0)):
            raise ValueError("t must be >= 0 (jnp.inf allowed), without NaN")


def gradient_descent_mse(
    k_train_train,
    y_train,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: tuple[int, ...] = (-1,),
) -> Callable:
    r"""Outputs of continuous-time gradient descent on MSE with a fixed kernel, in closed form.

    With ``L = 1/(2|Y|) Σ_{i,k} (f_k(x_i) − y_{ik})²`` (|Y| = ``y_train.size``) the outputs on
    the training set follow, Jacot et al. (2018), §5, and Lee et al. (2019), §2,

        df_train/dt = −(η/|Y|) Θ (f_train − y),
        df_test/dt  = −(η/|Y|) Θ_test,train (f_train − y),

    with Θ constant (infinite width). Its solution, with ``Θ = V diag(λ) Vᵀ``:

        f_train(t) = y + V e^{−ηλt/|Y|} Vᵀ (f_train(0) − y),
        f_test(t)  = f_test(0) + Θ_test,train V diag((e^{−ηλt/|Y|} − 1)/λ) Vᵀ (f_train(0) − y),

    which at ``t = ∞`` is kernel regression ``f_test(0) + Θ_test,train Θ⁻¹ (y − f_train(0))``.
    The factor ``(e^{−λs} − 1)/λ`` is computed as ``expm1(−λs)/λ`` and tends to ``−s`` at λ = 0.

    Args:
      k_train_train: Θ, ``(N, N)``, symmetric PSD. Its eigendecomposition is computed once here;
        an eigenvalue below ``−N·ε·max|λ|`` (beyond roundoff; `indefinite_tolerance`) raises
        ``ValueError``, since the flow diverges along its eigenvector; negative eigenvalues
        within roundoff are treated as 0.
      y_train: targets y, ``(N, K)`` (or ``(N,)`` with ``trace_axes=()``).
      learning_rate: η > 0; times are in units of steps, absolute time ``η·t``.
      diag_reg: ridge ≥ 0 added to Θ (see ``diag_reg_absolute_scale``).
      diag_reg_absolute_scale: ``True``: add ``diag_reg·I``; ``False``: ``diag_reg·tr(Θ)/N·I``.
      trace_axes: ``(-1,)``: Θ acts as ``Θ ⊗ I`` over the last axis of ``y_train``; ``()``
        only for 1-D ``y_train``.

    Returns:
      ``predict_fn(t=None, fx_train_0=0., fx_test_0=0., k_test_train=None)`` giving
      ``fx_train`` of shape ``t.shape + y_train.shape``, or ``(fx_train, fx_test)`` when
      ``k_test_train`` ``(M, N)`` is given. ``t`` is a scalar, an array, or ``jnp.inf``;
      ``t=None`` means ``t=∞``. ``predict_fn`` traces under ``jax.jit``.
    """
    k = _check_kernel("k_train_train", k_train_train)
    n = k.shape[0]
    y = _check_targets(y_train, n, trace_axes, k.dtype)
    dtype = jnp.result_type(k.dtype, y.dtype)
    k, y = k.astype(dtype), y.astype(dtype)
    learning_rate = _check_scalar("learning_rate", learning_rate, allow_zero=False)
    diag_reg = _check_scalar("diag_reg", diag_reg, allow_zero=True)
    evals, evecs = _eigh(k, diag_reg, bool(diag_reg_absolute_scale))
    _check_psd("k_train_train", evals, diag_reg)
    normalization = y.size  # |Y|: neural-tangents' ½·mean over all entries of y_train
    y_shape = (n,) if jnp.ndim(y_train) == 1 else y.shape

    def predict_fn(t=None, fx_train_0=0.0, fx_test_0=0.0, k_test_train=None):
        t = _as_float_array("t", jnp.inf if t is None else t, dtype)
        _check_times(t)
        f0 = _as_float_array("fx_train_0", fx_train_0, dtype)
        _check_broadcast("fx_train_0", f0, y_shape)
        _check_finite("fx_train_0", f0, fx_train_0)
        if k_test_train is None:
            if fx_test_0 is not None and not (
                isinstance(fx_test_0, float | int) and fx_test_0 == 0
            ):
                raise ValueError("fx_test_0 was given without k_test_train: pass k_test_train")
            return _flow(evals, evecs, y, t, learning_rate, normalization, f0, y_shape=y_shape)
        kt = _check_cross_kernel("k_test_train", k_test_train, n, dtype)
        g0 = _as_float_array("fx_test_0", 0.0 if fx_test_0 is None else fx_test_0, dtype)
        _check_broadcast("fx_test_0", g0, (kt.shape[0],) + y_shape[1:])
        _check_finite("fx_test_0", g0, fx_test_0)
        return _flow(evals, evecs, y, t, learning_rate, normalization, f0, kt, g0, y_shape=y_shape)

    return predict_fn


# ---------------------------------------------------------------------------------------------
# Convergence along the kernel's principal components
# ---------------------------------------------------------------------------------------------


class PrincipalComponentDecay(NamedTuple):
    """Residual of gradient flow in the eigenbasis of Θ, principal components first.

    Fields: ``eigenvalues`` λ_i ``(N,)`` descending; ``eigenvectors`` ``(N, N)``, column i for
    λ_i; ``rates`` η λ_i / |Y| ``(N,)``; ``projection_0`` ``v_iᵀ(f(0) − y)`` ``(N, K)``;
    ``decay`` ``exp(−η λ_i t / |Y|)`` ``T + (N,)``; ``projection_t`` ``decay · projection_0``
    ``T + (N, K)``, the theoretical residual projections at times t.
    """

    eigenvalues: jax.Array
    eigenvectors: jax.Array
    rates: jax.Array
    projection_0: jax.Array
    decay: jax.Array
    projection_t: jax.Array


@partial(jax.jit, static_argnums=2)
def _principal_components(k, diag_reg, diag_reg_absolute_scale):
    """Eigenpairs of the regularized kernel, largest eigenvalue first."""
    evals, evecs = _eigh(k, diag_reg, diag_reg_absolute_scale)
    return evals[::-1], evecs[:, ::-1]


@jax.jit
def _project(evecs, r):
    if r.ndim == 1:
        return evecs.T @ r
    return jnp.einsum("ji,...jk->...ik", evecs, r)


@partial(jax.jit, static_argnums=5)
def _principal_component_decay(k, r0, t, learning_rate, diag_reg, diag_reg_absolute_scale):
    evals, evecs = _principal_components(k, diag_reg, diag_reg_absolute_scale)
    rates = learning_rate * jnp.maximum(evals, 0.0) / r0.size
    positive = rates > 0
    rates_safe = jnp.where(positive, rates, 1.0)  # keeps 0·∞ out of both where-branches
    decay = jnp.exp(jnp.where(positive, -rates_safe * t[..., None], 0.0))  # T + (N,)
    proj_0 = evecs.T @ r0  # (N, K)
    return PrincipalComponentDecay(evals, evecs, rates, proj_0, decay, decay[..., None] * proj_0)


def project_onto_principal_components(
    k_train_train, residual, diag_reg: float = 0.0, diag_reg_absolute_scale: bool = False
) -> jax.Array:
    """``Vᵀ r``: ``residual`` ``(N,)`` or ``(..., N, K)`` along Θ's eigenvectors, largest first."""
    k = _check_kernel("k_train_train", k_train_train)
    diag_reg = _check_scalar("diag_reg", diag_reg, allow_zero=True)
    r = _as_float_array("residual", residual, k.dtype)
    n = k.shape[0]
    if not ((r.ndim == 1 and r.shape[0] == n) or (r.ndim >= 2 and r.shape[-2] == n)):
        raise ValueError(f"residual must be ({n},) or (..., {n}, K), got shape {r.shape}")
    _, evecs = _principal_components(k, diag_reg, bool(diag_reg_absolute_scale))
    return _project(evecs, r)


def principal_component_decay(
    k_train_train,
    residual_0,
    t,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
) -> PrincipalComponentDecay:
    r"""Decay of the MSE residual along Θ's principal components, Jacot et al. (2018), §5.

    Under ``df/dt = −(η/|Y|) Θ (f − y)`` (|Y| = ``residual_0.size``, neural-tangents'
    convention) the residual ``r = f − y`` decouples in the eigenbasis ``Θ v_i = λ_i v_i``:

        v_iᵀ r(t) = exp(−η λ_i t / |Y|) · v_iᵀ r(0),

    so convergence is fastest along the kernel's principal components; directions with small
    λ_i are learned last (early stopping regularizes them).

    Args:
      k_train_train: Θ, ``(N, N)`` symmetric PSD (indefinite beyond roundoff raises
        ``ValueError``, as in `gradient_descent_mse`).
      residual_0: ``f(0) − y``, ``(N, K)``.
      t: times (steps) of any shape ``T``, ≥ 0.
      learning_rate: η > 0.
      diag_reg, diag_reg_absolute_scale: as in `gradient_descent_mse`.

    Returns:
      A `PrincipalComponentDecay`.
    """
    k = _check_kernel("k_train_train", k_train_train)
    r0 = _as_float_array("residual_0", residual_0, k.dtype)
    if r0.ndim != 2 or r0.shape[0] != k.shape[0]:
        raise ValueError(f"residual_0 must be ({k.shape[0]}, K), got shape {r0.shape}")
    _check_finite("residual_0", r0, residual_0)
    learning_rate = _check_scalar("learning_rate", learning_rate, allow_zero=False)
    diag_reg = _check_scalar("diag_reg", diag_reg, allow_zero=True)
    t = _as_float_array("t", t, k.dtype)
    _check_times(t)
    out = _principal_component_decay(
        k, r0, t, learning_rate, diag_reg, bool(diag_reg_absolute_scale)
    )
    _check_psd("k_train_train", out.eigenvalues[::-1], diag_reg)
    return out


# ---------------------------------------------------------------------------------------------
# Gaussian posteriors
# ---------------------------------------------------------------------------------------------


class Gaussian(NamedTuple):
    """Mean ``(M, K)`` and covariance ``(M, M)`` (None when not requested) of test outputs."""

    mean: jax.Array
    covariance: jax.Array | None


def _cholesky(name: str, k, diag_reg, diag_reg_absolute_scale):
    chol = _cholesky_factor(k, diag_reg, bool(diag_reg_absolute_scale))
    if _concrete(chol) and not bool(_all_finite(chol)):
        raise ValueError(
            f"{name} (+ diag_reg) is not positive definite: Cholesky failed; increase diag_reg"
        )
    return chol


@jax.jit
def _gp_posterior(chol, alpha, k_test_train, k_test_test=None):
    mean = k_test_train @ alpha  # (M, K)
    if k_test_test is None:
        return mean, None
    return mean, k_test_test - k_test_train @ _cho_solve(chol, k_test_train.T)


@jax.jit
def _ntk_ensemble(chol, theta_t, kxx, k_t, k_tt, y):
    a = _cho_solve(chol, theta_t.T).T  # (M, N): Θ_*x Θ⁻¹
    cross = a @ k_t.T  # Θ_*x Θ⁻¹ K_x*
    return a @ y, k_tt + a @ kxx @ a.T - (cross + cross.T)


def gp_inference(
    k_train_train, y_train, diag_reg: float = 0.0, diag_reg_absolute_scale: bool = False
) -> Callable:
    r"""Posterior of a zero-mean GP with covariance K given noiseless targets (Rasmussen §2.2).

        mean = K_*x (K + σ²I)⁻¹ y,      cov = K_** − K_*x (K + σ²I)⁻¹ K_x*,

    with σ² = ``diag_reg`` (absolute) or ``diag_reg·tr(K)/N`` (default), the neural-tangents
    convention. With K the NNGP this is the exact posterior of an infinitely wide Bayesian
    network, Lee et al. (2018); with K = Θ the mean is gradient flow at t = ∞. The solve uses a
    Cholesky factor computed once; jitter comes only from ``diag_reg``.

    Args:
      k_train_train: K, ``(N, N)`` symmetric positive definite (after ``diag_reg``).
      y_train: ``(N, K)`` or ``(N,)``.
      diag_reg: σ² ≥ 0; diag_reg_absolute_scale: as in `gradient_descent_mse`.

    Returns:
      ``predict_fn(k_test_train, k_test_test=None) -> Gaussian(mean, covariance)``, mean
      ``(M,) + y_train.shape[1:]``, covariance ``(M, M)`` or None.
    """
    k = _check_kernel("k_train_train", k_train_train)
    n = k.shape[0]
    y = _check_targets(y_train, n, (-1,) if jnp.ndim(y_train) == 2 else (), k.dtype)
    diag_reg = _check_scalar("diag_reg", diag_reg, allow_zero=True)
    chol = _cholesky("k_train_train", k, diag_reg, diag_reg_absolute_scale)
    alpha = jax.jit(_cho_solve)(chol, y)  # (N, K)
    tail = tuple(jnp.shape(y_train)[1:])

    def predict_fn(k_test_train, k_test_test=None) -> Gaussian:
        kt = _check_cross_kernel("k_test_train", k_test_train, n, k.dtype)
        ktt = None
        if k_test_test is not None:
            ktt = _check_kernel("k_test_test", k_test_test, k.dtype)
            if ktt.shape[0] != kt.shape[0]:
                m = kt.shape[0]
                raise ValueError(f"k_test_test must be {m} x {m}, got {ktt.shape}")
        mean, cov = _gp_posterior(chol, alpha, kt, ktt)
        return Gaussian(mean.reshape((kt.shape[0],) + tail), cov)

    return predict_fn


def ntk_ensemble_posterior(
    ntk_train_train,
    ntk_test_train,
    nngp_train_train,
    nngp_test_train,
    nngp_test_test,
    y_train,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
) -> Gaussian:
    r"""Outputs of an infinite ensemble of infinitely wide networks trained to convergence.

    Lee et al. (2019), eq. (16) at t = ∞: with Θ the NTK and K the NNGP (the output
    covariance at initialization),

        mean = Θ_*x Θ⁻¹ y,
        cov  = K_** + Θ_*x Θ⁻¹ K Θ⁻¹ Θ_x* − (Θ_*x Θ⁻¹ K_x* + K_*x Θ⁻¹ Θ_x*).

    This is not a GP posterior (unless Θ = K). ``diag_reg`` regularizes Θ as in
    `gradient_descent_mse`. Shapes: train-train ``(N, N)``, test-train ``(M, N)``, test-test
    ``(M, M)``, y ``(N, K)`` or ``(N,)``.
    """
    theta = _check_kernel("ntk_train_train", ntk_train_train)
    n = theta.shape[0]
    dtype = theta.dtype
    theta_t = _check_cross_kernel("ntk_test_train", ntk_test_train, n, dtype)
    kxx = _check_kernel("nngp_train_train", nngp_train_train, dtype)
    if kxx.shape != theta.shape:
        raise ValueError(f"nngp_train_train must be {n} x {n}, got {kxx.shape}")
    k_t = _check_cross_kernel("nngp_test_train", nngp_test_train, n, dtype)
    k_tt = _check_kernel("nngp_test_test", nngp_test_test, dtype)
    m = theta_t.shape[0]
    if k_t.shape[0] != m or k_tt.shape[0] != m:
        raise ValueError(
            f"test sizes disagree: ntk_test_train has {m} rows, nngp_test_train "
            f"{k_t.shape[0]}, nngp_test_test {k_tt.shape[0]}"
        )
    y = _check_targets(y_train, n, (-1,) if jnp.ndim(y_train) == 2 else (), dtype)
    diag_reg = _check_scalar("diag_reg", diag_reg, allow_zero=True)
    chol = _cholesky("ntk_train_train", theta, diag_reg, diag_reg_absolute_scale)
    mean, cov = _ntk_ensemble(chol, theta_t, kxx, k_t, k_tt, y)
    return Gaussian(mean.reshape((m,) + tuple(jnp.shape(y_train)[1:])), cov)
