"""Tests of theory.singular.data: the Dirichlet tasks on the sphere, their Bayes rule and risks.

Monte Carlo tolerances are 4 standard errors computed from the sample count (fixed seeds, so
the tests are deterministic; a correct implementation fails a single 4σ check with
probability 6e-5).
"""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from theory.singular.data import (
    DIRICHLET_PARAMS,
    DirichletTask,
    NoisyLabelsTask,
    Risk,
    cover_hart_bound,
    noisy_labels_task,
)

DIMS = sorted(DIRICHLET_PARAMS)


def _on_sphere(p):
    p = np.asarray(p, dtype=float)
    return p / np.linalg.norm(p, axis=-1, keepdims=True)


# --------------------------------------------------------------------------- exact 2-D risks


def _task(dim, prior=0.4):
    """The paper's parameters with class 0 = first vector (these tests were written in that
    orientation; `DirichletTask.paper` itself puts the first vector in class 1, see below)."""
    first, second = DIRICHLET_PARAMS[dim]
    return DirichletTask(alpha0=first, alpha1=second, prior=prior)


def test_paper_orientation_follows_the_authors_code():
    """uhlerlab/inf_depth_ntks gives prior 0.4 to the first parameter vector (label +1)."""
    for dim, (first, second) in DIRICHLET_PARAMS.items():
        task = DirichletTask.paper(dim)
        assert task.alpha1 == tuple(first) and task.alpha0 == tuple(second)
        assert task.prior == 0.4


def test_bayes_risk_2d_is_024():
    # f0 = 2(1 - t), f1 = 2t, prior 0.4: crossing at 0.6, R* = 0.4*0.36 + 0.6*0.16 = 0.24.
    task = _task(2)
    r = task.bayes_risk()
    assert isinstance(r, Risk)
    assert r.stderr == 0.0
    assert abs(r.value - 0.24) < 1e-10


@pytest.mark.parametrize(
    "alpha0, alpha1, prior",
    [
        ((1.0, 2.0), (2.0, 1.0), 0.4),
        ((2.0, 2.0), (0.5, 0.5), 0.5),  # h is U-shaped: two crossings
        ((3.0, 1.5), (1.2, 4.0), 0.3),
        ((1.0, 1.0), (2.0, 2.0), 0.7),
    ],
)
def test_bayes_risk_2d_matches_quad(alpha0, alpha1, prior):
    # Independent check of the Beta-CDF formula: adaptive quadrature of min(w1 f1, w0 f0)
    # with the crossing points as breakpoints (quad's error estimate must also be small).
    task = DirichletTask(alpha0, alpha1, prior)
    f0, f1 = stats.beta(*alpha0), stats.beta(*alpha1)

    def integrand(t):
        return min(prior * f1.pdf(t), (1 - prior) * f0.pdf(t))

    crossings = task._crossings_2d()
    value, abserr = integrate.quad(
        integrand, 0, 1, points=crossings or None, epsabs=1e-13, epsrel=1e-13, limit=200
    )
    assert abserr < 1e-10
    assert abs(task.bayes_risk().value - value) < 1e-10
    # each crossing really is one
    for t in crossings:
        assert prior * f1.pdf(t) == pytest.approx((1 - prior) * f0.pdf(t), rel=1e-10)


def test_risk_of_bayes_rule_and_constant_rules_2d():
    task = _task(2)
    exact = task.bayes_risk().value
    r = task.risk(task.bayes_predict)
    # one label change on the grid: bound ~ max density (2) * grid step (5e-6) plus end cells
    assert 0 < r.stderr < 2e-5
    assert abs(r.value - exact) <= r.stderr
    # Constant rules have no label change: the value is exact (cell masses sum to one) up to
    # rounding of 2e5 CDF differences; the bound covers only the two end half-cells.
    r0 = task.risk(lambda x: np.zeros(len(x), dtype=int))
    r1 = task.risk(lambda x: np.ones(len(x), dtype=int))
    assert r0.stderr < 1e-5 and r1.stderr < 1e-5
    assert abs(r0.value - 0.4) < 1e-12
    assert abs(r1.value - 0.6) < 1e-12


def test_risk_of_threshold_rule_2d():
    # predict 1 iff t = p[0] > 0.3: risk = w1 P1(t <= .3) + w0 P0(t > .3)
    #   = 0.4 * 0.3**2 + 0.6 * 0.7**2 = 0.33; larger than the Bayes risk.
    task = _task(2)

    def rule(x):
        p = x / x.sum(axis=1, keepdims=True)
        return (p[:, 0] > 0.3).astype(int)

    r = task.risk(rule)
    assert abs(r.value - 0.33) <= r.stderr + 1e-12
    assert r.value > task.bayes_risk().value + 0.05


def test_risk_bound_on_a_coarse_grid_by_hand():
    # n_grid = 10: midpoints 0.05, ..., 0.95. The rule t > 0.33 changes label between the
    # midpoints 0.25 and 0.35, so the computed value is the risk of the threshold 0.3 (cells
    # are taken whole): 0.33. Mixture CDF G(t) = 0.6 (1 - (1 - t)^2) + 0.4 t^2; the bound is
    # G(.35) - G(.25) = 0.108 around the change plus end half-cells G(.05) + 1 - G(.95) =
    # 0.0595 + 0.0405: 0.208. The true risk 0.4 * 0.33^2 + 0.6 * 0.67^2 = 0.3129 lies within.
    task = _task(2)

    def rule(x):
        p = x / x.sum(axis=1, keepdims=True)
        return (p[:, 0] > 0.33).astype(int)

    r = task.risk(rule, n_grid=10)
    assert r.value == pytest.approx(0.33, abs=1e-14)
    assert r.stderr == pytest.approx(0.208, abs=1e-14)
    assert abs(r.value - (0.4 * 0.33**2 + 0.6 * 0.67**2)) <= r.stderr


def test_risk_rejects_dim_above_2_and_bad_predictions():
    with pytest.raises(NotImplementedError, match="monte_carlo_risk"):
        DirichletTask.paper(3).risk(lambda x: np.zeros(len(x)))
    task = _task(2)
    with pytest.raises(ValueError, match="predict"):
        task.risk(lambda x: np.full(len(x), 0.5), n_grid=101)
    with pytest.raises(ValueError, match="predict"):
        task.risk(lambda x: np.zeros(3), n_grid=101)
    with pytest.raises(ValueError, match="n_grid"):
        task.risk(task.bayes_predict, n_grid=0)


# --------------------------------------------------------------------------- Monte Carlo risks


@pytest.mark.parametrize("dim", [3, 5, 9])
def test_monte_carlo_bayes_risk(dim):
    # bayes_risk() averages min(eta, 1 - eta) over its own sample (seed 0); the empirical
    # error of the Bayes rule on an independent sample (seed 1) has binomial stderr
    # sqrt(R(1-R)/n). Both estimate R*, independently, so their difference has standard
    # deviation sqrt(se1^2 + se2^2): we allow 4 of those.
    task = _task(dim)
    n = 200_000
    r_star = task.bayes_risk(n=n, seed=0)
    emp = task.monte_carlo_risk(task.bayes_predict, n=n, seed=1)
    combined = math.hypot(r_star.stderr, emp.stderr)
    assert 0 < r_star.stderr < 1e-3
    assert abs(r_star.value - emp.value) <= 4 * combined


def test_monte_carlo_risk_2d_matches_exact():
    task = _task(2)
    emp = task.monte_carlo_risk(task.bayes_predict, n=200_000, seed=7)
    assert emp.stderr == pytest.approx(math.sqrt(0.24 * 0.76 / 200_000), rel=0.01)
    assert abs(emp.value - 0.24) <= 4 * emp.stderr


def test_bayes_rule_beats_perturbed_rules_3d():
    # Shifting the decision threshold of the log-odds away from 0 can only increase the risk;
    # on one common sample, an increase this large (> 4 binomial sd) must show.
    task = _task(3)
    x, y = task.sample(100_000, seed=3)
    odds = task.log_posterior_odds(x)
    err = {s: np.mean((odds > s).astype(int) != y) for s in (-2.0, 0.0, 2.0)}
    sd = math.sqrt(0.05 * 0.95 / 100_000)
    assert err[-2.0] > err[0.0] + 4 * sd
    assert err[2.0] > err[0.0] + 4 * sd


# --------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("dim", DIMS)
def test_samples(dim):
    task = _task(dim)
    n = 100_000
    x, y = task.sample(n, seed=11)
    assert x.shape == (n, dim) and x.dtype == np.float64
    assert y.shape == (n,) and y.dtype == np.int64
    assert set(np.unique(y)) <= {0, 1}
    assert np.max(np.abs(np.linalg.norm(x, axis=1) - 1)) < 1e-12
    assert np.all(x >= 0)
    # class frequency: binomial sd sqrt(prior (1 - prior) / n)
    assert abs(y.mean() - task.prior) <= 4 * math.sqrt(task.prior * (1 - task.prior) / n)
    # per-class mean of p: E p_i = a_i / a0, Var p_i = a_i (a0 - a_i) / (a0^2 (a0 + 1))
    p = task.to_simplex(x)
    for k, alpha in enumerate((task.alpha0, task.alpha1)):
        a = np.asarray(alpha)
        a0 = a.sum()
        nk = int((y == k).sum())
        sd = np.sqrt(a * (a0 - a) / (a0**2 * (a0 + 1)) / nk)
        assert np.all(np.abs(p[y == k].mean(axis=0) - a / a0) <= 4 * sd)
    # reproducible from the seed, different for another seed
    x2, y2 = task.sample(n, seed=11)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(task.sample(n, seed=12)[0], x)


def test_to_simplex_inverts_the_sphere_map():
    task = _task(5)
    p = np.random.default_rng(0).dirichlet(np.ones(5), size=50)
    np.testing.assert_allclose(task.to_simplex(_on_sphere(p)), p, rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------- log odds


def _hand_log_density(p, alpha):
    """log Dirichlet density with math.lgamma, term by term."""
    out = math.lgamma(sum(alpha)) - sum(math.lgamma(a) for a in alpha)
    return out + sum((a - 1) * math.log(pi) for a, pi in zip(alpha, p))


@pytest.mark.parametrize("dim", DIMS)
def test_log_posterior_odds_by_hand(dim):
    task = _task(dim)
    rng = np.random.default_rng(dim)
    ps = rng.dirichlet(np.ones(dim), size=4)
    ps = np.vstack([ps, np.full(dim, 1.0 / dim)])
    got = task.log_posterior_odds(_on_sphere(ps))
    for p, g in zip(ps, got):
        want = (
            math.log(task.prior)
            + _hand_log_density(p, task.alpha1)
            - math.log(1 - task.prior)
            - _hand_log_density(p, task.alpha0)
        )
        assert g == pytest.approx(want, rel=1e-12, abs=1e-12)
    # a single point of shape (dim,) gives shape (1,)
    assert task.log_posterior_odds(_on_sphere(ps[0])).shape == (1,)
    np.testing.assert_array_equal(task.bayes_predict(_on_sphere(ps)), (got > 0).astype(int))


def test_log_posterior_odds_2d_closed_form():
    # f1/f0 = t/(1 - t): log odds = log(0.4/0.6) + log t - log(1 - t); zero at t = 0.6
    task = _task(2)
    t = np.array([0.1, 0.5, 0.6, 0.9])
    got = task.log_posterior_odds(_on_sphere(np.stack([t, 1 - t], 1)))
    np.testing.assert_allclose(got, np.log(0.4 / 0.6) + np.log(t) - np.log1p(-t), atol=1e-12)


def test_log_posterior_odds_on_the_boundary():
    # dim 3: c = alpha1 - alpha0 = (2, -0.4, -2). Vertices and an edge point:
    #   e0: zero set {1, 2}, s = -2.4 -> +inf;  e2: zero set {0, 1}, s = 1.6 -> -inf;
    #   e1: zero set {0, 2}, s = 0 -> finite; (3/7, 0, 4/7): s = -0.4 -> +inf.
    task = _task(3)
    pts = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0], [0.6, 0, 0.8]])
    got = task.log_posterior_odds(pts)
    assert not np.any(np.isnan(got))
    assert got[0] == np.inf and got[1] == -np.inf and got[3] == np.inf
    assert np.isfinite(got[2])
    np.testing.assert_array_equal(task.bayes_predict(pts), [1, 0, int(got[2] > 0), 1])
    # each value is the limit along the segment towards the centroid c:
    # q(t) = (1 - t) p + t c; for s = 0 the interior odds converge at rate O(t).
    centroid = np.full(3, 1 / 3)
    for p, g in zip(task.to_simplex(pts), got):
        near = [
            task.log_posterior_odds(_on_sphere((1 - t) * p + t * centroid))[0] for t in (1e-6, 1e-9)
        ]
        if np.isfinite(g):
            assert abs(near[1] - g) < 1e-7
        else:
            # |odds| grows like |s| log(1/t): further along, and of the limit's sign
            assert np.sign(near[1]) == np.sign(g) and abs(near[1]) > abs(near[0]) + 1


def test_2d_boundary_points():
    # t = 1: f1 = 2, f0 = 0 -> +inf; t = 0: -inf
    task = _task(2)
    got = task.log_posterior_odds(np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert got[0] == np.inf and got[1] == -np.inf


# --------------------------------------------------------------------------- noisy labels


@pytest.mark.parametrize("dim, flip", [(2, 0.1), (5, 0.25), (10, 0.0)])
def test_noisy_labels_task(dim, flip):
    task = noisy_labels_task(dim, flip)
    assert isinstance(task, NoisyLabelsTask) and task.intrinsic_dim == dim - 1
    assert task.bayes_risk() == Risk(flip, 0.0)
    n = 100_000
    x, y = task.sample(n, seed=5)
    assert x.shape == (n, dim) and y.dtype == np.int64
    assert np.max(np.abs(np.linalg.norm(x, axis=1) - 1)) < 1e-12
    # P(y = 1) = 1/2 by symmetry; uniform on the sphere: E x = 0, E x x^T = I/d
    assert abs(y.mean() - 0.5) <= 4 * math.sqrt(0.25 / n)
    assert np.all(np.abs(x.mean(axis=0)) <= 4 * math.sqrt(1 / dim / n))
    # the Bayes rule's error rate matches flip (binomial sd; exactly 0 when flip = 0)
    emp = task.monte_carlo_risk(task.bayes_predict, n=n, seed=6)
    assert abs(emp.value - flip) <= 4 * math.sqrt(flip * (1 - flip) / n)
    # and the wrong half-space is worse
    wrong = task.monte_carlo_risk(lambda z: (z[:, 0] < 0).astype(int), n=n, seed=6)
    assert wrong.value == pytest.approx(1 - emp.value)


# --------------------------------------------------------------------------- Cover & Hart


def test_cover_hart_bound():
    assert cover_hart_bound(0.24) == pytest.approx(0.3648, abs=1e-15)
    assert cover_hart_bound(Risk(0.24, 0.0)) == pytest.approx(0.3648, abs=1e-15)
    assert cover_hart_bound(0.0) == 0.0 and cover_hart_bound(0.5) == 0.5
    with pytest.raises(ValueError, match="bayes_risk"):
        cover_hart_bound(0.6)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"alpha0": (1.0, -2.0), "alpha1": (2.0, 1.0)}, "alpha0"),
        ({"alpha0": (1.0, 2.0), "alpha1": (0.0, 1.0)}, "alpha1"),
        ({"alpha0": (1.0, np.nan), "alpha1": (2.0, 1.0)}, "alpha0"),
        ({"alpha0": (1.0,), "alpha1": (2.0,)}, "alpha0"),
        ({"alpha0": (1.0, 2.0), "alpha1": (2.0, 1.0, 1.0)}, "same length"),
        ({"alpha0": (1.0, 2.0), "alpha1": (2.0, 1.0), "prior": 0.0}, "prior"),
        ({"alpha0": (1.0, 2.0), "alpha1": (2.0, 1.0), "prior": 1.0}, "prior"),
        ({"alpha0": (1.0, 2.0), "alpha1": (2.0, 1.0), "prior": float("nan")}, "prior"),
    ],
)
def test_bad_task_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DirichletTask(**kwargs)


def test_bad_dim_lists_valid_ones():
    with pytest.raises(ValueError, match=r"dim must be one of \[2, 3, 5, 9\]"):
        DirichletTask.paper(4)


@pytest.mark.parametrize(
    "x, match",
    [
        ([[0.6, 0.6, 0.6]], "unit sphere"),  # off the sphere
        ([[-0.6, 0.0, 0.8]], "positive orthant"),  # negative coordinate
        ([[np.nan, 0.6, 0.8]], "NaN"),
        ([[0.6, 0.8]], "shape"),  # wrong dimension
    ],
)
def test_bad_points(x, match):
    task = _task(3)
    for fn in (task.to_simplex, task.log_posterior_odds, task.bayes_predict):
        with pytest.raises(ValueError, match=f"x .*{match}|x must have {match}"):
            fn(np.array(x))


def test_bad_sample_arguments_and_noisy_parameters():
    task = _task(2)
    with pytest.raises(ValueError, match="n must"):
        task.sample(0, seed=0)
    with pytest.raises(ValueError, match="seed"):
        task.sample(10, seed=-1)
    with pytest.raises(ValueError, match="flip"):
        noisy_labels_task(3, 0.6)
    with pytest.raises(ValueError, match="dim"):
        noisy_labels_task(1, 0.1)


def test_risk_with_extra_points_refines_the_bound():
    """A rule that flips label every 1/1000 in t (like an interpolating classifier on noisy
    data): on a 1001-cell grid its bound is large; evaluation points added around each flip
    shrink the bound, and both values agree within their bounds."""
    task = _task(2)

    def flips(x):
        t = x[:, 0] / x.sum(axis=1)
        return (np.floor(t * 1000) % 2).astype(int)

    coarse = task.risk(flips, n_grid=1001)
    jumps = np.arange(1, 1000) / 1000
    extra = np.concatenate([jumps - 1e-9, jumps + 1e-9, [1e-9, 1 - 1e-9]])  # ends too
    fine = task.risk(flips, n_grid=1001, extra_points=extra)
    assert fine.stderr < 1e-5 < 0.1 < coarse.stderr
    assert abs(fine.value - coarse.value) <= coarse.stderr + fine.stderr
    # the rule is a coin flip in t: its risk is ≈ ½ (each class loses half its mass)
    assert fine.value == pytest.approx(0.5, abs=2e-3)
    with pytest.raises(ValueError, match="extra_points"):
        task.risk(flips, extra_points=[0.5, 1.5])


def test_arc_bump_task_exact_quantities():
    """Bayes risk in closed form; risk() of the Bayes rule equals it within its bound (the
    rule changes label twice, at the arc's ends); risk of 'always 0' is P(y = 1) exactly;
    Monte Carlo agrees within 4 binomial s.e. (n = 100,000)."""
    from theory.singular.data import ArcBumpTask

    task = ArcBumpTask()
    w = 0.15
    want = (w * 0.1 + (math.pi / 2 - w) * 0.1) / (math.pi / 2)
    assert task.bayes_risk().value == pytest.approx(want, abs=1e-15)
    r = task.risk(task.bayes_predict, n_grid=100_001)
    assert abs(r.value - want) <= r.stderr + 1e-12 and r.stderr < 1e-4
    p1 = (w * 0.9 + (math.pi / 2 - w) * 0.1) / (math.pi / 2)
    r0 = task.risk(lambda x: np.zeros(len(x), int), n_grid=1001)
    assert r0.value == pytest.approx(p1, abs=1e-12)
    x, y = task.sample(100_000, 3)
    err = np.mean(task.bayes_predict(x) != y)
    assert abs(err - want) < 4 * math.sqrt(want * (1 - want) / 100_000)
    with pytest.raises(ValueError, match="start"):
        ArcBumpTask(start=1.0, stop=0.5)
    with pytest.raises(ValueError, match="low"):
        ArcBumpTask(low=0.6)
