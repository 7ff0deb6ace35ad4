"""Two-class tasks on the sphere with a known Bayes rule, for testing consistency of classifiers.

Radhakrishnan, Belkin & Uhler, "Wide and deep neural networks achieve consistency for
classification", PNAS 120 (2023), study when the infinite-width, infinite-depth limits of neural
networks, which act as singular-kernel (Nadaraya–Watson-type) classifiers, are Bayes-consistent.
Checking that numerically needs data whose Bayes rule and Bayes risk are known exactly; this
module provides such data.

**Dirichlet tasks** (`DirichletTask`). Class k ∈ {0, 1} has prior weight
w₁ = P(y = 1) = ``prior`` (default 0.4), w₀ = 1 − w₁, and its point p on the simplex
Δ^(d−1) = {p ≥ 0, Σp = 1} follows Dirichlet(α_k), with density

    f_k(p) = Γ(Σᵢ α_{k,i}) / Πᵢ Γ(α_{k,i}) · Πᵢ p_i^(α_{k,i} − 1).

The observed input is x = p / ‖p‖₂ on the positive orthant of the unit sphere S^(d−1); the
inverse map is p = x / Σᵢ xᵢ. The density of x on the sphere is f_k(p(x)) · J(x), where J is
the Jacobian of the map x ↦ p, the same for both classes, so it cancels in the posterior odds:

    log odds(x) = log(w₁ f₁(p)) − log(w₀ f₀(p)),   Bayes rule  g*(x) = 1{log odds(x) > 0},

and the Bayes risk is R* = E_x[min(η(x), 1 − η(x))] with η = P(y = 1 | x) = σ(log odds).
For d = 2, t = p[0] ~ Beta(α_{k,0}, α_{k,1}) given y = k (density f_k(t)), and
R* = ∫₀¹ min(w₁ f₁(t), w₀ f₀(t)) dt is computed exactly from the Beta CDFs between the crossing
points of w₁ f₁ and w₀ f₀.
`DIRICHLET_PARAMS` holds the parameter sets for d = 2, 3, 5, 9 (`DirichletTask.paper`).

**Noisy half-sphere task** (`NoisyLabelsTask`). x uniform on the whole sphere S^(d−1), of
intrinsic dimension m = d − 1; y = 1{x₀ > 0}, flipped with probability ``flip`` ≤ 1/2. The Bayes
rule is 1{x₀ > 0} and the Bayes risk is exactly ``flip``.

The asymptotic risk of the 1-nearest-neighbour rule lies in [R*, 2R*(1 − R*)]
(Cover & Hart 1967; `cover_hart_bound`).

All functions are numpy/scipy in float64 and pure: randomness comes only from the ``seed``
passed to ``np.random.default_rng``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import optimize, special, stats

__all__ = [
    "DIRICHLET_PARAMS",
    "Risk",
    "DirichletTask",
    "NoisyLabelsTask",
    "ArcBumpTask",
    "interpolation_points",
    "noisy_labels_task",
    "cover_hart_bound",
]

#: Dirichlet parameters of the paper's tasks, keyed by the dimension d, in the paper's order
#: (α₁, α₂): in the authors' code (uhlerlab/inf_depth_ntks) α₁ is the class labelled +1 with
#: prior 0.4, so `DirichletTask.paper` makes α₁ our class 1 (prior 0.4) and α₂ class 0.
DIRICHLET_PARAMS: dict[int, tuple[tuple[float, ...], tuple[float, ...]]] = {
    2: ((1.0, 2.0), (2.0, 1.0)),
    3: ((0.5, 0.5, 2.5), (2.5, 0.1, 0.5)),
    5: ((3.0, 1.0, 2.0, 1.0, 1.0), (1.0, 2.0, 2.0, 2.0, 3.0)),
    9: (
        (1.0, 2.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0),
        (1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 2.0, 2.0, 1.0),
    ),
}

#: Distance from the unit sphere that `DirichletTask.to_simplex` accepts.
SPHERE_TOL = 1e-8

Classifier = Callable[[np.ndarray], np.ndarray]


class Risk(NamedTuple):
    """A risk (probability of misclassification) and its uncertainty.

    ``stderr`` is the Monte Carlo standard error of ``value``; 0.0 for a closed-form value;
    for `DirichletTask.risk` it is a deterministic bound on the discretisation error.
    """

    value: float
    stderr: float


# --------------------------------------------------------------------------- validation


def _check_count(n, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_points(x, dim: int, name: str = "x") -> np.ndarray:
    """x as a finite float64 array of shape (n, dim) (a single point (dim,) becomes (1, dim))."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a real array of shape (n, {dim}): {err}") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}) or ({dim},), got {np.shape(x)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return arr


def _check_labels(labels, n: int) -> np.ndarray:
    """The output of a classifier ``predict`` on n points: shape (n,), values in {0, 1}."""
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise ValueError(f"predict must return labels of shape ({n},), got shape {arr.shape}")
    if not np.all((arr == 0) | (arr == 1)):
        bad = arr[~((arr == 0) | (arr == 1))][:3]
        raise ValueError(f"predict must return labels in {{0, 1}}, got values such as {bad}")
    return arr.astype(np.int64)


def _monte_carlo_risk(task, predict: Classifier, n: int, seed: int) -> Risk:
    x, y = task.sample(n, seed)
    errors = _check_labels(predict(x), n) != y
    p = float(errors.mean())
    return Risk(p, math.sqrt(p * (1.0 - p) / n))


# --------------------------------------------------------------------------- Dirichlet tasks


def _quadrature_risk(predict, point_of, mass, hi: float, mids: np.ndarray, refine: int) -> Risk:
    """Risk of ``predict`` on a 1-D task with coordinate t ∈ [0, hi].

    ``predict`` is evaluated at the sorted points ``mids``; every pair of neighbours with
    different labels brackets a change, which is then located by ``refine`` bisection steps
    (all brackets at once). The prediction is taken as constant between the located changes
    (each placed at its bracket's middle), and ``mass(a, b) -> (m0, m1)`` gives the exact
    probability of (y = 0, t ∈ [a, b]) and (y = 1, t ∈ [a, b]). Returns Risk(value, bound),
    bound = the mass of the final brackets and of the two end cells [0, mids₀], [mids₋₁, hi]:
    exact when predict changes at most once between neighbouring evaluation points.
    """
    pred = _check_labels(predict(point_of(mids)), len(mids))
    change = np.flatnonzero(pred[1:] != pred[:-1])
    lo, up = mids[change].copy(), mids[change + 1].copy()
    left = pred[change]
    for _ in range(int(refine)):
        if lo.size == 0:
            break
        mid = 0.5 * (lo + up)
        same = _check_labels(predict(point_of(mid)), len(mid)) == left
        lo, up = np.where(same, mid, lo), np.where(same, up, mid)
    cuts = np.concatenate([[0.0], 0.5 * (lo + up), [hi]])
    labels = np.concatenate([pred[:1], pred[change + 1]])
    m0, m1 = mass(cuts[:-1], cuts[1:])
    value = float(np.sum(np.where(labels == 0, m1, m0)))
    b0, b1 = mass(lo, up)
    e0, e1 = mass(np.array([0.0, mids[-1]]), np.array([mids[0], hi]))
    return Risk(value, float(np.sum(b0 + b1) + np.sum(e0 + e1)))


@dataclass(frozen=True)
class DirichletTask:
    """Class k ∈ {0, 1} is Dirichlet(α_k) on the simplex, seen on the sphere as x = p/‖p‖₂.

    Args:
        alpha0: Dirichlet parameters α₀ of class 0 (length d ≥ 2, all > 0).
        alpha1: Dirichlet parameters α₁ of class 1 (same length).
        prior: w₁ = P(y = 1), in (0, 1).

    See the module docstring for the formulas; ``DirichletTask.paper(d)`` builds the task of
    Radhakrishnan, Belkin & Uhler (PNAS 2023) for d ∈ {2, 3, 5, 9}.
    """

    alpha0: tuple[float, ...]
    alpha1: tuple[float, ...]
    prior: float = 0.4

    def __post_init__(self):
        alphas = {}
        for name in ("alpha0", "alpha1"):
            try:
                a = np.asarray(getattr(self, name), dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{name} must be a sequence of positive numbers, got {getattr(self, name)!r}"
                ) from None
            if a.ndim != 1 or a.size < 2:
                raise ValueError(f"{name} must be a sequence of length >= 2, got shape {a.shape}")
            if not np.all(np.isfinite(a)) or not np.all(a > 0):
                raise ValueError(f"{name} must be finite and positive, got {tuple(a.tolist())}")
            alphas[name] = tuple(a.tolist())
        if len(alphas["alpha0"]) != len(alphas["alpha1"]):
            raise ValueError(
                f"alpha0 and alpha1 must have the same length, got {len(alphas['alpha0'])} "
                f"and {len(alphas['alpha1'])}"
            )
        prior = self.prior
        if isinstance(prior, bool) or not isinstance(prior, numbers.Real):
            raise ValueError(f"prior must be a number in (0, 1), got {prior!r}")
        if not 0.0 < float(prior) < 1.0:
            raise ValueError(f"prior must lie strictly between 0 and 1, got {prior!r}")
        object.__setattr__(self, "alpha0", alphas["alpha0"])
        object.__setattr__(self, "alpha1", alphas["alpha1"])
        object.__setattr__(self, "prior", float(prior))

    @classmethod
    def paper(cls, dim: int, prior: float = 0.4) -> DirichletTask:
        """The task of dimension ``dim`` from `DIRICHLET_PARAMS` (d ∈ {2, 3, 5, 9}): class 1
        (prior ``prior``) is the paper's first parameter vector, class 0 the second. The
        authors draw exactly ⌊0.4 n⌋ points of class 1; here labels are i.i.d. Bernoulli."""
        if isinstance(dim, bool) or dim not in DIRICHLET_PARAMS:
            raise ValueError(f"dim must be one of {sorted(DIRICHLET_PARAMS)}, got {dim!r}")
        first, second = DIRICHLET_PARAMS[dim]
        return cls(alpha0=second, alpha1=first, prior=prior)

    @property
    def dim(self) -> int:
        """d: the ambient dimension (x ∈ S^(d−1) ⊂ R^d); the intrinsic dimension is d − 1."""
        return len(self.alpha0)

    @property
    def _weights(self) -> tuple[float, float]:
        return 1.0 - self.prior, self.prior

    # ------------------------------------------------------------------ sampling and maps

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """n i.i.d. pairs: y ~ Bernoulli(prior), p | y = k ~ Dirichlet(α_k), x = p / ‖p‖₂.

        Returns x (n, d) float64 on the unit sphere (positive orthant) and y (n,) int64.
        Draw order from ``np.random.default_rng(seed)``: the n labels, then class 0's points,
        then class 1's.
        """
        n = _check_count(n, "n")
        rng = np.random.default_rng(_check_seed(seed))
        y = (rng.random(n) < self.prior).astype(np.int64)
        p = np.empty((n, self.dim))
        for k, alpha in enumerate((self.alpha0, self.alpha1)):
            mask = y == k
            p[mask] = rng.dirichlet(alpha, size=int(mask.sum()))
        x = p / np.linalg.norm(p, axis=1, keepdims=True)
        return x, y

    def to_simplex(self, x) -> np.ndarray:
        """p = x / Σᵢ xᵢ for x (n, d) on the unit sphere in the closed positive orthant.

        Raises ValueError if x is not finite, has a negative entry, or is farther than
        ``SPHERE_TOL`` = 1e-8 from the sphere. A single point (d,) gives (1, d).
        """
        x = _check_points(x, self.dim)
        if np.any(x < 0):
            raise ValueError(
                f"x must lie in the closed positive orthant; min entry {float(x.min())!r}"
            )
        dist = np.abs(np.linalg.norm(x, axis=1) - 1.0)
        if np.any(dist > SPHERE_TOL):
            raise ValueError(
                f"x must lie on the unit sphere (| ‖x‖ - 1 | <= {SPHERE_TOL}); "
                f"largest distance {float(dist.max()):.3g}"
            )
        return x / x.sum(axis=1, keepdims=True)

    # ------------------------------------------------------------------ Bayes rule

    def log_posterior_odds(self, x) -> np.ndarray:
        """log P(y=1|x)/P(y=0|x) = log(w₁ f₁(p)) − log(w₀ f₀(p)), p = x / Σx; shape (n,).

        The simplex→sphere Jacobian is common to both classes and cancels. Interior points use
        ``scipy.stats.dirichlet.logpdf``. On the boundary (some pᵢ = 0, where f_k is 0 or ∞ and
        scipy refuses α < 1) the value is the limit along the segment from p to the centroid
        c = (1/d, …): with Z = {i : pᵢ = 0} and s = Σ_{i∈Z} (α_{1,i} − α_{0,i}), the odds
        behave as −s·log t + O(1) as t → 0, so the limit is −∞ for s > 0, +∞ for s < 0, and
        for s = 0 the finite value log(w₁/w₀) + log B(α₀) − log B(α₁)
        + Σ_{i∉Z} (α_{1,i} − α_{0,i}) log pᵢ (B the multivariate Beta function). Never NaN.
        """
        p = self.to_simplex(x)
        w0, w1 = self._weights
        a0 = np.asarray(self.alpha0)
        a1 = np.asarray(self.alpha1)
        out = np.empty(p.shape[0])
        interior = np.all(p > 0, axis=1)
        if interior.any():
            pt = p[interior].T  # (d, n_interior): scipy takes the components on axis 0
            out[interior] = np.reshape(
                math.log(w1)
                + stats.dirichlet.logpdf(pt, a1)
                - math.log(w0)
                - stats.dirichlet.logpdf(pt, a0),
                -1,
            )
        if not interior.all():
            pb = p[~interior]
            zero = pb == 0
            c = a1 - a0
            log_norm = (
                math.log(w1 / w0)
                + special.gammaln(a1.sum())
                - special.gammaln(a1).sum()
                - special.gammaln(a0.sum())
                + special.gammaln(a0).sum()
            )
            finite = log_norm + np.sum(np.where(zero, 0.0, c * np.log(np.where(zero, 1.0, pb))), 1)
            s = np.sum(np.where(zero, c, 0.0), axis=1)
            out[~interior] = np.where(s > 0, -np.inf, np.where(s < 0, np.inf, finite))
        return out

    def bayes_predict(self, x) -> np.ndarray:
        """The Bayes rule g*(x) = 1{log odds(x) > 0} (ties go to class 0); int64, shape (n,)."""
        return (self.log_posterior_odds(x) > 0).astype(np.int64)

    # ------------------------------------------------------------------ risks

    def _beta_laws(self):
        """For d = 2: the laws of p₁ = p[0] given y = 0 and y = 1 (Beta(α_{k,0}, α_{k,1}))."""
        return stats.beta(*self.alpha0), stats.beta(*self.alpha1)

    def _crossings_2d(self) -> list[float]:
        """For d = 2: the points in (0, 1) where w₁ f₁(t) = w₀ f₀(t), t = p[0].

        h(t) = log(w₁ f₁ / w₀ f₀) = A + b log t + c log(1 − t) with b = α_{1,0} − α_{0,0},
        c = α_{1,1} − α_{0,1}; h' = b/t − c/(1 − t) vanishes at most at t = b/(b + c), so h
        is monotone on each side of it and each side holds at most one root (brentq).
        """
        law0, law1 = self._beta_laws()
        w0, w1 = self._weights
        b = self.alpha1[0] - self.alpha0[0]
        c = self.alpha1[1] - self.alpha0[1]

        def h(t):
            return math.log(w1) + law1.logpdf(t) - math.log(w0) - law0.logpdf(t)

        ends = [1e-300, 1.0 - 2.0**-53]
        if b + c != 0 and 0 < b / (b + c) < 1:
            ends.insert(1, b / (b + c))
        roots = []
        for lo, hi in zip(ends[:-1], ends[1:]):
            h_lo, h_hi = h(lo), h(hi)
            if h_lo == 0:
                roots.append(lo)
            elif np.sign(h_lo) * np.sign(h_hi) < 0:
                roots.append(optimize.brentq(h, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps))
        return sorted(set(roots))

    def bayes_risk(self, n: int = 1_000_000, seed: int = 0) -> Risk:
        """R* = E_x[min(η(x), 1 − η(x))], η = σ(log odds).

        d = 2: exact (``stderr`` = 0.0, ``n`` and ``seed`` unused). Between consecutive
        crossing points of w₁f₁ and w₀f₀ the smaller of the two is w_k f_k for a fixed k, whose
        integral is w_k (F_k(b) − F_k(a)) with F_k the Beta CDF; R* is the sum over the pieces.
        For (1, 2)/(2, 1) and prior 0.4: f₀ = 2(1 − t), f₁ = 2t, crossing at t = 0.6,
        R* = 0.4·0.6² + 0.6·0.4² = 0.24.

        d > 2: Monte Carlo with n points x drawn from the task (``sample(n, seed)``) of the
        conditional risk min(η, 1 − η) = σ(−|log odds|); ``stderr`` = sample sd / √n.
        (This has smaller variance than counting the errors of the Bayes rule.)
        """
        if self.dim == 2:
            law0, law1 = self._beta_laws()
            w0, w1 = self._weights
            knots = [0.0, *self._crossings_2d(), 1.0]
            total = 0.0
            for a, b in zip(knots[:-1], knots[1:]):
                mid = 0.5 * (a + b)
                # the smaller weighted density on (a, b): no crossing inside, so its midpoint
                # value decides.
                if w1 * law1.pdf(mid) <= w0 * law0.pdf(mid):
                    total += w1 * (law1.cdf(b) - law1.cdf(a))
                else:
                    total += w0 * (law0.cdf(b) - law0.cdf(a))
            return Risk(float(total), 0.0)
        n = _check_count(n, "n")
        x, _ = self.sample(n, seed)
        cond = special.expit(-np.abs(self.log_posterior_odds(x)))
        return Risk(float(cond.mean()), float(cond.std(ddof=1) / math.sqrt(n)))

    def risk(
        self, predict: Classifier, n_grid: int = 200_001, extra_points=None, refine: int = 0
    ) -> Risk:
        """Risk P(predict(x) ≠ y) of a classifier, by quadrature on the d = 2 task.

        The segment t = p[0] ∈ [0, 1] is cut into ``n_grid`` cells of width 1/n_grid; predict
        is evaluated at the cell midpoints tⱼ (x = (t, 1 − t)/‖(t, 1 − t)‖) and taken as
        constant on each cell, whose class masses are exact Beta-CDF differences:

            value = Σⱼ w₁ P₁(cellⱼ) 1{predⱼ = 0} + w₀ P₀(cellⱼ) 1{predⱼ = 1}.

        Returns Risk(value, bound). Assuming predict changes label at most once between
        consecutive midpoints, the true risk differs from ``value`` only on [tⱼ, tⱼ₊₁] around
        each change and on the two end half-cells, so |error| ≤ bound = P(x in those
        intervals) (w₀P₀ + w₁P₁ of them); each change costs at most max density × 1/n_grid.
        For a classifier with no label change on the grid, ``value`` is exact up to rounding
        and ``bound`` is just the end half-cells' mass.

        ``extra_points`` (values of t in [0, 1]) are evaluated as well; the cells are then the
        Voronoi cells of all evaluation points. Put them where the classifier may change label
        more than once per grid cell, e.g. between consecutive training points of an
        interpolating classifier: the bound is then small even when the labels flip often.

        ``refine`` > 0 locates every label change by that many bisection steps, which divides
        the bound by about 2^refine (`_quadrature_risk`); refine = 0 is the cell rule above.

        For d > 2 there is no exact quadrature of a black-box classifier over the simplex:
        use `monte_carlo_risk`.
        """
        if self.dim != 2:
            raise NotImplementedError(
                f"risk() integrates exactly only on the d = 2 task (got d = {self.dim}): "
                "there is no exact quadrature of an arbitrary classifier over a higher-"
                "dimensional simplex; use monte_carlo_risk(predict, n, seed)"
            )
        n_grid = _check_count(n_grid, "n_grid")
        if n_grid < 2:
            raise ValueError(f"n_grid must be at least 2, got {n_grid}")
        law0, law1 = self._beta_laws()
        w0, w1 = self._weights
        mids = (np.arange(n_grid) + 0.5) / n_grid
        if extra_points is not None:
            extra = np.asarray(extra_points, np.float64).ravel()
            if not np.all((extra > 0) & (extra < 1)):
                raise ValueError("extra_points must lie in the open interval (0, 1)")
            mids = np.unique(np.concatenate([mids, extra]))

        def point_of(t):
            pts = np.stack([t, 1.0 - t], axis=1)
            return pts / np.linalg.norm(pts, axis=1, keepdims=True)

        def mass(a, b):
            return w0 * (law0.cdf(b) - law0.cdf(a)), w1 * (law1.cdf(b) - law1.cdf(a))

        return _quadrature_risk(predict, point_of, mass, 1.0, mids, refine)

    def monte_carlo_risk(self, predict: Classifier, n: int, seed: int) -> Risk:
        """Fraction of errors of ``predict`` on a fresh ``sample(n, seed)``, with its binomial
        standard error √(r̂(1 − r̂)/n)."""
        return _monte_carlo_risk(self, predict, n, seed)


# --------------------------------------------------------------------------- noisy labels


@dataclass(frozen=True)
class NoisyLabelsTask:
    """x uniform on S^(d−1) ⊂ R^d; y = 1{x₀ > 0} XOR Bernoulli(flip).

    The posterior is η(x) = 1 − flip for x₀ > 0 and flip for x₀ < 0, so for flip ≤ 1/2 the
    Bayes rule is 1{x₀ > 0} and the Bayes risk is exactly ``flip``. The data manifold has
    intrinsic dimension m = d − 1, against which the exponent of a singular kernel
    ‖x − z‖^(−α) is compared.

    Args:
        dim: ambient dimension d ≥ 2.
        flip: label-noise probability in [0, 1/2].
    """

    dim: int
    flip: float

    def __post_init__(self):
        if isinstance(self.dim, bool) or not isinstance(self.dim, numbers.Integral):
            raise ValueError(f"dim must be an integer >= 2, got {self.dim!r}")
        if self.dim < 2:
            raise ValueError(f"dim must be an integer >= 2, got {self.dim!r}")
        if isinstance(self.flip, bool) or not isinstance(self.flip, numbers.Real):
            raise ValueError(f"flip must be a number in [0, 0.5], got {self.flip!r}")
        if not 0.0 <= float(self.flip) <= 0.5:
            raise ValueError(f"flip must lie in [0, 0.5], got {self.flip!r}")
        object.__setattr__(self, "dim", int(self.dim))
        object.__setattr__(self, "flip", float(self.flip))

    @property
    def intrinsic_dim(self) -> int:
        """m = d − 1, the dimension of the sphere S^(d−1)."""
        return self.dim - 1

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """x = z / ‖z‖ with z ~ N(0, I_d) (uniform on the sphere), y = 1{x₀ > 0} XOR
        Bernoulli(flip). Returns x (n, d) float64 and y (n,) int64."""
        n = _check_count(n, "n")
        rng = np.random.default_rng(_check_seed(seed))
        z = rng.standard_normal((n, self.dim))
        x = z / np.linalg.norm(z, axis=1, keepdims=True)
        noise = rng.random(n) < self.flip
        y = ((x[:, 0] > 0) ^ noise).astype(np.int64)
        return x, y

    def bayes_predict(self, x) -> np.ndarray:
        """g*(x) = 1{x₀ > 0}; int64, shape (n,)."""
        return (_check_points(x, self.dim)[:, 0] > 0).astype(np.int64)

    def bayes_risk(self) -> Risk:
        """R* = flip, exactly."""
        return Risk(self.flip, 0.0)

    def monte_carlo_risk(self, predict: Classifier, n: int, seed: int) -> Risk:
        """Fraction of errors of ``predict`` on a fresh ``sample(n, seed)``, with its binomial
        standard error √(r̂(1 − r̂)/n)."""
        return _monte_carlo_risk(self, predict, n, seed)


@dataclass(frozen=True)
class ArcBumpTask:
    """A 2-D task on which a singular kernel with α < m = 1 visibly fails.

    x = (cos θ, sin θ) with θ uniform on [0, π/2] (the positive quarter of S¹, m = 1);
    η(θ) = P(y = 1 | θ) = ``high`` on the arc [``start``, ``stop``] and ``low`` elsewhere. The
    Bayes rule is 1{θ ∈ [start, stop]} and the Bayes risk is exactly
    R* = (w·(1 − high) + (π/2 − w)·low)/(π/2), w = stop − start. A kernel rule whose kernel is
    integrable at 0 (‖x − z‖^(−α), α < m) keeps averaging over the whole quarter circle as
    n grows, so a short arc is outvoted and its excess risk stays near w·(2·high − 1)/(π/2).
    """

    start: float = 0.6
    stop: float = 0.75
    high: float = 0.9
    low: float = 0.1

    def __post_init__(self):
        for name in ("start", "stop", "high", "low"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if not 0.0 <= self.start < self.stop <= math.pi / 2:
            raise ValueError(f"need 0 <= start < stop <= π/2, got {self.start}, {self.stop}")
        if not (0.0 <= self.low < 0.5 < self.high <= 1.0):
            raise ValueError(f"need 0 <= low < 1/2 < high <= 1, got {self.low}, {self.high}")

    dim = 2
    intrinsic_dim = 1

    def _theta(self, x) -> np.ndarray:
        x = _check_points(x, 2)
        return np.arctan2(x[:, 1], x[:, 0])

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        n = _check_count(n, "n")
        rng = np.random.default_rng(_check_seed(seed))
        theta = rng.uniform(0.0, math.pi / 2, n)
        inside = (theta >= self.start) & (theta <= self.stop)
        y = (rng.random(n) < np.where(inside, self.high, self.low)).astype(np.int64)
        return np.stack([np.cos(theta), np.sin(theta)], 1), y

    def bayes_predict(self, x) -> np.ndarray:
        t = self._theta(x)
        return ((t >= self.start) & (t <= self.stop)).astype(np.int64)

    def bayes_risk(self) -> Risk:
        w = self.stop - self.start
        return Risk((w * (1 - self.high) + (math.pi / 2 - w) * self.low) / (math.pi / 2), 0.0)

    def risk(
        self, predict: Classifier, n_grid: int = 200_001, extra_points=None, refine: int = 0
    ) -> Risk:
        """Exact risk up to the located label changes, as `DirichletTask.risk`: ``predict`` on
        the midpoints of ``n_grid`` equal θ-cells (plus ``extra_points``, angles in (0, π/2)),
        changes located by ``refine`` bisection steps, exact masses of y = 1 and y = 0."""
        n_grid = _check_count(n_grid, "n_grid")
        half = math.pi / 2
        mids = (np.arange(n_grid) + 0.5) * half / n_grid
        if extra_points is not None:
            extra = np.asarray(extra_points, np.float64).ravel()
            if not np.all((extra > 0) & (extra < half)):
                raise ValueError("extra_points must be angles in the open interval (0, π/2)")
            mids = np.unique(np.concatenate([mids, extra]))

        def point_of(theta):
            return np.stack([np.cos(theta), np.sin(theta)], 1)

        def mass(a, b):  # θ uniform on [0, π/2], η piecewise constant
            inside = np.clip(np.minimum(b, self.stop) - np.maximum(a, self.start), 0, None)
            m1 = (self.high * inside + self.low * (b - a - inside)) / half
            return (b - a) / half - m1, m1

        return _quadrature_risk(predict, point_of, mass, half, mids, refine)


def interpolation_points(t, hi: float) -> np.ndarray:
    """Extra evaluation points for the ``risk`` of a classifier that interpolates training
    data at coordinates ``t`` (in (0, ``hi``)): the training coordinates themselves and the
    midpoints between them. An interpolating rule predicts yⱼ at tⱼ, so an island it makes
    around a mislabelled point (two label changes, possibly far closer together than any
    grid cell) contains an evaluation point and its two changes are then bracketed and found
    by the bisection of ``risk(..., refine=k)``."""
    t = np.sort(np.asarray(t, np.float64).ravel())
    if t.size == 0 or not np.all((t > 0) & (t < hi)):
        raise ValueError(f"t must be non-empty and lie in (0, {hi})")
    return np.unique(np.concatenate([t, 0.5 * (t[1:] + t[:-1])]))


def noisy_labels_task(dim: int, flip: float) -> NoisyLabelsTask:
    """The half-sphere task with label noise ``flip`` on S^(dim−1) (`NoisyLabelsTask`)."""
    return NoisyLabelsTask(dim, flip)


def cover_hart_bound(bayes_risk: float | Risk) -> float:
    """2R*(1 − R*): the two-class upper bound on the asymptotic risk of the 1-NN rule,
    R* ≤ R_NN ≤ 2R*(1 − R*) (Cover & Hart, IEEE Trans. Inf. Theory 13, 1967).

    ``bayes_risk`` is R* ∈ [0, 1/2], a number or a `Risk` (its value is used).
    """
    r = bayes_risk.value if isinstance(bayes_risk, Risk) else bayes_risk
    if isinstance(r, bool) or not isinstance(r, numbers.Real) or not 0.0 <= float(r) <= 0.5:
        raise ValueError(f"bayes_risk must be a number in [0, 0.5], got {bayes_risk!r}")
    r = float(r)
    return 2.0 * r * (1.0 - r)
