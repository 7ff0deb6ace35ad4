"""neural-tangents' `predict` API, run as one script against both libraries.

The script below is written against neural-tangents' public API (``nt.predict``, ``nt.stax``).
`reference/nt_script.py` runs it with ``nt = neural_tangents`` 0.6.5 (the oracle environment);
this file runs the same text with ``nt = theory.kernels``. Equal outputs mean a
neural-tangents script that uses these functions runs unchanged after the import change.

Tolerance: float64; both libraries eigendecompose or factor the same kernels with different
LAPACK builds (roundoff ~1e-13 relative) and our infinite time uses the eigendecomposition
where neural-tangents uses a Cholesky solve: with ``diag_reg = 1e-3`` (condition number
≲ 1e4 here) the two differ by ≲ 1e-12·cond ≈ 1e-8 of the largest entry, so RTOL = 1e-7.
The momentum/cross-entropy ODE is integrated by each library's adaptive solver (rtol 1.4e-8):
they agree to that tolerance, so ODE_RTOL = 1e-6.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import theory.kernels as ours
from theory.kernels import predict

RTOL, ODE_RTOL = 1e-7, 1e-6

SCRIPT = """
def run(nt, a):
    stax = nt.stax
    _, _, kernel_fn = stax.serial(
        stax.Dense(32, W_std=1.5, b_std=0.1), stax.Erf(), stax.Dense(1, W_std=1.5, b_std=0.1)
    )
    xs, ys, xt, t = a["x_train"], a["y_train"], a["x_test"], a["t"]
    out = {}
    ens = nt.predict.gradient_descent_mse_ensemble(kernel_fn, xs, ys, learning_rate=0.7,
                                                   diag_reg=1e-3)
    for g in ("nngp", "ntk"):
        out["mean_" + g] = ens(t, xt, g)
        out["cov_" + g] = ens(t, xt, g, compute_cov=True).covariance
        tr = ens(t, None, g, compute_cov=True)
        out["train_mean_" + g], out["train_cov_" + g] = tr.mean, tr.covariance
        inf = ens(None, xt, g, compute_cov=True)
        out["inf_mean_" + g], out["inf_cov_" + g] = inf.mean, inf.covariance
    both = ens(t[-1], xt, ("ntk", "nngp"))
    out["both_ntk"], out["both_nngp"] = both.ntk, both.nngp
    k_dd = kernel_fn(xs, None, ("nngp", "ntk"))
    k_td = kernel_fn(xt, xs, ("nngp", "ntk"))
    k_tt = kernel_fn(xt, None, ("nngp", "ntk"))
    gp = nt.predict.gp_inference(k_dd, ys, diag_reg=1e-3)
    post = gp(("nngp", "ntk", "ntkgp"), k_td, k_tt)
    for g in ("nngp", "ntk", "ntkgp"):
        out["gp_mean_" + g], out["gp_cov_" + g] = getattr(post, g)
    out["gp_means"] = gp("ntk", k_td)
    # kernels with output axes: y (N, 2, 3) with trace_axes=(1,) and a (N, N, 3, 3) kernel
    k4 = a["k4"]
    fn = nt.predict.gradient_descent_mse(k4, a["y3"], 2.0, 1e-3, trace_axes=(1,))
    out["axes_train"], out["axes_test"] = fn(t, a["f3"], a["g3"], a["k4_test"])
    out["axes_test_only"] = fn(t, None, a["g3"], a["k4_test"])
    out["axes_inf"] = fn(None, a["f3"], a["g3"], a["k4_test"])[1]
    gp4 = nt.predict.gp_inference(k4, a["y3"], 1e-3, trace_axes=(1,))
    out["axes_gp_mean"], out["axes_gp_cov"] = gp4("nngp", a["k4_test"], a["k4_tt"])
    # gradient descent with momentum on cross-entropy (an ODE)
    def xent(fx, y):
        return -jnp.mean(jax.nn.log_softmax(fx) * y)
    gd = nt.predict.gradient_descent(xent, k_dd.ntk, a["y_cls"], 0.5, momentum=0.9)
    out["ode_train"], out["ode_test"] = gd(a["t_ode"], a["f0"], a["g0"], k_td.ntk)
    mse = nt.predict.gradient_descent(lambda fx, y: 0.5 * jnp.mean((fx - y) ** 2), k_dd.ntk, ys)
    out["ode_mse"] = mse(a["t_ode"], a["f0"][:, :1] * 0 + ys * 0.3)
    return out
"""


def _arrays():
    rng = np.random.default_rng(20261203)
    n, m = 12, 5
    a = {
        "x_train": rng.standard_normal((n, 4)),
        "x_test": rng.standard_normal((m, 4)),
        "y_train": rng.standard_normal((n, 2)),
        "t": np.array([0.0, 0.5, 3.0, 40.0]),
        "t_ode": np.array([0.5, 2.0, 6.0]),
        "y_cls": np.eye(3)[rng.integers(0, 3, n)],
        "f0": 0.3 * rng.standard_normal((n, 3)),
        "g0": 0.3 * rng.standard_normal((m, 3)),
    }
    # A joint PSD kernel over (points, 3 outputs) of train ∪ test, zipped as (N, N, 3, 3)
    b = rng.standard_normal(((n + m) * 3, 60))
    joint = (b @ b.T / 60).reshape(n + m, 3, n + m, 3).transpose(0, 2, 1, 3)
    a["k4"], a["k4_test"], a["k4_tt"] = joint[:n, :n], joint[n:, :n], joint[n:, n:]
    a["y3"] = rng.standard_normal((n, 2, 3))
    a["f3"], a["g3"] = rng.standard_normal((n, 2, 3)), rng.standard_normal((m, 2, 3))
    return a


# slow: 32 s (the momentum ODE and every ensemble layout compile); the default suite keeps the
# independent closed-form checks below (float64 expm, the stability edge, the MSE ODE)
@pytest.mark.slow
def test_predict_script_runs_unchanged_and_agrees_with_neural_tangents(x64, nt_script):
    nt_script(SCRIPT, _arrays(), lambda name: ODE_RTOL if name.startswith("ode") else RTOL)


def test_ensemble_is_the_closed_form_in_float64(x64):
    """The ensemble mean and covariance against Lee et al. (2019) eqs. (15)-(16) written with
    dense matrix functions (scipy.linalg.expm) instead of an eigendecomposition."""
    from scipy.linalg import expm

    from theory.kernels import stax

    rng = np.random.default_rng(3)
    xs, xt = rng.standard_normal((9, 3)), rng.standard_normal((4, 3))
    y = rng.standard_normal((9, 2))
    _, _, kernel_fn = stax.serial(stax.Dense(16), stax.Relu(), stax.Dense(1))
    k = kernel_fn(np.concatenate([xs, xt]), None, ("nngp", "ntk"))
    nngp = np.asarray(k.nngp)
    kxx, ktx, ktt = nngp[:9, :9], nngp[9:, :9], nngp[9:, 9:]
    th, th_t = np.asarray(k.ntk)[:9, :9], np.asarray(k.ntk)[9:, :9]
    lr, t = 0.8, 5.0
    s = lr * t / y.size
    e = np.eye(9) - expm(-th * s)
    a = th_t @ np.linalg.solve(th, e)  # Θ_*X Θ⁻¹ (I − e^{−Θs})
    want_mean = a @ y
    want_cov = ktt + a @ kxx @ a.T - (a @ ktx.T + ktx @ a.T)
    got = predict.gradient_descent_mse_ensemble(kernel_fn, xs, y, lr)(t, xt, "ntk", True)
    np.testing.assert_allclose(got.mean, want_mean, rtol=1e-9, atol=1e-9 * np.abs(want_mean).max())
    np.testing.assert_allclose(
        got.covariance, want_cov, rtol=1e-9, atol=1e-9 * np.abs(want_cov).max()
    )
    # the NNGP flow: K_** − K_*X K⁻¹(I − e^{−2Ks}) K_X*
    want_nngp = ktt - ktx @ np.linalg.solve(kxx, np.eye(9) - expm(-2 * kxx * s)) @ ktx.T
    got = predict.gradient_descent_mse_ensemble(kernel_fn, xs, y, lr)(t, xt, "nngp", True)
    np.testing.assert_allclose(got.covariance, want_nngp, rtol=1e-9,
                               atol=1e-9 * np.abs(want_nngp).max())  # fmt: skip
    # the training set: e^{−Θs} K e^{−Θs}
    tr = predict.gradient_descent_mse_ensemble(kernel_fn, xs, y, lr)(t, None, "ntk", True)
    want_tr = expm(-th * s) @ kxx @ expm(-th * s)
    np.testing.assert_allclose(tr.covariance, want_tr, rtol=1e-9, atol=1e-9 * np.abs(want_tr).max())


def test_max_learning_rate_is_the_stability_edge_of_discrete_gradient_descent(x64):
    """Discrete steps f ← f − (η/|Y|) Θ (f − y) converge just below max_learning_rate and
    diverge just above it."""
    rng = np.random.default_rng(4)
    b = rng.standard_normal((8, 8))
    th = b @ b.T
    y = rng.standard_normal((8, 2))
    lr = predict.max_learning_rate(th, y.size)
    for factor, converges in ((0.98, True), (1.02, False)):
        f = np.zeros_like(y)
        step = factor * lr / y.size
        for _ in range(3000):
            f = f - step * th @ (f - y)
        assert (np.abs(f - y).max() < 1e-6) == converges, factor


def test_gradient_descent_on_mse_is_the_closed_form(x64):
    """The ODE route (any loss) on MSE = `gradient_descent_mse`'s closed form, to the solver's
    tolerance (rtol 1.4e-8), train and test, 1-output and (N, K) targets."""
    rng = np.random.default_rng(5)
    b = rng.standard_normal((10, 30))
    joint = b @ b.T / 30
    k, kt = joint[:7, :7], joint[7:, :7]
    y = rng.standard_normal((7, 3))
    f0, g0 = rng.standard_normal((7, 3)), rng.standard_normal((3, 3))
    times = np.array([0.0, 1.0, 10.0, 50.0])
    mse = predict.gradient_descent(lambda f, yy: 0.5 * jnp.mean((f - yy) ** 2), k, y, 2.0)
    got_tr, got_te = mse(times, f0, g0, kt)
    want_tr, want_te = predict.gradient_descent_mse(k, y, 2.0)(times, f0, g0, kt)
    np.testing.assert_allclose(got_tr, want_tr, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got_te, want_te, rtol=1e-6, atol=1e-6)
    state = mse(times, predict.ODEState(f0, g0), None, kt)
    assert isinstance(state, predict.ODEState) and state.qx_train is None
    np.testing.assert_allclose(state.fx_test, want_te, rtol=1e-6, atol=1e-6)


def _bad_calls():
    k, y = np.eye(3), np.ones((3, 2))
    ens = predict.gradient_descent_mse_ensemble
    _, _, kernel_fn = ours.stax.serial(ours.stax.Dense(4), ours.stax.Relu())
    x = np.ones((3, 2))
    return [
        (lambda: predict.gradient_descent_mse(k, y)(1.0, None, None), "nothing to predict"),
        (lambda: predict.gradient_descent_mse(k, y, trace_axes=(0, 1)), "trace_axes"),
        (lambda: predict.gradient_descent_mse(k, y, trace_axes=(2,)), "trace_axes"),
        (
            lambda: predict.gradient_descent_mse(np.eye(3), np.ones((3, 2, 2)), trace_axes=(1,)),
            r"k_train_train must have shape \(3, 3, 2, 2\)",
        ),  # fmt: skip
        (lambda: predict.gp_inference(k, y)("nngp", k, np.eye(3)[None]), "k_test_test"),
        (lambda: predict.gp_inference(k, y)("ntk", k, k), "needs both NNGP and NTK"),
        (lambda: predict.gp_inference(k, y)("nngx", k), "get must be"),
        (lambda: ens(kernel_fn, x, y)(1.0, x, "ntkgp"), "get must be"),
        (lambda: ens(kernel_fn, x, y, learning_rate=0.0), "learning_rate"),
        (lambda: ens(kernel_fn, x, y)(-1.0, x), "t must be"),
        (lambda: predict.gradient_descent(lambda f, yy: 0.0, k, y, momentum=1.5), "momentum"),
        (lambda: predict.gradient_descent(lambda f, yy: 0.0, k, y)([2.0, 1.0]), "increasing"),
        (lambda: predict.max_learning_rate(np.ones(3)), "ntk_train_train"),
    ]


@pytest.mark.parametrize("index", range(len(_bad_calls())))
def test_bad_input_raises_naming_the_argument(index):
    call, match = _bad_calls()[index]
    with pytest.raises(ValueError, match=match):
        call()


def test_an_array_passed_as_get_explains_the_calling_convention():
    with pytest.raises(TypeError, match="pass the kernels by keyword"):
        predict.gp_inference(np.eye(3), np.ones((3, 1)))(np.eye(3))
