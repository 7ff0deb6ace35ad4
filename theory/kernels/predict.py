"""Infinite-width training dynamics in function space: gradient flow and GP posteriors.

Under gradient flow on the mean squared error, an infinitely wide network is a linear model in
its parameters, so its outputs on the training set obey a linear ODE driven by the (constant)
neural tangent kernel Θ, Jacot et al. (2018), §5; Lee et al. (2019), §2.

This module is neural-tangents' ``predict`` (0.6.5: same names, signatures and conventions):

- the loss is ``L = 1/(2|Y|) Σ (f − y)²`` with ``|Y| = y_train.size`` (training points times
  outputs), i.e. ½·mean over *all* entries of ``y_train``, so the function-space flow is
  ``df/dt = −η Θ ∇_f L = −(η/|Y|) Θ (f − y)``;
- ``t`` counts steps: absolute time is ``η·t``, so ``η`` and ``t`` are interchangeable;
- kernel layout: a kernel relating outputs ``f(x1)`` and ``f(x2)`` has their axes *zipped*,
  ``(N1, N2, A1, A2, …)`` for outputs ``(N, A, …)``, with the ``trace_axes`` of the outputs
  absent: the kernel acts on them as ``Θ ⊗ I``. The default ``trace_axes=(-1,)`` takes
  ``y_train`` ``(N, K)`` with an ``(N, N)`` kernel; ``trace_axes=()`` takes the full
  ``(N, N, K, K)`` kernel of an empirical NTK with ``trace_axes=()``;
- ``diag_reg`` adds ``diag_reg·I`` (``diag_reg_absolute_scale=True``) or
  ``diag_reg·mean(diag Θ)·I`` (the default) to the train-train kernel (flattened to a matrix),
  everywhere it is used.

Deliberate differences from neural-tangents (each a clear answer where it returns NaN or a
wrong number silently): a train-train kernel that is not symmetric, not finite, or indefinite
beyond roundoff raises ``ValueError`` (`indefinite_tolerance`); a zero eigenvalue of Θ gives
the Moore–Penrose limit at ``t = ∞`` instead of ``0/0``; ``t = None`` (infinite time) uses the
same eigendecomposition as finite times. Additions: `principal_component_decay`,
`project_onto_principal_components`, `ntk_ensemble_posterior`.

Nothing here enables float64; tests that need it do so themselves (see ``tests/conftest.py``).
"""

from __future__ import annotations

import dataclasses
import math
from collections import namedtuple
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import scipy.linalg

from theory.kernels.kernel import check_precision

__all__ = [
    "Gaussian",
    "ODEState",
    "PrincipalComponentDecay",
    "gp_inference",
    "gradient_descent",
    "gradient_descent_mse",
    "gradient_descent_mse_ensemble",
    "max_learning_rate",
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
    with jax.ensure_compile_time_eval():  # now, even inside a caller's jax.jit
        finite = bool(np.all(np.isfinite(np.asarray(raw))) if _on_host(raw) else _all_finite(x))
    if not finite:
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
            with jax.ensure_compile_time_eval():  # now, even inside a caller's jax.jit
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
# Roundoff, positive semi-definiteness and the flow in the eigenbasis
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
    lam, positive, lam_safe = (_lead(a, t.ndim - 1) for a in (lam, positive, lam_safe))
    expm1 = jnp.expm1(jnp.where(positive, -lam_safe * t / normalization, 0.0))
    at_zero = jnp.where(jnp.isinf(t), 0.0, -t / normalization)
    return expm1, jnp.where(positive, expm1 / lam_safe, at_zero)


@jax.jit
def _flow(evals, evecs, y, t, lr, normalization, f0, k_test_train=None, g0=None):
    """Train (and test, when ``k_test_train`` is given) outputs at steps ``t`` (time ``lr·t``).

    Flat layout: ``y``, ``f0`` ``(P, T)`` (points × traced outputs), ``k_test_train``
    ``(Q, P)``, ``g0`` ``(Q, T)``; outputs ``t.shape + (P, T)`` and ``t.shape + (Q, T)``.
    """
    expm1, inv_expm1 = _flow_factors(evals, lr * t, normalization)  # t.shape + (P,)
    proj = evecs.T @ (f0 - y)  # (P, T): initial residual along the eigenvectors of Θ
    fx_train = _lead(f0, t.ndim) + jnp.einsum("ij,...j,jk->...ik", evecs, expm1, proj)
    if k_test_train is None:
        return fx_train
    k_test_evecs = k_test_train @ evecs  # (Q, P)
    fx_test = _lead(g0, t.ndim) + jnp.einsum("mj,...j,jk->...mk", k_test_evecs, inv_expm1, proj)
    return fx_train, fx_test


def _lead(a, n: int):
    """``a`` with ``n`` leading unit axes: explicit broadcasting, so the module also runs under
    ``jax_numpy_rank_promotion='raise'`` (neural-tangents' tests set it)."""
    return a.reshape((1,) * n + a.shape)


# ---------------------------------------------------------------------------------------------
# Output layouts: y_train's axes, the kernel's zipped axes, and their flat (points, traced) form
# ---------------------------------------------------------------------------------------------


class _Layout(NamedTuple):
    """How ``y_train``'s axes split: ``trace`` (positive, sorted; the kernel is ⊗ I over them)
    and the rest, whose sizes ``points`` each kernel side carries (zipped)."""

    ndim: int
    trace: tuple[int, ...]
    trace_shape: tuple[int, ...]
    points: tuple[int, ...]

    @property
    def width(self) -> int:
        return math.prod(self.trace_shape)

    def flat(self, f, lead: int = 0):
        """``lead dims + an output of y_train's rank`` → ``lead dims + (points, traced)``."""
        nt = len(self.trace)
        f = jnp.moveaxis(f, [lead + a for a in self.trace], list(range(f.ndim - nt, f.ndim)))
        return f.reshape(f.shape[:lead] + (-1, self.width))

    def unflat(self, f, points: tuple[int, ...]):
        """Inverse of `flat` for outputs whose kernel side has shape ``points``."""
        lead = f.shape[:-2]
        f = f.reshape(lead + tuple(points) + self.trace_shape)
        nl, nt = len(lead), len(self.trace)
        return jnp.moveaxis(f, list(range(f.ndim - nt, f.ndim)), [nl + a for a in self.trace])

    def output_shape(self, points: tuple[int, ...]) -> tuple[int, ...]:
        shape = list(points)
        for a, c in zip(self.trace, self.trace_shape):
            shape.insert(a, c)
        return tuple(shape)


def _layout(y, trace_axes) -> _Layout:
    nd = y.ndim
    try:
        axes = tuple(int(a) for a in trace_axes)
    except TypeError as e:
        raise TypeError(f"trace_axes must be a tuple of ints, got {trace_axes!r}") from e
    if any(not -nd <= a < nd for a in axes):
        raise ValueError(
            f"trace_axes={trace_axes!r} is out of range for y_train of shape {y.shape}"
        )
    trace = tuple(sorted({a % nd for a in axes}))  # named twice counts once (neural-tangents)
    points = tuple(y.shape[a] for a in range(nd) if a not in trace)
    return _Layout(nd, trace, tuple(y.shape[a] for a in trace), points)


def _make_2d(k, xp=jnp):
    """A zipped kernel ``(A1, A2, B1, B2, …)`` as the matrix ``(A1·B1·…, A2·B2·…)``."""
    nd = k.ndim
    k = xp.transpose(k, (*range(0, nd, 2), *range(1, nd, 2)))
    return k.reshape(math.prod(k.shape[: nd // 2]), -1)


def _zip(k, points1: tuple[int, ...], points2: tuple[int, ...]):
    """Inverse of `_make_2d` over the last two axes: ``lead + (P1, P2)`` → lead + zipped."""
    lead = k.shape[:-2]
    k = k.reshape(lead + tuple(points1) + tuple(points2))
    nl, n = len(lead), len(points1)
    order = [*range(nl)] + [nl + i + j * n for i in range(n) for j in range(2)]
    return jnp.transpose(k, order)


def _zipped_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for pair in zip(a, b) for d in pair)


def _train_kernel(name: str, raw, lay: _Layout, dtype=None) -> jax.Array:
    """The train-train kernel, checked against ``y_train``'s layout, as a ``(P, P)`` matrix."""
    k = _as_float_array(name, raw, dtype)
    want = _zipped_shape(lay.points, lay.points)
    if k.shape != want:
        hint = (
            "; trace_axes covers every axis of y_train, so the kernel is a scalar (for 1-D "
            "y_train and an (N, N) kernel pass trace_axes=())"
            if not lay.points
            else ""
        )
        raise ValueError(
            f"{name} must have shape {want} (y_train's non-traced axes {lay.points}, zipped; "
            f"trace_axes {lay.trace} absent), got shape {k.shape}{hint}"
        )
    if k.ndim == 2:
        return _check_kernel(name, raw, dtype)
    host = _make_2d(np.asarray(raw), np) if _on_host(raw) else None
    return _check_kernel(name, host if host is not None else _make_2d(k), dtype)


def _cross_kernel(name: str, raw, lay: _Layout, dtype) -> tuple[jax.Array, tuple[int, ...]]:
    """A test-train kernel as a ``(Q, P)`` matrix, and its test side's point shape."""
    k = _as_float_array(name, raw, dtype)
    if k.ndim != 2 * len(lay.points) or k.shape[1::2] != lay.points:
        raise ValueError(
            f"{name} must be zipped (test, train) with train axes {lay.points} at odd "
            f"positions (e.g. (M, {', '.join(map(str, lay.points))})), got shape {k.shape}"
        )
    _check_finite(name, k, raw)
    return _make_2d(k), tuple(k.shape[::2])


def _output(name: str, raw, shape: tuple[int, ...], lay: _Layout, dtype) -> jax.Array:
    """An initial output, broadcast to ``shape``, in flat layout."""
    f = _as_float_array(name, raw, dtype)
    _check_broadcast(name, f, shape)
    _check_finite(name, f, raw)
    return lay.flat(jnp.broadcast_to(f, shape))


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


def _check_outputs_asked(fx_train_0, fx_test_0, k_test_train) -> None:
    if fx_train_0 is None and fx_test_0 is None:
        raise ValueError("fx_train_0 and fx_test_0 are both None: nothing to predict")
    if fx_test_0 is not None and k_test_train is None:
        raise ValueError(
            "fx_test_0 was given without k_test_train: pass k_test_train (test x train) to "
            "predict on the test set"
        )


# ---------------------------------------------------------------------------------------------
# Gradient flow on MSE
# ---------------------------------------------------------------------------------------------


def _training_problem(k_train_train, y_train, trace_axes):
    """``(y, layout, Θ as a (P, P) matrix, dtype)``, checked, in one common dtype."""
    y = _as_float_array("y_train", y_train)
    lay = _layout(y, trace_axes)
    k = _train_kernel("k_train_train", k_train_train, lay)
    dtype = jnp.result_type(k.dtype, y.dtype)
    k, y = k.astype(dtype), y.astype(dtype)
    _check_finite("y_train", y, y_train)
    return y, lay, k, dtype


def gradient_descent_mse(
    k_train_train,
    y_train,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: tuple[int, ...] = (-1,),
) -> Callable:
    r"""Outputs of continuous-time gradient descent on MSE with a fixed kernel, in closed form.

    With ``L = 1/(2|Y|) Σ (f − y)²`` (|Y| = ``y_train.size``) the outputs on the training set
    follow, Jacot et al. (2018), §5, and Lee et al. (2019), §2,

        df_train/dt = −(η/|Y|) Θ (f_train − y),
        df_test/dt  = −(η/|Y|) Θ_test,train (f_train − y),

    with Θ constant (infinite width). Its solution, with ``Θ = V diag(λ) Vᵀ``:

        f_train(t) = y + V e^{−ηλt/|Y|} Vᵀ (f_train(0) − y),
        f_test(t)  = f_test(0) + Θ_test,train V diag((e^{−ηλt/|Y|} − 1)/λ) Vᵀ (f_train(0) − y),

    which at ``t = ∞`` is kernel regression ``f_test(0) + Θ_test,train Θ⁻¹ (y − f_train(0))``.
    The factor ``(e^{−λs} − 1)/λ`` is computed as ``expm1(−λs)/λ`` and tends to ``−s`` at λ = 0.
    Kernels with output axes (``trace_axes`` a strict subset of the outputs' axes) are
    flattened to matrices over (point, output) pairs; the formulas are unchanged.

    Args:
      k_train_train: Θ, zipped over ``y_train``'s non-traced axes: ``(N, N)`` for ``y_train``
        ``(N, K)`` and ``trace_axes=(-1,)``; ``(N, N, K, K)`` with ``trace_axes=()``. Symmetric
        PSD; its eigendecomposition is computed once here; an eigenvalue below
        ``−N·ε·max|λ|`` (beyond roundoff; `indefinite_tolerance`) raises ``ValueError``, since
        the flow diverges along its eigenvector; negative eigenvalues within roundoff count as 0.
      y_train: targets, any shape with the points first.
      learning_rate: η > 0; times are in units of steps, absolute time ``η·t``.
      diag_reg: ridge ≥ 0 added to Θ (see ``diag_reg_absolute_scale``).
      diag_reg_absolute_scale: ``True``: add ``diag_reg·I``; ``False``: ``diag_reg·tr(Θ)/P·I``.
      trace_axes: axes of ``y_train`` over which Θ acts as ``⊗ I`` (absent from the kernel).

    Returns:
      ``predict_fn(t=None, fx_train_0=0., fx_test_0=None, k_test_train=None)``: ``fx_train``
      of shape ``t.shape + y_train.shape``; or ``(fx_train, fx_test)`` when ``fx_test_0`` (the
      test outputs at t = 0, e.g. ``0.``) and ``k_test_train`` (zipped test x train) are given;
      or ``fx_test`` alone with ``fx_train_0=None``. ``t`` is a scalar, an array, or
      ``jnp.inf``; ``t=None`` means ``t=∞``. ``predict_fn`` traces under ``jax.jit``.
    """
    y, lay, k, dtype = _training_problem(k_train_train, y_train, trace_axes)
    y2 = lay.flat(y)
    learning_rate = _check_scalar("learning_rate", learning_rate, allow_zero=False)
    diag_reg = _check_scalar("diag_reg", diag_reg, allow_zero=True)
    evals, evecs = _eigh(k, diag_reg, bool(diag_reg_absolute_scale))
    _check_psd("k_train_train", evals, diag_reg)
    normalization = y.size  # |Y|: neural-tangents' ½·mean over all entries of y_train

    def predict_fn(t=None, fx_train_0=0.0, fx_test_0=None, k_test_train=None):
        _check_outputs_asked(fx_train_0, fx_test_0, k_test_train)
        t = _as_float_array("t", jnp.inf if t is None else t, dtype)
        _check_times(t)
        f0 = _output("fx_train_0", 0.0 if fx_train_0 is None else fx_train_0, y.shape, lay, dtype)
        if fx_test_0 is None:
            return lay.unflat(_flow(evals, evecs, y2, t, learning_rate, normalization, f0),
                              lay.points)  # fmt: skip
        kt, points = _cross_kernel("k_test_train", k_test_train, lay, dtype)
        g0 = _output("fx_test_0", fx_test_0, lay.output_shape(points), lay, dtype)
        tr, te = _flow(evals, evecs, y2, t, learning_rate, normalization, f0, kt, g0)
        te = lay.unflat(te, points)
        return te if fx_train_0 is None else (lay.unflat(tr, lay.points), te)

    return predict_fn


# ---------------------------------------------------------------------------------------------
# Gradient descent on any loss, with or without momentum: an ODE in function space
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ODEState:
    """State of the function-space ODE: outputs and, with momentum, their velocities.

    ``fx_train``/``fx_test``: outputs on the training/test set; ``qx_train``/``qx_test``: the
    auxiliary variables (momentum's velocity), ``None`` without momentum. A pytree.
    """

    fx_train: Any = None
    fx_test: Any = None
    qx_train: Any = None
    qx_test: Any = None


jax.tree_util.register_pytree_node(
    ODEState,
    lambda s: ((s.fx_train, s.fx_test, s.qx_train, s.qx_test), None),
    lambda _, c: ODEState(*c),
)


def gradient_descent(
    loss: Callable,
    k_train_train,
    y_train,
    learning_rate: float = 1.0,
    momentum: float | None = None,
    trace_axes: tuple[int, ...] = (-1,),
) -> Callable:
    r"""Function-space gradient descent (optionally with momentum) on any loss, by an ODE solver.

    For a linearized (infinitely wide) network the outputs move along the kernel, Lee et al.
    (2019), eq. (7):

        df_train/dt = −η Θ ∇_f L(f_train, y),    df_test/dt = −η Θ_test,train ∇_f L(f_train, y),

    with ``L = loss(f_train, y_train)`` differentiated by `jax.grad` and time in steps (absolute
    time ``η·t``). With ``momentum`` μ (heavy ball, v ← μv − η∇, θ ← θ + v), the continuous
    limit in time ``τ = √η·t`` is the second-order system

        df/dτ = q,    dq/dτ = −Θ ∇_f L + ((μ − 1)/√η) q,

    (so η and t are no longer interchangeable). Integrated with `jax.experimental.ode.odeint`
    (adaptive Dormand–Prince, rtol = atol = 1.4e-8). For the MSE loss this is
    `gradient_descent_mse`'s closed form (tested).

    Args:
      loss: ``loss(fx, y_train) -> scalar``; it should treat points and outputs alike.
      k_train_train, y_train, trace_axes: as in `gradient_descent_mse`.
      learning_rate: η > 0.
      momentum: μ in [0, 1), or None for plain gradient descent.

    Returns:
      ``predict_fn(t=None, fx_train_or_state_0=0., fx_test_0=None, k_test_train=None)``:
      outputs at the times ``t`` (any shape, increasing when flattened; ``None`` = ∞, which
      may not converge), shaped as in `gradient_descent_mse`; an `ODEState` (the velocities
      too) when an `ODEState` is passed as the initial state.
    """
    from jax.experimental.ode import odeint

    y, lay, k, dtype = _training_problem(k_train_train, y_train, trace_axes)
    learning_rate = _check_scalar("learning_rate", learning_rate, allow_zero=False)
    if momentum is not None:
        momentum = _check_scalar("momentum", momentum, allow_zero=True)
        if _concrete(momentum) and momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if not callable(loss):
        raise TypeError(f"loss must be a function loss(fx, y_train), got {type(loss).__name__}")
    grad_loss = jax.grad(lambda f2: loss(lay.unflat(f2, lay.points), y))
    time_scale = learning_rate if momentum is None else learning_rate**0.5
    friction = None if momentum is None else (momentum - 1.0) / learning_rate**0.5

    def predict_fn(t=None, fx_train_or_state_0=0.0, fx_test_0=None, k_test_train=None):
        state = fx_train_or_state_0
        as_state = isinstance(state, ODEState)
        if as_state:
            if fx_test_0 is not None:
                raise ValueError("fx_test_0 is part of the ODEState passed: pass fx_test_0=None")
            fx_train_0, fx_test_0 = state.fx_train, state.fx_test
        else:
            fx_train_0 = state
        _check_outputs_asked(fx_train_0, fx_test_0, k_test_train)
        t = _as_float_array("t", jnp.inf if t is None else t, dtype)
        _check_times(t)
        if _concrete(t) and t.size > 1 and np.any(np.diff(np.ravel(t)) <= 0):
            raise ValueError("t must be strictly increasing (flattened) for the ODE solver")
        f0 = _output("fx_train_0", 0.0 if fx_train_0 is None else fx_train_0, y.shape, lay, dtype)
        kt = points = g0 = None
        if fx_test_0 is not None:
            kt, points = _cross_kernel("k_test_train", k_test_train, lay, dtype)
            g0 = _output("fx_test_0", fx_test_0, lay.output_shape(points), lay, dtype)
        q_tr = q_te = None
        if momentum is None:
            if as_state and (state.qx_train is not None or state.qx_test is not None):
                raise ValueError("the ODEState has velocities (qx_*) but momentum is None")
        else:
            q_tr = jnp.zeros_like(f0) if not as_state or state.qx_train is None else _output(
                "qx_train", state.qx_train, y.shape, lay, dtype)  # fmt: skip
            if g0 is not None:
                q_te = jnp.zeros_like(g0) if not as_state or state.qx_test is None else _output(
                    "qx_test", state.qx_test, lay.output_shape(points), lay, dtype)  # fmt: skip

        def rhs(s, _):
            g = grad_loss(s.fx_train)
            d_tr = -(k @ g)
            d_te = None if s.fx_test is None else -(kt @ g)
            if momentum is None:
                return ODEState(d_tr, d_te)
            d_tr = d_tr + friction * s.qx_train
            d_te = None if d_te is None else d_te + friction * s.qx_test
            return ODEState(s.qx_train, s.qx_test, d_tr, d_te)

        times = (t * time_scale).reshape(-1)
        # odeint's first time is the initial state's; prepend 0 (or a hair before it when t
        # starts at 0, since times must increase strictly) and drop it from the answer
        t0 = jnp.where(times[0] == 0, -jnp.finfo(dtype).tiny, 0.0).astype(dtype)
        out = odeint(rhs, ODEState(f0, g0, q_tr, q_te), jnp.concatenate([t0[None], times]))
        out = jax.tree_util.tree_map(lambda a: a[1:].reshape(t.shape + a.shape[1:]), out)
        tr = lay.unflat(out.fx_train, lay.points)
        te = None if g0 is None else lay.unflat(out.fx_test, points)
        if as_state:
            return ODEState(
                tr, te,
                None if out.qx_train is None else lay.unflat(out.qx_train, lay.points),
                None if out.qx_test is None else lay.unflat(out.qx_test, points),
            )  # fmt: skip
        if te is None:
            return tr
        return te if fx_train_0 is None else (tr, te)

    return predict_fn


def max_learning_rate(ntk_train_train, y_train_size: int | None = None, momentum=0.0,
                      eps: float = 1e-12) -> float:  # fmt: skip
    r"""The largest learning rate at which gradient descent on MSE converges (infinite width).

    Discrete steps on ``L = 1/(2|Y|)‖f − y‖²`` give ``f_{k+1} − y = (I − (η/|Y|) Θ)(f_k − y)``,
    a contraction iff ``η λ_max(Θ)/|Y| < 2``; with heavy-ball momentum μ the bound is
    ``2(1 + μ)|Y|/λ_max`` (Goh, "Why momentum really works", 2017). Returns
    ``2(1 + μ)|Y| / (λ_max + eps)``.

    Args:
      ntk_train_train: Θ on the training set, ``(N, N)`` or zipped ``(N, N, K, K, …)``.
      y_train_size: |Y| = ``y_train.size``; default: the flattened kernel's size (i.e.
        ``trace_axes=()``).
      momentum: μ ≥ 0.
      eps: added to λ_max, against a zero kernel.
    """
    k = _as_float_array("ntk_train_train", ntk_train_train)
    if k.ndim % 2 or k.ndim == 0:
        raise ValueError(f"ntk_train_train must be zipped (N, N, ...), got shape {k.shape}")
    k = _check_kernel("ntk_train_train", _make_2d(k))
    momentum = _check_scalar("momentum", momentum, allow_zero=True)
    factor = k.shape[0] if y_train_size is None else int(y_train_size)
    if factor <= 0:
        raise ValueError(f"y_train_size must be positive, got {y_train_size!r}")
    if jax.default_backend() == "cpu" or not isinstance(k, jax.Array):
        m = np.asarray(k, dtype=np.float64 if k.dtype == np.float64 else np.float32)
        n = m.shape[0]
        lam = scipy.linalg.eigh(m, eigvals_only=True, subset_by_index=[n - 1, n - 1])[-1]
    else:
        lam = jnp.linalg.eigvalsh(k)[-1]
    return 2 * (1 + momentum) * factor / (float(lam) + eps)


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
    t = t[..., None]
    decay = jnp.exp(
        jnp.where(_lead(positive, t.ndim - 1), -_lead(rates_safe, t.ndim - 1) * t, 0.0)
    )  # T + (N,)
    proj_0 = evecs.T @ r0  # (N, K)
    projection_t = decay[..., None] * _lead(proj_0, t.ndim - 1)
    return PrincipalComponentDecay(evals, evecs, rates, proj_0, decay, projection_t)


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


# ---------------------------------------------------------------------------------------------
# Gaussian posteriors and infinite ensembles
# ---------------------------------------------------------------------------------------------


class Gaussian(NamedTuple):
    """Mean (the outputs' shape) and covariance (the kernel's layout) of Gaussian outputs."""

    mean: jax.Array
    covariance: jax.Array | None


_GETS = ("nngp", "ntk", "ntkgp")


def _parse_get(get, allowed=_GETS) -> tuple[bool, tuple[str, ...]]:
    """``(single, names)``: ``get=None`` is both kernels, returned as a named tuple."""
    if get is None:
        return False, ("nngp", "ntk")
    single = isinstance(get, str)
    try:
        names = (get,) if single else tuple(get)
        names = tuple(g.lower() for g in names)
    except (TypeError, AttributeError) as e:
        hint = (
            " (an array: the returned predict_fn is neural-tangents' predict_fn(get=None, "
            "k_test_train=None, k_test_test=None); pass the kernels by keyword)"
            if isinstance(get, np.ndarray | jax.Array)
            else ""
        )
        raise TypeError(
            f"get must be a string or a tuple of strings, got {type(get).__name__}{hint}"
        ) from e
    if not names or len(set(names)) < len(names) or any(g not in allowed for g in names):
        raise ValueError(f"get must be one of {allowed} or a tuple of distinct ones, got {get!r}")
    return single, names


def _pack(single: bool, names: tuple[str, ...], out: dict):
    if single:
        return out[names[0]]
    return namedtuple("Gaussians", names)(*(out[g] for g in names))


def _is_array(k) -> bool:
    return isinstance(k, np.ndarray | jax.Array | list | float | int)


def _attr(name: str, k, g: str):
    if _is_array(k):
        return k
    v = getattr(k, g, None)
    if v is None:
        raise ValueError(
            f"{name} has no {g!r} kernel (an array or an object with .nngp/.ntk is expected; "
            f"compute it with get containing {g!r})"
        )
    return v


@jax.jit
def _cholesky_solve(chol, b):
    return _cho_solve(chol, b)


def gp_inference(
    k_train_train,
    y_train,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: tuple[int, ...] = (-1,),
) -> Callable:
    r"""Posteriors of the NNGP, the NTK ensemble, and the NTK-GP given noiseless targets.

    With K the NNGP and Θ the NTK (train X, test *), ``σ²`` = ``diag_reg`` (absolute) or
    ``diag_reg·tr/P`` (the default) added to the train-train kernel:

    - ``"nngp"``: the exact posterior of an infinitely wide Bayesian network, Lee et al.
      (2018): mean ``K_*X (K + σ²)⁻¹ y``, covariance ``K_** − K_*X (K + σ²)⁻¹ K_X*``
      (Rasmussen & Williams, §2.2);
    - ``"ntk"``: an infinite ensemble of infinitely wide networks trained to convergence by
      gradient flow on MSE, Lee et al. (2019), eq. (16) at t = ∞ — not a GP posterior:
      mean ``Θ_*X Θ⁻¹ y``, covariance
      ``K_** + Θ_*X Θ⁻¹ K Θ⁻¹ Θ_X* − (Θ_*X Θ⁻¹ K_X* + K_*X Θ⁻¹ Θ_X*)``;
    - ``"ntkgp"``: the posterior of the GP whose covariance is Θ, He et al. (2020):
      ``Θ_*X Θ⁻¹ y`` and ``Θ_** − Θ_*X Θ⁻¹ Θ_X*``.

    Each train-train kernel is factorized once (Cholesky), when first needed.

    Args:
      k_train_train: an array (used for every ``get``) or an object with ``.nngp``/``.ntk``
        (a `Kernel`, or the named tuple ``kernel_fn(x, None, ("nngp", "ntk"))`` returns),
        zipped over ``y_train``'s non-traced axes as in `gradient_descent_mse`; positive
        definite after ``diag_reg``.
      y_train, diag_reg, diag_reg_absolute_scale, trace_axes: as in `gradient_descent_mse`.

    Returns:
      ``predict_fn(get=None, k_test_train=None, k_test_test=None)``: for each ``get`` in
      ``"nngp"``, ``"ntk"``, ``"ntkgp"`` (a string, a tuple; None = ``("nngp", "ntk")``) the
      test mean, or `Gaussian` ``(mean, covariance)`` when ``k_test_test`` (NNGP test-test;
      NTK for ``"ntkgp"``) is given; a named tuple over ``get`` unless ``get`` is a string.
      ``k_test_train=None`` gives the training set's outputs ``y_train`` (covariance 0).
    """
    y = _as_float_array("y_train", y_train)
    lay = _layout(y, trace_axes)
    diag_reg = _check_scalar("diag_reg", diag_reg, allow_zero=True)
    _check_finite("y_train", y, y_train)
    cache: dict[str, tuple] = {}

    def factor(g: str):
        if g not in cache:
            name = "k_train_train" if _is_array(k_train_train) else f"k_train_train.{g}"
            k = _train_kernel(name, _attr("k_train_train", k_train_train, g), lay)
            chol = _cholesky(name, k, diag_reg, diag_reg_absolute_scale)
            cache[g] = (k, chol, _cholesky_solve(chol, lay.flat(y.astype(k.dtype))))
        return cache[g]

    def predict_fn(get=None, k_test_train=None, k_test_test=None):
        single, names = _parse_get(get)
        out = {}
        for g in names:
            kind = "ntk" if g == "ntkgp" else g
            k, chol, alpha = factor(kind)
            if k_test_train is None:
                mean = y.astype(k.dtype)
                if k_test_test is not None:
                    zipped = _zipped_shape(lay.points, lay.points)
                    out[g] = Gaussian(mean, jnp.zeros(zipped, k.dtype))
                else:
                    out[g] = mean
                continue
            kt, points = _cross_kernel(
                f"k_test_train.{kind}", _attr("k_test_train", k_test_train, kind), lay, k.dtype
            )
            mean = lay.unflat(kt @ alpha, points)
            if k_test_test is None:
                out[g] = mean
                continue
            init = "ntk" if g == "ntkgp" else "nngp"
            ktt = _as_float_array("k_test_test", _attr("k_test_test", k_test_test, init), k.dtype)
            if ktt.shape != _zipped_shape(points, points):
                raise ValueError(
                    f"k_test_test must have shape {_zipped_shape(points, points)} (test x "
                    f"test, zipped), got {ktt.shape}"
                )
            ktt = _make_2d(ktt)
            if g in ("nngp", "ntkgp"):
                cov = ktt - kt @ _cholesky_solve(chol, kt.T)
            else:
                if _is_array(k_train_train) or _is_array(k_test_train):
                    raise ValueError(
                        "the 'ntk' posterior covariance needs both NNGP and NTK kernels: pass "
                        "k_train_train and k_test_train with .nngp and .ntk (e.g. "
                        "kernel_fn(x, None, ('nngp', 'ntk')))"
                    )
                kxx = _train_kernel(
                    "k_train_train.nngp", _attr("k_train_train", k_train_train, "nngp"), lay,
                    k.dtype,
                )  # fmt: skip
                kt_nngp, _ = _cross_kernel(
                    "k_test_train.nngp", _attr("k_test_train", k_test_train, "nngp"), lay,
                    k.dtype,
                )  # fmt: skip
                cov = _ntk_cov(chol, kt, kxx, kt_nngp, ktt)
            out[g] = Gaussian(mean, _zip(cov, points, points))
        return _pack(single, names, out)

    return predict_fn


@jax.jit
def _ntk_cov(chol, theta_t, kxx, k_t, k_tt):
    a = _cho_solve(chol, theta_t.T).T  # (M, N): Θ_*x Θ⁻¹
    cross = a @ k_t.T  # Θ_*x Θ⁻¹ K_x*
    return k_tt + a @ kxx @ a.T - (cross + cross.T)


def _cholesky(name: str, k, diag_reg, diag_reg_absolute_scale):
    chol = _cholesky_factor(k, diag_reg, bool(diag_reg_absolute_scale))
    if not _concrete(chol):
        return chol
    with jax.ensure_compile_time_eval():  # now, even inside a caller's jax.jit
        finite = bool(_all_finite(chol))
    if not finite:
        raise ValueError(
            f"{name} (+ diag_reg) is not positive definite: Cholesky failed; increase diag_reg"
        )
    return chol


@jax.jit
def _ensemble_mean(evals, evecs, y2, s, k_test=None):
    """``(1 − e^{−λs}) Vᵀy`` mapped to the training set (V·) or the test set (K_*X V diag(1/λ)·):
    the ensemble mean at scaled times ``s`` (shape T), ``T + (P, W)`` or ``T + (Q, W)``."""
    zero = jnp.zeros_like(y2)
    if k_test is None:
        return _flow(evals, evecs, y2, s, 1.0, 1.0, zero)
    return _flow(evals, evecs, y2, s, 1.0, 1.0, zero, k_test, jnp.zeros((k_test.shape[0],) +
                 y2.shape[1:], y2.dtype))[1]  # fmt: skip


@partial(jax.jit, static_argnames=("kind", "chunk"))
def _ensemble_cov(evals, evecs, s, kxx, k_test, k_test_nngp, k_tt, *, kind, chunk):
    """Output covariance of the infinite ensemble at scaled times ``s``, Lee et al. (2019),
    eqs. (15)–(16), in the eigenbasis of the kernel being flowed (Θ = V diag(λ) Vᵀ).

    Test set, with ``A = Θ_*X V`` (Q × P), ``g = (1 − e^{−λs})/λ``, ``C = Vᵀ K V`` and
    ``W = Vᵀ K_X*``, all formed once per call:
    ``K_** + (A g) C (A g)ᵀ − ((A g) W + h.c.)`` ("ntk"), ``K_** − A g(2s) Aᵀ`` ("nngp": Θ = K);
    each time then costs Q·P² + 2·Q²·P operations. Times go ``chunk`` at a time (`lax.map`
    with ``batch_size``), so memory is ``chunk`` (Q, P) blocks."""
    lam = jnp.maximum(evals, 0.0)
    if k_test is None:  # the training set

        def train(si):
            decay = jnp.exp(-lam * si)  # e^{−λs}; 0 at s = ∞ for λ > 0, 1 for λ = 0
            if kind == "nngp":
                return (evecs * (lam * decay**2)[None]) @ evecs.T  # K e^{−2Ks}
            e = (evecs * decay[None]) @ evecs.T
            return e @ kxx @ e  # e^{−Θs} K e^{−Θs}

        out = jax.lax.map(train, s.reshape(-1), batch_size=chunk)
        return out.reshape(s.shape + out.shape[1:])
    a = k_test @ evecs  # (Q, P)
    if kind == "nngp":

        def nngp(si):
            _, gain2 = _flow_factors(evals, 2 * si, 1.0)  # −(1 − e^{−2λs})/λ
            return k_tt + (a * gain2[None]) @ a.T  # K_** − K_*X K⁻¹(I − e^{−2Ks}) K_X*

        out = jax.lax.map(nngp, s.reshape(-1), batch_size=chunk)
        return out.reshape(s.shape + out.shape[1:])
    c = evecs.T @ kxx @ evecs  # Vᵀ K V
    w = evecs.T @ k_test_nngp.T  # Vᵀ K_X*

    def ntk(si):
        _, gain = _flow_factors(evals, si, 1.0)  # (e^{−λs} − 1)/λ
        b = a * -gain[None]  # Θ_*X Θ⁻¹(I − e^{−Θs}) V, (Q, P)
        cross = b @ w
        return k_tt + b @ c @ b.T - (cross + cross.T)

    out = jax.lax.map(ntk, s.reshape(-1), batch_size=chunk)
    return out.reshape(s.shape + out.shape[1:])


def _time_chunk(n_times: int, q: int, p: int, itemsize: int) -> int:
    """Times per vectorized step: their (Q, P) blocks within 2**28 bytes."""
    return int(max(1, min(n_times, 2**28 // max(1, 2 * q * p * itemsize))))


def gradient_descent_mse_ensemble(
    kernel_fn: Callable,
    x_train,
    y_train,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: tuple[int, ...] = (-1,),
    **kernel_fn_train_train_kwargs,
) -> Callable:
    r"""Outputs of an infinite ensemble of infinitely wide networks trained by gradient flow on MSE.

    Marginalizing the initialization (outputs at t = 0 are the NNGP K), Lee et al. (2019),
    eqs. (15)–(16), with ``s = η t/|Y|`` and ``E_s = I − e^{−Θs}``:

        mean(x_*) = Θ_*X Θ⁻¹ E_s y,
        cov(x_*, x_*′) = K_** + Θ_*X Θ⁻¹ E_s K E_s Θ⁻¹ Θ_X* − (Θ_*X Θ⁻¹ E_s K_X* + h.c.),

    for ``get="ntk"``; ``get="nngp"`` flows K itself (training only the readout, Θ = K), where
    the covariance is ``K_** − K_*X K⁻¹(I − e^{−2Ks}) K_X*``. On the training set
    (``x_test=None``) the mean is ``E_s y`` and the covariance ``e^{−Θs} K e^{−Θs}``. Each
    kernel's train-train matrix is computed and eigendecomposed once and shared by every
    time, test set and call; the test covariance is built from ``K_*X V`` (one product per
    call), so T times cost T·Q²·P instead of T·Q·P².

    Args:
      kernel_fn: ``kernel_fn(x1, x2, get, **kwargs)`` returning the kernel for ``get`` (a
        string) or an object with ``.nngp``/``.ntk`` (a tuple): a `stax` kernel function, a
        Monte Carlo or empirical one.
      x_train, y_train: training inputs and targets.
      learning_rate, diag_reg, diag_reg_absolute_scale, trace_axes: as in
        `gradient_descent_mse`.
      **kernel_fn_train_train_kwargs: keywords for ``kernel_fn`` on the training set; for the
        test-train kernel a keyword whose train and test values are both pairs of arrays
        becomes ``(test value[0], train value[0])``, other values must agree.

    Returns:
      ``predict_fn(t=None, x_test=None, get=None, compute_cov=False, **test_kwargs)``: the
      mean (``t.shape + outputs``) or `Gaussian` (mean, covariance ``t.shape + zipped``)
      per ``get`` (``"nngp"``, ``"ntk"``, a tuple; None = both, a named tuple). ``t=None`` is
      ``t = ∞``; ``x_test=None`` gives the training set.
    """
    y = _as_float_array("y_train", y_train)
    lay = _layout(y, trace_axes)
    _check_finite("y_train", y, y_train)
    learning_rate = _check_scalar("learning_rate", learning_rate, allow_zero=False)
    diag_reg = _check_scalar("diag_reg", diag_reg, allow_zero=True)
    if not callable(kernel_fn):
        raise TypeError(f"kernel_fn must be a kernel function, got {type(kernel_fn).__name__}")
    normalization = y.size
    train: dict[str, jax.Array] = {}
    eig: dict[str, tuple] = {}

    def train_kernels(names: tuple[str, ...]):
        missing = tuple(g for g in names if g not in train)
        if missing:
            got = kernel_fn(x_train, None, missing[0] if len(missing) == 1 else missing,
                            **kernel_fn_train_train_kwargs)  # fmt: skip
            for g in missing:
                raw = got if len(missing) == 1 else _attr("kernel_fn(x_train)", got, g)
                train[g] = _train_kernel(f"kernel_fn(x_train, None, {g!r})", raw, lay)
        return {g: train[g] for g in names}

    def eigenspace(g: str):
        if g not in eig:
            k = train_kernels((g,))[g]
            evals, evecs = _eigh(k, diag_reg, bool(diag_reg_absolute_scale))
            _check_psd(f"kernel_fn(x_train, None, {g!r})", evals, diag_reg)
            eig[g] = (evals, evecs)
        return eig[g]

    def test_kwargs(tt_kwargs: dict) -> tuple[dict, dict]:
        td, tt = dict(kernel_fn_train_train_kwargs), dict(kernel_fn_train_train_kwargs)
        for key, v_tt in tt_kwargs.items():
            if key not in kernel_fn_train_train_kwargs:
                td[key] = tt[key] = v_tt
                continue
            v_dd = kernel_fn_train_train_kwargs[key]
            leaves = jax.tree_util.tree_leaves((v_dd, v_tt))
            if leaves and all(isinstance(v, np.ndarray | jax.Array) for v in leaves):
                pair = isinstance(v_dd, tuple) and isinstance(v_tt, tuple)
                td[key] = (v_tt[0], v_dd[0]) if pair and len(v_dd) == len(v_tt) == 2 else v_tt
            elif v_dd != v_tt:
                raise ValueError(
                    f"keyword {key!r} of kernel_fn is {v_dd!r} on the training set but "
                    f"{v_tt!r} on the test set; a kernel between them is not defined"
                )
            else:
                td[key] = v_tt
            tt[key] = v_tt
        return td, tt

    def predict_fn(t=None, x_test=None, get=None, compute_cov=False, **kernel_fn_test_test_kwargs):
        single, names = _parse_get(get, ("nngp", "ntk"))
        need = tuple(g for g in ("nngp", "ntk") if g in names or (g == "nngp" and compute_cov))
        kd = train_kernels(need)
        dtype = kd[need[0]].dtype
        t_arr = _as_float_array("t", jnp.inf if t is None else t, dtype)
        _check_times(t_arr)
        s = t_arr * (learning_rate / normalization)
        y2 = lay.flat(y.astype(dtype))
        kt = ktt = None
        points = lay.points
        if x_test is not None:
            td, tt = test_kwargs(kernel_fn_test_test_kwargs)
            got = kernel_fn(x_test, x_train, need[0] if len(need) == 1 else need, **td)
            kt = {}
            for g in need:
                raw = got if len(need) == 1 else _attr("kernel_fn(x_test, x_train)", got, g)
                kt[g], points = _cross_kernel(f"kernel_fn(x_test, x_train, {g!r})", raw, lay,
                                              dtype)  # fmt: skip
            if compute_cov:
                ktt = _as_float_array("kernel_fn(x_test, None, 'nngp')",
                                      kernel_fn(x_test, None, "nngp", **tt), dtype)  # fmt: skip
                ktt = _make_2d(ktt)
        out = {}
        for g in names:
            evals, evecs = eigenspace(g)
            mean = _ensemble_mean(evals, evecs, y2, s, None if kt is None else kt[g])
            mean = lay.unflat(mean, points)
            if not compute_cov:
                out[g] = mean
                continue
            q = evecs.shape[0] if kt is None else kt[g].shape[0]
            chunk = _time_chunk(max(1, s.size), q, evecs.shape[0], jnp.dtype(dtype).itemsize)
            cov = _ensemble_cov(
                evals, evecs, s, kd["nngp"], None if kt is None else kt[g],
                None if kt is None else kt["nngp"], ktt, kind=g, chunk=chunk,
            )  # fmt: skip
            out[g] = Gaussian(mean, _zip(cov, points, points))
        return _pack(single, names, out)

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

    This is not a GP posterior (unless Θ = K); it is ``gp_inference(..., get="ntk")`` with
    the kernels passed separately. ``diag_reg`` regularizes Θ as in `gradient_descent_mse`.
    Shapes: train-train ``(N, N)``, test-train ``(M, N)``, test-test ``(M, M)``, y ``(N, K)``
    or ``(N,)``.
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
    mean = theta_t @ _cholesky_solve(chol, y)
    cov = _ntk_cov(chol, theta_t, kxx, k_t, k_tt)
    return Gaussian(mean.reshape((m,) + tuple(jnp.shape(y_train)[1:])), cov)
