"""Gradient flow and GP predictions against neural-tangents 0.6.5, an ODE solver, closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import theory.kernels.predict as predict

RTOL = 1e-8  # float64 agreement with neural-tangents and with the ODE solver (stated in the issue)
TIMES = np.array([0.0, 0.37, 3.0, 40.0, np.inf])
N, M = 6, 3  # one size throughout, so compiled functions are reused across tests


def joint_kernel(rng, n_train, n_test, rank=None):
    """A random PSD kernel on train ∪ test: (train-train, test-train, test-test)."""
    d = n_train + n_test + 2 if rank is None else rank
    a = rng.standard_normal((n_train + n_test, d))
    k = a @ a.T / d
    return k[:n_train, :n_train], k[n_train:, :n_train], k[n_train:, n_train:]


def assert_close(got, want, rtol=RTOL):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.max(np.abs(want)))


def ode_solution(k, kt, y, f0, g0, lr, times):
    """Integrate df/dt = −(η/|Y|) K (f − y), dg/dt = −(η/|Y|) K_*x (f − y) in float64 (RK45)."""
    n, m, c = f0.shape[0], g0.shape[0], y.shape[1]

    def rhs(_, z):
        r = z[: n * c].reshape(n, c) - y
        return -(lr / y.size) * np.concatenate([(k @ r).ravel(), (kt @ r).ravel()])

    z0 = np.concatenate([f0.ravel(), g0.ravel()])
    sol = solve_ivp(rhs, (0, times[-1]), z0, t_eval=times, rtol=1e-12, atol=1e-14, method="DOP853")
    z = sol.y.T
    return z[:, : n * c].reshape(-1, n, c), z[:, n * c :].reshape(-1, m, c)


# --- (a) neural-tangents oracle -------------------------------------------------------------------


@pytest.mark.parametrize("n_out, lr, diag_reg", [(1, 1.0, 0.0), (3, 0.3, 0.1)], ids=str)
def test_matches_neural_tangents(x64, nt_oracle, n_out, lr, diag_reg):
    rng = np.random.default_rng(n_out + int(10 * lr))
    n, m = N, M
    k, kt, ktt = joint_kernel(rng, n, m)
    y = rng.standard_normal((n, n_out))
    f0, g0 = rng.standard_normal((n, n_out)), rng.standard_normal((m, n_out))
    ref = nt_oracle(
        {
            "tasks": ["predict", "gp_inference"],
            "k_train_train": k,
            "y_train": y,
            "k_test_train": kt,
            "k_test_test": ktt,
            "t": TIMES,
            "learning_rate": lr,
            "diag_reg": diag_reg,
            "fx_train_0": f0,
            "fx_test_0": g0,
            "x64": 1,
        }
    )
    fx_train, fx_test = predict.gradient_descent_mse(k, y, lr, diag_reg)(TIMES, f0, g0, kt)
    assert fx_train.dtype == jnp.float64
    assert_close(fx_train, ref["predict_train"])
    assert_close(fx_test, ref["predict_test"])
    post = predict.gp_inference(k, y, diag_reg)(get="nngp", k_test_train=kt, k_test_test=ktt)
    assert_close(post.mean, ref["gp_mean"])
    assert_close(post.covariance, ref["gp_cov"])


# --- (b) brute-force ODE integration --------------------------------------------------------------


@pytest.mark.parametrize("n_out, lr", [(1, 1.0), (3, 0.5)])
def test_matches_ode_integration(x64, n_out, lr):
    rng = np.random.default_rng(7 + n_out)
    n, m = N, M
    k, kt, _ = joint_kernel(rng, n, m)
    y = rng.standard_normal((n, n_out))
    f0, g0 = rng.standard_normal((n, n_out)), rng.standard_normal((m, n_out))
    times = np.array([0.0, 0.5, 4.0, 30.0, 200.0])
    want_train, want_test = ode_solution(k, kt, y, f0, g0, lr, times)
    got_train, got_test = predict.gradient_descent_mse(k, y, lr)(times, f0, g0, kt)
    assert_close(got_train, want_train)
    assert_close(got_test, want_test)


def test_zero_eigenvalues_follow_the_limit_without_nan(x64):
    """Exact zero eigenvalues: (1 − e^{−λs})/λ → s; the null-space residual never decays."""
    rng = np.random.default_rng(3)
    lam = np.array([3.0, 1.0, 0.5, 0.2, 0.0, 0.0])
    k = np.diag(lam)  # eigh returns these eigenvalues exactly, zeros included
    kt = rng.standard_normal((3, 6)) @ np.diag(lam)  # joint PSD: vanishes on the null space...
    kt[:, 4] = 0.3  # ...except here, to exercise the finite-t limit term −t/|Y|
    y, f0, g0 = rng.standard_normal((6, 3)), rng.standard_normal((6, 3)), np.zeros((3, 3))
    times = np.array([0.0, 1.0, 7.0, 20.0, 50.0])
    want_train, want_test = ode_solution(k, kt, y, f0, g0, 1.0, times)
    fn = predict.gradient_descent_mse(k, y)
    got_train, got_test = fn(times, f0, g0, kt)
    assert_close(got_train, want_train)
    assert_close(got_test, want_test)
    # t = ∞: no NaN; null directions keep their initial residual, the rest interpolate.
    fx_inf, _ = fn(jnp.inf, f0, 0.0, kt)
    assert np.all(np.isfinite(fx_inf))
    np.testing.assert_allclose(fx_inf[:4], y[:4], atol=1e-14)
    np.testing.assert_allclose(fx_inf[4:], f0[4:], atol=1e-14)


def test_output_shapes_dtypes_and_defaults(x64):
    rng = np.random.default_rng(0)
    k, kt, _ = joint_kernel(rng, N, M)
    y = rng.standard_normal((N, 3))
    fn = predict.gradient_descent_mse(k, y)
    assert fn(1.0).shape == (N, 3)
    tr, te = fn(np.ones((2, 4)), 0.0, 0.0, kt)
    assert tr.shape == (2, 4, N, 3) and te.shape == (2, 4, M, 3)
    # t=None is t=∞: interpolation of the targets, kernel regression on the test set.
    tr, te = fn(None, 0.0, 0.0, kt)
    assert_close(tr, y)
    assert_close(te, kt @ np.linalg.solve(k, y))
    # 1-D targets with trace_axes=() give 1-D outputs with the same numbers.
    fn1 = predict.gradient_descent_mse(k, y[:, 0], trace_axes=())
    tr1, te1 = fn1(2.5, 0.0, 0.0, kt)
    tr2, te2 = predict.gradient_descent_mse(k, y[:, :1])(2.5, 0.0, 0.0, kt)
    assert tr1.shape == (N,) and te1.shape == (M,)
    # Both have |Y| = N, so the same normalisation and the same numbers.
    assert_close(tr1, tr2[:, 0])
    assert_close(te1, te2[:, 0])


def test_normalisation_counts_every_output_entry(x64):
    """NT's |Y| = y_train.size: adding identical output columns slows the flow accordingly."""
    rng = np.random.default_rng(4)
    k, _, _ = joint_kernel(rng, N, 0)
    y = rng.standard_normal((N, 1))
    one = predict.gradient_descent_mse(k, y)(2.0)
    three = predict.gradient_descent_mse(k, np.repeat(y, 3, axis=1))(6.0)
    assert_close(three, np.repeat(one, 3, axis=1))


def test_float32_inputs_give_float32_outputs():
    rng = np.random.default_rng(0)
    k, kt, _ = joint_kernel(rng, N, M)
    y = rng.standard_normal((N, 3))
    tr, te = predict.gradient_descent_mse(k.astype(np.float32), y.astype(np.float32))(
        1.0, 0.0, 0.0, kt.astype(np.float32)
    )
    assert tr.dtype == jnp.float32 and te.dtype == jnp.float32


# --- GP posterior and the NTK ensemble ------------------------------------------------------------


def test_gp_inference_is_the_gaussian_conditional(x64):
    rng = np.random.default_rng(5)
    k, kt, ktt = joint_kernel(rng, N, M)
    y = rng.standard_normal((N, 3))
    post = predict.gp_inference(k, y, diag_reg=0.01, diag_reg_absolute_scale=True)("nngp", kt, ktt)
    kr = k + 0.01 * np.eye(N)
    assert_close(post.mean, kt @ np.linalg.solve(kr, y))
    assert_close(post.covariance, ktt - kt @ np.linalg.solve(kr, kt.T))
    # neural-tangents' convention: the mean alone without k_test_test; a named tuple over get
    mean = predict.gp_inference(k, y[:, 0], trace_axes=())("nngp", kt)
    assert_close(mean, (kt @ np.linalg.solve(k, y))[:, 0])
    both = predict.gp_inference(k, y)(("ntk", "nngp"), kt)
    assert both._fields == ("ntk", "nngp")
    assert_close(both.ntk, both.nngp)  # one array serves every kernel


def test_ntk_ensemble_is_the_law_of_trained_outputs_over_initialisations(x64):
    """Lee et al. (2019) eq. (16): f_*(∞) = g0 + Θ_*x Θ⁻¹ (y − f0) with (f0, g0) ~ N(0, K).

    The linear map is read off `gradient_descent_mse` at t = ∞ by differentiation, so the two
    functions check each other.
    """
    rng = np.random.default_rng(6)
    n, m = N, M
    theta, theta_t, _ = joint_kernel(rng, n, m)
    k, k_t, k_tt = joint_kernel(rng, n, m)
    y = rng.standard_normal((n, 1))
    fn = predict.gradient_descent_mse(theta, y)

    def f_test(f0, g0):
        return fn(jnp.inf, f0, g0, theta_t)[1][:, 0]

    zeros_f, zeros_g = jnp.zeros((n, 1)), jnp.zeros((m, 1))
    jf, jg = jax.jacobian(f_test, argnums=(0, 1))(zeros_f, zeros_g)
    lin = np.concatenate([jf[..., 0], jg[..., 0]], axis=1)  # (M, N + M)
    k_joint = np.block([[k, k_t.T], [k_t, k_tt]])
    want_cov = lin @ k_joint @ lin.T
    post = predict.ntk_ensemble_posterior(theta, theta_t, k, k_t, k_tt, y)
    assert_close(post.mean, f_test(zeros_f, zeros_g)[:, None])
    assert_close(post.covariance, want_cov)
    # With Θ = K the ensemble is the GP posterior.
    same = predict.ntk_ensemble_posterior(k, k_t, k, k_t, k_tt, y)
    gp = predict.gp_inference(k, y)("nngp", k_t, k_tt)
    assert_close(same.mean, gp.mean)
    assert_close(same.covariance, gp.covariance)


# --- (c) bad input --------------------------------------------------------------------------------


def _bad_calls():
    k, y = np.eye(3), np.ones((3, 1))
    asym = np.eye(3)
    asym[0, 1] = 0.5
    nan_k = np.eye(3)
    nan_k[1, 1] = np.nan
    gd = predict.gradient_descent_mse
    return [
        (lambda: gd(np.ones(3), y), "k_train_train"),
        (lambda: gd(np.ones((3, 2)), y), "k_train_train"),
        (lambda: gd(asym, y), "symmetric"),
        (lambda: gd(nan_k, y), "k_train_train"),
        (lambda: gd(k, np.ones((4, 1))), "y_train"),
        (lambda: gd(k, np.ones(3)), "y_train"),
        (lambda: gd(k, np.array([[1.0], [np.inf], [0.0]])), "y_train"),
        (lambda: gd(k, y, learning_rate=-0.1), "learning_rate"),
        (lambda: gd(k, y, learning_rate=np.nan), "learning_rate"),
        (lambda: gd(k, y, diag_reg=-1e-3), "diag_reg"),
        (lambda: gd(k, y)(-1.0), "t"),
        (lambda: gd(k, y)(np.nan), "t"),
        (lambda: gd(k, y)(1.0, np.ones((2, 1))), "fx_train_0"),
        (lambda: gd(k, y)(1.0, 0.0, 0.0, np.ones((2, 4))), "k_test_train"),
        (lambda: gd(k, y)(1.0, 0.0, np.ones((5, 1)), np.ones((2, 3))), "fx_test_0"),
        (lambda: gd(k, y)(1.0, 0.0, np.ones((2, 1))), "k_test_train"),
        (lambda: predict.gp_inference(k, y, diag_reg=-1.0), "diag_reg"),
        (lambda: predict.gp_inference(np.zeros((3, 3)), y)("nngp"), "positive definite"),
        (lambda: predict.gp_inference(k, y)("nngp", np.ones((2, 3)), np.eye(3)), "k_test_test"),
        (lambda: predict.principal_component_decay(k, np.ones((2, 1)), 1.0), "residual_0"),
    ]


@pytest.mark.parametrize("index", range(len(_bad_calls())))
def test_bad_input_raises_value_error_naming_the_argument(index):
    call, match = _bad_calls()[index]
    with pytest.raises(ValueError, match=match):
        call()


# --- (d) jit --------------------------------------------------------------------------------------


def test_jit_over_t_does_not_recompile_for_new_values(x64):
    rng = np.random.default_rng(8)
    k, kt, _ = joint_kernel(rng, N, M)
    y = rng.standard_normal((N, 3))
    fn = predict.gradient_descent_mse(k, y)
    traces = []

    @jax.jit
    def at(t):
        traces.append(1)
        return fn(t, 0.0, 0.0, kt)

    outs = [at(jnp.asarray(t)) for t in (0.5, 2.0, jnp.inf)]
    assert len(traces) == 1
    for t, (tr, te) in zip((0.5, 2.0, jnp.inf), outs):
        want_tr, want_te = fn(t, 0.0, 0.0, kt)
        assert_close(tr, want_tr, rtol=1e-12)
        assert_close(te, want_te, rtol=1e-12)
    at(jnp.asarray([1.0, 3.0]))
    at(jnp.asarray([5.0, 7.0]))
    assert len(traces) == 2
