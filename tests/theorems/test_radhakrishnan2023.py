"""Radhakrishnan, Belkin & Uhler (2023), "Wide and deep neural networks achieve consistency for
classification" (PNAS 120(14)): the claims, checked numerically.

1. The depth limit of an interpolating wide network is decided by the dual: majority vote
   (a₀ ≠ 0), 1-NN (a₀ = a₁ = 0) or a singular kernel with α = 2 ln(1/c)/ln λ (a₀ = 0 ≠ a₁)
   — by experiment in tests/test_singular_classifiers.py; here the exponent itself.
2. With α equal to the intrinsic dimension m the limit classifier is the Hilbert kernel
   estimate: on the paper's Dirichlet tasks the matched deep classifier and the Hilbert rule
   ‖x − z‖^(−m) agree on all but a few test points.
3. The Hilbert estimate is consistent (excess risk → 0, slowly); a singular kernel with α < m is
   not, and 1-NN stays between R* and the Cover–Hart bound 2R*(1 − R*).

Risks are exact (quadrature of the 2-D classifiers, `DirichletTask.risk`/`ArcBumpTask.risk`);
averages over D draws are compared with a margin of 3 standard errors of the mean.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from theory import singular as ts
from theory.singular import data as tsd


def test_alpha_is_log_ratio_of_the_derivatives_at_the_fixed_points():
    """α = 2 ln(1/φ̌'(0))/ln φ̌'(1), and Φ(1 − ε)·(2ε)^(α/2) stays bounded as ε → 0 only
    for that α: with α ± 0.05 the ratio drifts by a factor (1e-200)^(∓0.025) ≈ e^(±11.5)."""
    dual = ts.consistent_dual(3.0, "polynomial")
    assert dual.alpha == pytest.approx(2 * math.log(1 / dual.c) / math.log(dual.lam), rel=1e-15)
    eps = np.geomspace(1e-200, 1e-10, 400)
    _, log_phi = ts.koenigs_from_gap(eps, dual)
    for alpha, bounded in ((dual.alpha, True), (dual.alpha + 0.05, False)):
        log_r = np.asarray(log_phi) + alpha / 2 * np.log(2 * eps)
        assert (np.ptp(log_r) < 0.5) == bounded


def _gap_points(t, hi):
    return tsd.interpolation_points(t, hi)


# d = 2 by default; 3, 5 and 9 (about 10 s each) in the slow suite
@pytest.mark.parametrize("dim", [2, *[pytest.param(d, marks=pytest.mark.slow) for d in (3, 5, 9)]])
def test_matched_deep_classifier_is_the_hilbert_estimate(dim):
    """Claim 2 on the paper's tasks (1,000 training and 1,000 test points; the authors used
    10,000): the depth-∞ classifier of the α = m polynomial dual and the Hilbert rule with
    α = m = d − 1 predict differently on at most 1 % of test points, and their accuracies
    differ by at most 0.5 %."""
    task = tsd.DirichletTask.paper(dim)
    x, y = task.sample(1000, 11)
    xt, yt = task.sample(1000, 12)
    deep = ts.InfiniteDepthClassifier(ts.consistent_dual(dim - 1, "polynomial")).fit(x, y)
    hilbert = ts.SingularKernelClassifier(alpha=dim - 1).fit(x, y)
    p_deep, p_hilbert = deep.predict(xt), hilbert.predict(xt)
    assert np.mean(p_deep != p_hilbert) <= 0.01
    assert abs(np.mean(p_deep == yt) - np.mean(p_hilbert == yt)) <= 0.005


def test_one_nearest_neighbour_between_bayes_and_cover_hart():
    """Claim 3, 1-NN (Cover & Hart 1967): on the 2-D Dirichlet task (R* = 0.24) the exact
    risk of 1-NN with n = 4,096, averaged over 10 draws, lies in [R*, 2R*(1 − R*)] = [0.24,
    0.3648] (margin: 3 s.e. of the mean plus the largest quadrature bound)."""
    task = tsd.DirichletTask.paper(2)
    r_star = task.bayes_risk().value
    risks, bounds = [], []
    for draw in range(10):
        x, y = task.sample(4096, 100 + draw)
        nn = KNeighborsClassifier(1).fit(x, y)
        r = task.risk(
            nn.predict, n_grid=10_001, extra_points=_gap_points(x[:, 0] / x.sum(1), 1), refine=30
        )
        risks.append(r.value)
        bounds.append(r.stderr)
    mean, se = np.mean(risks), np.std(risks, ddof=1) / math.sqrt(len(risks))
    margin = 3 * se + max(bounds)
    assert r_star - margin <= mean <= tsd.cover_hart_bound(r_star) + margin
    assert mean > r_star + 0.05  # and clearly not consistent: ≈ R* + 0.1 here


@pytest.mark.slow
def test_alpha_equal_m_improves_with_n_and_alpha_below_m_does_not():
    """Claim 3 on `ArcBumpTask` (m = 1, R* = 0.1; an arc of 0.15 rad with η = 0.9): the deep
    classifier with α = m = 1 lowers its exact excess risk from n = 64 to n = 2,048 (mean of
    12 draws, by more than 3 s.e. of the difference), while α = 0.5 < m stays outvoted on
    the arc: excess risk within 3 s.e. of 0.15·0.8/(π/2) = 0.076 at n = 2,048 (about 2
    minutes: slow)."""
    task = tsd.ArcBumpTask()
    r_star = task.bayes_risk().value

    def excess(alpha, n, draw):
        x, y = task.sample(n, 1000 * n + draw)
        clf = ts.InfiniteDepthClassifier(ts.consistent_dual(alpha, "polynomial")).fit(x, y)
        theta = np.arctan2(x[:, 1], x[:, 0])
        r = task.risk(
            clf.predict, n_grid=5001, extra_points=_gap_points(theta, math.pi / 2), refine=30
        )
        bounds.append(r.stderr)  # quadrature error bound, added to every margin below
        return r.value - r_star

    bounds: list[float] = []
    draws = range(12)
    small = np.array([excess(1.0, 64, d) for d in draws])
    large = np.array([excess(1.0, 2048, d) for d in draws])
    low = np.array([excess(0.5, 2048, d) for d in draws])
    quad = max(bounds)
    assert quad < 0.01
    diff_se = math.sqrt(small.var(ddof=1) / 12 + large.var(ddof=1) / 12)
    assert small.mean() - large.mean() > 3 * diff_se + quad
    plateau = 0.15 * 0.8 / (math.pi / 2)
    assert abs(low.mean() - plateau) <= 3 * low.std(ddof=1) / math.sqrt(12) + quad
    assert low.mean() > large.mean() + 0.03
