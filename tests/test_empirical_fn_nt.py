"""neural-tangents' finite-network API (``empirical_*_fn``, ``linearize``, ``taylor_expand``,
``monte_carlo_kernel_fn``, ``batch`` of any kernel function), one script run by both libraries.

The script is written against neural-tangents' public API; `reference/nt_script.py` runs it
with ``nt = neural_tangents`` 0.6.5 and this file with ``nt = theory.kernels``. Both draw the
same networks: our ``stax`` initialisers split keys as neural-tangents' do, and JAX ≥ 0.5
changed its random streams (``jax_threefry_partitionable`` now True), so our side runs with
that flag False, as jax 0.4.38 does — the one setting a user needs to reproduce a
neural-tangents run's random networks.

Tolerance: float64; the libraries contract the same derivatives in different orders, so
they agree to roundoff: RTOL = 1e-10 of the largest entry.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory.kernels as ours

RTOL = 1e-10

SCRIPT = """
def run(nt, a):
    stax = nt.stax
    init_fn, apply_fn, kernel_fn = stax.serial(
        stax.Dense(16, W_std=1.5, b_std=0.1), stax.Erf(), stax.Dense(3, W_std=1.2, b_std=0.2)
    )
    x1, x2 = a["x1"], a["x2"]
    _, params = init_fn(jax.random.PRNGKey(7), x1.shape)
    out = {}
    for name, kw in {
        "default": {},
        "notrace": dict(trace_axes=()),
    }.items():
        ntk_fn = nt.empirical_ntk_fn(apply_fn, **kw)
        out["ntk_" + name] = ntk_fn(x1, x2, params)
        out["ntk_self_" + name] = ntk_fn(x1, None, params)
    out["nngp"] = nt.empirical_nngp_fn(apply_fn)(x1, x2, params)
    out["nngp_notrace"] = nt.empirical_nngp_fn(apply_fn, trace_axes=())(x1, None, params)
    both = nt.empirical_kernel_fn(apply_fn)(x1, x2, None, params)
    out["kernel_nngp"], out["kernel_ntk"] = both.nngp, both.ntk
    out["kernel_ntk_only"] = nt.empirical_kernel_fn(apply_fn)(x1, x2, "ntk", params)

    # a point's output depends on the whole batch (batch normalization of the hidden layer)
    def bn_apply(p, x):
        h = jnp.tanh(x @ p["w1"])
        h = (h - h.mean(0)) / jnp.sqrt(h.var(0) + 1e-3)
        return h @ p["w2"]

    bn_params = {"w1": a["w1"], "w2": a["w2"]}
    out["ntk_batchnorm"] = nt.empirical_ntk_fn(bn_apply, trace_axes=())(x1, x2, bn_params)

    vp = nt.empirical_ntk_vp_fn(apply_fn, x1, x2, params)
    out["ntk_vp"] = vp(a["cot"])
    new = jax.tree_util.tree_map(lambda w: w * 1.1 + 0.01, params)
    out["lin"] = nt.linearize(apply_fn, params)(new, x1)
    mc = nt.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(1), 3)
    out["mc_nngp"], out["mc_ntk"] = mc(x1, x2)
    return out
"""


SCRIPT_MORE = """
def run(nt, a):
    stax = nt.stax
    init_fn, apply_fn, kernel_fn = stax.serial(
        stax.Dense(16, W_std=1.5, b_std=0.1), stax.Erf(), stax.Dense(3, W_std=1.2, b_std=0.2)
    )
    x1, x2 = a["x1"], a["x2"]
    _, params = init_fn(jax.random.PRNGKey(7), x1.shape)
    out = {}
    for name, kw in {
        "diag": dict(trace_axes=(), diagonal_axes=(-1,)),
        "vmap0": dict(vmap_axes=0, implementation=nt.NtkImplementation.JACOBIAN_CONTRACTION),
        "impl2": dict(implementation=2),
    }.items():
        out["ntk_" + name] = nt.empirical_ntk_fn(apply_fn, **kw)(x1, x2, params)

    # a pytree of outputs: one kernel per output
    def two_heads(p, x):
        h = jnp.tanh(x @ p["w1"])
        return {"a": h @ p["w2"], "b": jnp.sin(h) @ p["w2"][:, :1]}

    heads = nt.empirical_ntk_fn(two_heads)(x1, x2, {"w1": a["w1"], "w2": a["w2"]})
    out["heads_a"], out["heads_b"] = heads["a"], heads["b"]
    new = jax.tree_util.tree_map(lambda w: w * 1.1 + 0.01, params)
    out["taylor2"] = nt.taylor_expand(apply_fn, params, 2)(new, x1)
    out["taylor3"] = nt.taylor_expand(apply_fn, params, 3)(new, x1)
    mc_gen = nt.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(1), (1, 3))
    out["mc_gen_1"], out["mc_gen_3"] = [k.ntk for k in mc_gen(x1, None, ("nngp", "ntk"))]
    batched = nt.batch(nt.empirical_ntk_fn(apply_fn, trace_axes=()), 2)
    out["batched_ntk"] = batched(x1, x2, params)
    return out
"""


SCRIPT_KEYWORDS = """
def run(nt, a):
    stax = nt.stax
    init_fn, apply_fn, kernel_fn = stax.serial(
        stax.Dense(16, W_std=1.5), stax.Relu(), stax.Dropout(rate=0.7), stax.Aggregate(),
        stax.GlobalAvgPool(), stax.Dense(3),
    )
    g1, g2 = a["g1"], a["g2"]
    p1, p2 = a["p1"], a["p2"]
    key = jax.random.PRNGKey(3)
    _, params = init_fn(key, g1.shape)
    k1, k2 = jax.random.split(jax.random.PRNGKey(4))
    out = {}
    fn = nt.empirical_kernel_fn(apply_fn)
    for name, rng in {"one_key": k1, "two_keys": (k1, k2), "equal_keys": (k1, k1)}.items():
        k = fn(g1, g2, ("nngp", "ntk"), params, rng=rng, pattern=(p1, p2))
        out["cross_nngp_" + name], out["cross_ntk_" + name] = k.nngp, k.ntk
    k = fn(g1, None, "ntk", params, rng=(k1, None), pattern=(p1, p1))
    out["self_ntk_pair"] = k
    mc = nt.monte_carlo_kernel_fn(init_fn, apply_fn, key, 2)
    out["mc_nngp"], out["mc_ntk"] = mc(g1, g2, pattern=(p1, p2))
    # an ensemble whose train and test sets carry their own graphs
    predict_fn = nt.predict.gradient_descent_mse_ensemble(
        kernel_fn, g1, a["y"], diag_reg=1e-3, pattern=(p1, p1)
    )
    ens = predict_fn(t=1.0, x_test=g2, get="ntk", compute_cov=True, pattern=(p2, p2))
    out["ens_mean"], out["ens_cov"] = ens.mean, ens.covariance
    return out
"""


SCRIPT_POINT_AXIS = """
def run(nt, a):
    stax = nt.stax
    init_fn, apply_fn, _ = stax.Conv(3, (3, 2), (1, 2))
    x1, x2 = a["im1"], a["im2"]
    _, params = init_fn(jax.random.PRNGKey(1), x1.shape)
    out = {}
    for name, kw in {
        "trace_points": dict(trace_axes=(0, -1)),
        "diag_points": dict(trace_axes=(-1,), diagonal_axes=(0,)),
        "diag_points_rows": dict(trace_axes=(), diagonal_axes=(0, 1)),
        "all": dict(trace_axes=(0, 1, 2, 3)),
    }.items():
        out["ntk_" + name] = nt.empirical_ntk_fn(apply_fn, **kw)(x1, x2, params)
        out["nngp_" + name] = nt.empirical_nngp_fn(apply_fn, **kw)(x1, None, params)
    # an axis named twice: the same axes (neural-tangents then divides by its size twice;
    # we count it once: see the README's migration notes)
    twice = nt.empirical_ntk_fn(apply_fn, trace_axes=(0, 0, -3))(x1, x2, params)
    out["shape_twice"] = np.array(twice.shape)
    # training on outputs whose every axis is traced: a 1 x 1 kernel
    ta = (0, 1, 2, 3)
    k = nt.empirical_kernel_fn(apply_fn, trace_axes=ta)
    ntk = k(x1, None, "ntk", params)
    y = a["y"]
    f0 = apply_fn(params, x1)
    out["mse_all"] = nt.predict.gradient_descent_mse(ntk, y, trace_axes=ta)(2.0, f0)
    ens = nt.predict.gradient_descent_mse_ensemble(k, x1, y, trace_axes=ta, params=params)
    out["ens_all"] = ens(2.0, None, "ntk")
    return out
"""


def _arrays():
    rng = np.random.default_rng(11)
    return {
        "x1": rng.standard_normal((5, 4)),
        "x2": rng.standard_normal((3, 4)),
        "w1": rng.standard_normal((4, 6)) / 2,
        "w2": rng.standard_normal((6, 2)) / 2,
        "cot": rng.standard_normal((3, 3)),
    }


def _graphs():
    rng = np.random.default_rng(12)
    return {
        "g1": rng.standard_normal((6, 5, 4)),  # graphs: 5 nodes of 4 features
        "g2": rng.standard_normal((3, 5, 4)),
        "p1": rng.uniform(size=(6, 5, 5)),  # each graph's own weighted adjacency
        "p2": rng.uniform(size=(3, 5, 5)),
        "y": rng.standard_normal((6, 2)),
    }


@pytest.mark.slow  # 12-20 s of compilations; default: the independent checks below
def test_finite_network_script_runs_unchanged_and_agrees_with_neural_tangents(x64, nt_script):
    """empirical_ntk_fn (two layouts, x2 given and None), empirical_nngp_fn,
    empirical_kernel_fn, a batch-normalized function, empirical_ntk_vp_fn, linearize and
    monte_carlo_kernel_fn."""
    nt_script(SCRIPT, _arrays(), RTOL)


@pytest.mark.slow  # about 25 s: a compilation per variant
def test_more_of_the_api_agrees_with_neural_tangents(x64, nt_script):
    """diagonal_axes, vmap_axes=0, implementation 2, pytree outputs, taylor_expand,
    monte_carlo_kernel_fn's generator, batch of an empirical kernel function."""
    nt_script(SCRIPT_MORE, _arrays(), RTOL)


@pytest.mark.slow  # about 20 s of compilations
def test_per_batch_keywords_agree_with_neural_tangents(x64, nt_script):
    """Keywords that belong to each batch: a dropout key (one key, a pair, an equal pair:
    neural-tangents' rule makes the two batches' masks equal exactly when the inputs are),
    each graph's own adjacency ``pattern`` (per point, so only the full-batch route is
    right), through empirical and Monte Carlo kernels and an ensemble whose test set has its
    own graphs."""
    nt_script(SCRIPT_KEYWORDS, _graphs(), RTOL)


def test_dropout_keys_follow_neural_tangents_rule(x64):
    """One key with x2 given: x1's batch gets the key, x2's ``fold_in(key, 1)`` (the same key
    when x2 equals x1, so K̂(x, x) is symmetric); checked against the outputs by hand."""
    a = _arrays()
    init_fn, apply_fn, _ = ours.stax.serial(
        ours.stax.Dense(32), ours.stax.Dropout(rate=0.5), ours.stax.Dense(2)
    )
    _, params = init_fn(jax.random.PRNGKey(0), a["x1"].shape)
    key = jax.random.PRNGKey(9)
    nngp = ours.empirical_nngp_fn(apply_fn)
    f1 = apply_fn(params, a["x1"], rng=key)
    f2 = apply_fn(params, a["x2"], rng=jax.random.fold_in(key, 1))
    np.testing.assert_allclose(nngp(a["x1"], a["x2"], params, rng=key), f1 @ f2.T / 2,
                               rtol=1e-12)  # fmt: skip
    same = np.asarray(nngp(a["x1"], a["x1"], params, rng=key))
    np.testing.assert_allclose(same, f1 @ f1.T / 2, rtol=1e-12)
    with pytest.raises(TypeError, match="rng"):
        nngp(a["x1"], a["x2"], params, rng="seed")


@pytest.mark.slow  # about 15 s of compilations
def test_axes_naming_the_point_axis_agree_with_neural_tangents(x64, nt_script):
    """trace_axes/diagonal_axes that name the point axis 0 (pairs (x1[i], x2[i]) averaged or
    kept), an axis named twice, every axis traced, and predictions on such outputs."""
    rng = np.random.default_rng(13)
    arrays = {
        "im1": rng.standard_normal((2, 5, 4, 3)),
        "im2": rng.standard_normal((2, 5, 4, 3)),
        "y": rng.standard_normal((2, 3, 2, 3)),
    }
    nt_script(SCRIPT_POINT_AXIS, arrays, RTOL)


def test_tracing_the_point_axis_averages_the_pairs(x64):
    """trace_axes containing 0 is the mean over i of Θ̂(x1[i], x2[i]); diagonal_axes
    containing 0 keeps them; unequal batches cannot be paired and are refused by name."""
    a = _arrays()
    init_fn, apply_fn, _ = ours.stax.serial(ours.stax.Dense(6), ours.stax.Erf(), ours.stax.Dense(3))
    _, params = init_fn(jax.random.PRNGKey(0), a["x1"].shape)
    x1, x2 = a["x1"][:3], a["x2"]
    full = np.asarray(ours.empirical_ntk_fn(apply_fn, trace_axes=())(x1, x2, params))
    pairs = np.stack([full[i, i] for i in range(3)])  # (3, 3, 3): Θ̂(x1[i], x2[i])
    got = ours.empirical_ntk_fn(apply_fn, trace_axes=(0,))(x1, x2, params)
    np.testing.assert_allclose(got, pairs.mean(0), rtol=1e-12)
    got = ours.empirical_ntk_fn(apply_fn, trace_axes=(), diagonal_axes=(0,))(x1, x2, params)
    np.testing.assert_allclose(got, pairs, rtol=1e-12)
    with pytest.raises(ValueError, match=r"trace_axes names the point axis.*5 and 3"):
        ours.empirical_ntk_fn(apply_fn, trace_axes=(0, -1))(a["x1"], a["x2"], params)


def test_batch_dependent_functions_take_the_exact_route(x64):
    """With vmap_axes=None a batch-normalized network is detected (outputs of points alone
    differ from the batch's) and its NTK is the full-batch Jacobian's; the per-point route
    would give another answer, which is what vmap_axes=0 asserts away."""
    a = _arrays()
    p = {"w1": a["w1"], "w2": a["w2"]}

    def bn(p, x):
        h = jnp.tanh(x @ p["w1"])
        return ((h - h.mean(0)) / jnp.sqrt(h.var(0) + 1e-3)) @ p["w2"]

    j = jax.jacrev(lambda q: bn(q, a["x1"]))(p)
    flat = np.concatenate(
        [np.asarray(v).reshape(5, 2, -1) for v in jax.tree_util.tree_leaves(j)], -1
    )
    want = np.einsum("iap,jbp->ijab", flat, flat)
    got = ours.empirical_ntk_fn(bn, trace_axes=())(a["x1"], None, p)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    per_point = ours.empirical_ntk_fn(bn, trace_axes=(), vmap_axes=0)(a["x1"], None, p)
    assert np.abs(np.asarray(per_point) - want).max() > 1e-3 * np.abs(want).max()


def test_taylor_expansion_is_exact_for_polynomials(x64):
    """f(θ) = θ³ x: the cubic expansion is exact, the quadratic misses (1/6)·f‴·δ³ = δ³ x."""
    f = lambda p, x: p["w"] ** 3 * x  # noqa: E731
    p0, p1, x = {"w": jnp.asarray(1.5)}, {"w": jnp.asarray(2.0)}, jnp.asarray(3.0)
    np.testing.assert_allclose(ours.taylor_expand(f, p0, 3)(p1, x), f(p1, x), rtol=1e-14)
    quad = ours.taylor_expand(f, p0, 2)(p1, x)
    np.testing.assert_allclose(f(p1, x) - quad, 0.5**3 * 3.0, rtol=1e-12)
    np.testing.assert_allclose(ours.taylor_expand(f, p0, 0)(p1, x), f(p0, x), rtol=1e-14)
    with pytest.raises(ValueError, match="degree"):
        ours.taylor_expand(f, p0, -1)


def test_monte_carlo_generator_is_the_running_average(x64):
    a = _arrays()
    init_fn, apply_fn, _ = ours.stax.serial(
        ours.stax.Dense(8), ours.stax.Relu(), ours.stax.Dense(2)
    )
    key = jax.random.PRNGKey(5)
    gen = ours.monte_carlo_kernel_fn(init_fn, apply_fn, key, (1, 2, 4))(a["x1"], None, "nngp")
    estimates = list(gen)
    assert len(estimates) == 3
    # by hand: neural-tangents' schedule, key, k = split(key); init_key, rng = split(k)
    draws, k = [], key
    for _ in range(4):
        k, sub = jax.random.split(k)
        init_key, _ = jax.random.split(sub)
        _, p = init_fn(init_key, a["x1"].shape)
        f = apply_fn(p, a["x1"])
        draws.append(np.asarray(f @ f.T) / 2)
    for est, n in zip(estimates, (1, 2, 4)):
        np.testing.assert_allclose(est, np.mean(draws[:n], axis=0), rtol=1e-12)


def test_kernel_functions_run_inside_the_callers_jit():
    """neural-tangents users jit kernel functions (``jit(kernel_fn, static_argnames="get")``,
    ``jit(empirical_ntk_fn(f))``): our input checks then see constants inside a trace and
    must still run (evaluated eagerly) or step aside (traced values), and give the same
    numbers."""
    init_fn, apply_fn, kernel_fn = ours.stax.serial(
        ours.stax.Dense(8), ours.stax.Relu(), ours.stax.Dense(2)
    )
    x = jnp.asarray(_arrays()["x1"], jnp.float32)
    got = jax.jit(kernel_fn, static_argnames="get")(x, None, "ntk")
    np.testing.assert_allclose(got, kernel_fn(x, None, "ntk"), rtol=1e-6)
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    ntk_fn = ours.empirical_ntk_fn(apply_fn)
    np.testing.assert_allclose(jax.jit(ntk_fn)(x, None, params), ntk_fn(x, None, params),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    # a constant with NaN inside a trace is still refused by name
    bad = x.at[0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="x1 contains NaN"):
        jax.jit(lambda p: ours.empirical_ntk(apply_fn, p, bad))(params)


def test_networks_of_several_inputs_with_x2_and_a_key(x64):
    """Several inputs (a list per batch) with x2 given and a dropout key: the point-axis and
    key rules read the inputs as trees (a regression: they took np.shape of the list).
    Checked against brute-force Jacobians of the whole batches."""
    a = _arrays()
    init_fn, apply_fn, _ = ours.stax.serial(
        ours.stax.parallel(ours.stax.Dense(6), ours.stax.Dense(6)),
        ours.stax.FanInSum(),
        ours.stax.Erf(),
        ours.stax.Dense(2),
    )
    x1 = [a["x1"], a["x1"][:, :3]]  # inputs of different shapes
    x2 = [a["x2"], a["x2"][:, :3]]
    _, params = init_fn(jax.random.PRNGKey(0), [v.shape for v in x1])
    fn = ours.empirical_ntk_fn(apply_fn, trace_axes=())

    def flat_jac(x):
        j = jax.jacrev(lambda p: apply_fn(p, x))(params)
        return np.concatenate([np.asarray(v).reshape(len(x[0]), 2, -1)
                               for v in jax.tree_util.tree_leaves(j)], -1)  # fmt: skip

    want = np.einsum("iap,jbp->ijab", flat_jac(x1), flat_jac(x2))
    for got in (fn(x1, x2, params), fn(x1, x2, params, rng=jax.random.PRNGKey(1))):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
