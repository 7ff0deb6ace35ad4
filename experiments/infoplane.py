"""The information plane: Shwartz-Ziv & Tishby (2017), Saxe et al. (2018), Chelombiev et al. (2019).

The 12-10-7-5-4-3-2 network (softmax output) is trained on the 4096-input Tishby data set
(`theory.information.tishby_dataset`) with Adam, many seeds at once; at log-spaced epochs every
layer's activations on all 4096 inputs go through the estimators of `theory.information` and
only the estimates are kept. Figures (paper_figs/infoplane_*.png/.pdf):

- infoplane_tishby: tanh, 30 bin edges on [−1, 1] (the original binning): the information
  plane averaged over seeds, points coloured by epoch, same-epoch points of the six layers
  joined; every network at three epochs (the paper's figure 2); I(X;T) and I(T;Y) of each
  layer against epoch, where the fitting phase (both rise) and the compression phase (I(X;T)
  of the last layers falls) can be read off;
- infoplane_saxe: tanh against ReLU, with fixed-width binning (0.07, unbounded: Saxe et al.'s
  code) and with the KDE upper bound (noise variance 0.1, the issue's value);
- infoplane_chelombiev: EBAB (30 adaptive bins) and adaptive KDE (σ² = 0.1·max|T|², our
  choice of constant: the paper's was not available) for six activations;
- infoplane_compression: the compression of every layer (peak I(X;T) minus final, EBAB) for
  every network, by activation, without and with L2; the compression of the output layer
  against test accuracy, and the rank correlation of every layer's compression with test
  accuracy and with minus the generalisation gap (train − test accuracy).

The caveat every figure repeats: a deterministic layer fed 4096 distinct inputs is almost surely
injective, so the true I(X;T) is 12 bits and I(T;Y) = H(Y) ≈ 0.999 bits at every epoch. What the
estimators measure is how the layer clusters the inputs at the estimator's scale (the bin width,
the KDE noise): geometric compression, not a change of information.

Settings (each in its config field): Adam with learning rate 4e-4 (all three codes), minibatches
of 256 (Saxe et al.'s and Chelombiev et al.'s code; the original code's is 512), 8000 epochs (the
original code's and Chelombiev et al.'s; Saxe et al.'s 10,000), a random 80 % training split per
seed (the original code's split, the first 80 % of the rows unshuffled, is `--split original`),
weights ~ truncated normal with s.d. 1/√fan_in (the original code's, for every activation).
Shwartz-Ziv & Tishby and Saxe et al. average 50 networks; the default here is 8 per
configuration (the spread over seeds is drawn). Networks that stay at chance are left out of
means and correlations (`FIT_ACCURACY`), and the titles count them.

    python -m experiments.infoplane [--quick] [--flags]   (--help lists them)
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
from scipy import stats

from experiments._common import (
    ConfigBase,
    Interval,
    Positive,
    progress,
    pyplot,
    run_experiment,
)
from theory import information as ti

NAME = "infoplane"
LAYER_NAMES = ("T1", "T2", "T3", "T4", "T5", "Ŷ")
ACT_LABEL = {
    "tanh": "tanh",
    "softsign": "softsign",
    "relu": "ReLU",
    "elu": "ELU",
    "softplus": "softplus",
    "centred_softplus": "softplus − ln 2",
    "linear": "linear",
}
SATURATING = ("tanh", "softsign")


# ------------------------------------------------------------------------ config


@dataclass(frozen=True)
class Training(ConfigBase):
    """training: the network, optimiser and seeds shared by every figure"""

    epochs: Annotated[int, Interval(ge=2)] = 8000
    """passes over the training set (the original code and Chelombiev et al.: 8000; Saxe: 10^4)"""
    batch_size: Annotated[int, Positive] = 256
    """minibatch size (Saxe's and Chelombiev's code: 256; the original code: 512)"""
    learning_rate: Annotated[float, Positive] = 4e-4
    """Adam's learning rate (all three codes)"""
    train_fraction: Annotated[float, Interval(gt=0, le=1)] = 0.8
    """share of the 4096 inputs used for training (all three papers: 80 %)"""
    split: Literal["random", "original"] = "random"
    """'random': a fresh split per seed; 'original': the first rows, unshuffled (IDNNs' code)"""
    seeds: Annotated[int, Interval(ge=2)] = 8
    """networks per configuration (the papers: 50)"""
    n_records: Annotated[int, Interval(ge=3)] = 30
    """log-spaced epochs (plus epoch 0) at which every layer's MI is estimated"""
    workers: Annotated[int, Positive] = 2
    """configurations trained at once in threads (XLA runs these tiny nets on one core each)"""


@dataclass(frozen=True)
class Estimators(ConfigBase):
    """estimators: the settings of the four MI estimators"""

    n_edges: Annotated[int, Interval(ge=2)] = 30
    """bin edges on [−1, 1] of the original binning (np.linspace(−1, 1, 30))"""
    bin_width: Annotated[float, Positive] = 0.07
    """width of Saxe et al.'s fixed bins (unbounded: ReLU activations are not clipped)"""
    ebab_bins: Annotated[int, Interval(ge=2)] = 30
    """bins of the entropy-based adaptive binning (Chelombiev et al.: 30)"""
    kde_noise_var: Annotated[float, Positive] = 0.1
    """σ² of the fixed-noise KDE (Saxe et al.; their IB-net notebook uses 1e-3)"""
    akde_scale: Annotated[float, Positive] = 0.1
    """adaptive KDE: σ² = scale · (max |T| over the layer)²"""
    kde_seeds: Annotated[int, Positive] = 4
    """seeds of each configuration whose KDE estimates are computed (65 ms per layer-epoch)"""


@dataclass(frozen=True)
class Activations(ConfigBase):
    """activations: Chelombiev et al.'s comparison"""

    activations: tuple[str, ...] = (
        "tanh",
        "softsign",
        "relu",
        "elu",
        "softplus",
        "centred_softplus",
    )
    """hidden activations compared (tanh and relu are always trained: the first two figures)"""
    l2: Annotated[float, Positive] = 0.015
    """λ of the L2 penalty λ‖W‖²/2 on the hidden weights (Chelombiev et al.'s code: 0.015)"""


@dataclass(frozen=True)
class Config(ConfigBase):
    training: Training = field(default_factory=Training)
    estimators: Estimators = field(default_factory=Estimators)
    comparison: Activations = field(default_factory=Activations)

    def check(self):
        bad = [a for a in self.comparison.activations if a not in ti.ACTIVATIONS]
        if bad:
            raise ValueError(f"--activations must be among {sorted(ti.ACTIVATIONS)}, got {bad}")
        if len(set(self.comparison.activations)) != len(self.comparison.activations):
            raise ValueError("--activations must not repeat")
        if self.estimators.kde_seeds > self.training.seeds:
            raise ValueError("--kde-seeds must not exceed --seeds")


QUICK = dict(
    training=dict(epochs=200, seeds=2, n_records=6),
    estimators=dict(kde_seeds=1),
    comparison=dict(activations=("tanh", "relu")),
)


# ------------------------------------------------------------------------ computation


def record_epochs(epochs: int, n: int) -> np.ndarray:
    """Epoch 0 and ``n`` log-spaced epochs from 1 to ``epochs`` (duplicates removed)."""
    e = np.unique(np.round(np.geomspace(1, epochs, n)).astype(int))
    return np.concatenate([[0], e])


def _units(cfg: Config) -> list[tuple[str, float]]:
    """(activation, λ) of every trained configuration: each activation without L2, then with."""
    acts = list(dict.fromkeys(("tanh", "relu") + cfg.comparison.activations))
    return [(a, 0.0) for a in acts] + [(a, cfg.comparison.l2) for a in cfg.comparison.activations]


def _key(act: str, l2: float) -> str:
    return f"{act}" if l2 == 0 else f"{act}_l2"


def _train_cfg(cfg: Config, act: str, l2: float) -> ti.TrainConfig:
    t = cfg.training
    return ti.TrainConfig(
        activation=act,
        learning_rate=t.learning_rate,
        batch_size=t.batch_size,
        train_fraction=t.train_fraction,
        split=t.split,
        l2=l2,
    )


def _estimate(layers: list[np.ndarray], y, est: Estimators, n_kde: int, kde: bool, akde: bool):
    """MI of every layer: arrays (seeds, epochs, layers, 2 = (I(X;T), I(T;Y))) per estimator.

    The layers are zero-padded to the widest and stacked, so that each estimator runs once, on
    (layers · seeds · epochs, N, width), with one compilation: a constant zero unit changes no
    estimate (it adds one constant bin code to every pattern, nothing to a distance, nothing
    to max |T|, and EBAB's quantiles skip exact zeros).
    """
    s, e = layers[0].shape[:2]
    width = max(h.shape[-1] for h in layers)
    pad = np.stack(
        [np.pad(h, [(0, 0)] * (h.ndim - 1) + [(0, width - h.shape[-1])]) for h in layers]
    )  # (layers, seeds, epochs, N, width)
    n_layers = pad.shape[0]

    def run(fn, rows):
        flat = pad[:, :rows].reshape(n_layers * rows * e, *pad.shape[3:])
        i_xt, i_ty = fn(flat)
        both = np.stack([np.asarray(i_xt), np.asarray(i_ty)], -1)
        return both.reshape(n_layers, rows, e, 2).transpose(1, 2, 0, 3)

    edges = ti.tishby_edges(est.n_edges)
    out = {
        "bin": run(lambda t: ti.binned_mi(t, y, edges), s),
        "fixed": run(lambda t: ti.binned_mi(t, y, ti.fixed_width_edges(t, est.bin_width)), s),
        "ebab": run(lambda t: ti.adaptive_binned_mi(t, y, est.ebab_bins), s),
    }
    if kde and n_kde:
        out["kde"] = run(lambda t: ti.kde_mi(t, y, est.kde_noise_var).upper, n_kde)
    if akde and n_kde:
        out["akde"] = run(lambda t: ti.adaptive_kde_mi(t, y, est.akde_scale).upper, n_kde)
    return out


def _run_unit(cfg: Config, act: str, l2: float, x, y):
    epochs = record_epochs(cfg.training.epochs, cfg.training.n_records)
    seeds = list(range(cfg.training.seeds))
    r = ti.train(_train_cfg(cfg, act, l2), x, y, seeds, epochs)
    layers = [r[f"layer{i}"] for i in range(len(ti.LAYERS) - 1)]
    if not all(np.all(np.isfinite(h)) for h in layers):
        raise FloatingPointError(f"non-finite activations in the {act} (λ = {l2}) networks")
    out = _estimate(
        layers,
        y,
        cfg.estimators,
        cfg.estimators.kde_seeds,
        kde=l2 == 0 and act in ("tanh", "relu"),
        akde=l2 == 0,
    )
    out.update({k: r[k] for k in ("train_loss", "train_acc", "test_acc")})
    return out


def run(cfg: Config, store) -> dict[str, np.ndarray]:
    x, y = ti.tishby_dataset()
    units = _units(cfg)

    def piece(unit):
        act, l2 = unit
        return store.cached(
            _key(act, l2),
            lambda: _run_unit(cfg, act, l2, x, y),
            depends=(cfg.training, cfg.estimators, act, l2),
        )

    with ThreadPoolExecutor(cfg.training.workers) as pool:
        done = list(
            progress(pool.map(piece, units), total=len(units), desc="networks (configurations)")
        )
    results = {"epochs": record_epochs(cfg.training.epochs, cfg.training.n_records)}
    for (act, l2), arrays in zip(units, done):
        for k, v in arrays.items():
            results[f"{_key(act, l2)}/{k}"] = v
    return results


# ------------------------------------------------------------------------ analysis


def compression(mi: np.ndarray) -> np.ndarray:
    """Peak I(X;T) over the recorded epochs minus the final I(X;T): (seeds, layers), ≥ 0."""
    i_xt = mi[..., 0]
    return i_xt.max(axis=1) - i_xt[:, -1]


def gap(results, key: str) -> np.ndarray:
    """Generalisation gap of each seed: final training minus test accuracy."""
    return results[f"{key}/train_acc"][:, -1] - results[f"{key}/test_acc"][:, -1]


# A network "fits" when its final training accuracy reaches FIT_ACCURACY. Chance is the
# majority share, ≈ 0.52 of the 4096 labels (±0.01 over random 80 % splits); a ReLU network
# whose narrow layers (widths 4, 3, 2) die stays there. Such networks are left out of the
# means and correlations (the figures say how many); they are kept in the results.
FIT_ACCURACY = 0.6


def fitted(results, key: str) -> np.ndarray:
    """Boolean mask over seeds: final training accuracy ≥ FIT_ACCURACY."""
    return results[f"{key}/train_acc"][:, -1] >= FIT_ACCURACY


def select(results, key: str, est: str) -> np.ndarray:
    """The (seeds, epochs, layers, 2) estimates of the networks that fit (the KDE arrays hold
    only the first seeds)."""
    mi = results[f"{key}/{est}"]
    return mi[fitted(results, key)[: len(mi)]]


def _correlations(results, cfg: Config):
    """Spearman ρ (and p) of each layer's EBAB compression with generalisation, over every
    network that fits: with the final test accuracy and with minus the gap (train − test
    accuracy), so that ρ > 0 means "more compression, better generalisation" for both."""
    keys = [_key(a, l) for a, l in _units(cfg)]
    comp = np.concatenate([compression(select(results, k, "ebab")) for k in keys])
    acc = np.concatenate([results[f"{k}/test_acc"][fitted(results, k), -1] for k in keys])
    g = np.concatenate([gap(results, k)[fitted(results, k)] for k in keys])
    out = {}
    for name, target in (("test_acc", acc), ("minus_gap", -g)):
        rho, p = zip(*(stats.spearmanr(comp[:, j], target) for j in range(comp.shape[1])))
        out[name] = (np.array(rho), np.array(p))
    return comp, acc, out


# ------------------------------------------------------------------------ plots

CAVEAT = (
    "A deterministic layer fed 4096 distinct inputs is almost surely injective: the true I(X;T) "
    "is then 12 bits at every epoch; the estimates measure clustering at the estimator's scale."
)


def _plane(ax, mi, epochs, cbar_ax=None, title=""):
    """Mean over seeds of one (seeds, epochs, layers, 2) array in the information plane."""
    import matplotlib.colors as mcolors

    m = mi.mean(axis=0)
    norm = mcolors.LogNorm(vmin=1, vmax=epochs[-1])
    ep = np.maximum(epochs, 1)
    for j in np.linspace(0, len(epochs) - 1, min(len(epochs), 12)).astype(int):
        ax.plot(m[j, :, 0], m[j, :, 1], color="0.7", lw=0.5, zorder=1)
    sc = None
    for layer in range(m.shape[1]):
        sc = ax.scatter(
            m[:, layer, 0], m[:, layer, 1], c=ep, cmap="viridis", norm=norm, s=14, zorder=2
        )
        ax.annotate(
            LAYER_NAMES[layer],
            (m[-1, layer, 0], m[-1, layer, 1]),
            textcoords="offset points",
            xytext=(3, -9),
            fontsize=7,
        )
    ax.set_xlabel("I(X;T) (bits)")
    ax.set_ylabel("I(T;Y) (bits)")
    ax.set_title(title)
    return sc


def _colorbar(fig, sc, axes):
    cb = fig.colorbar(sc, ax=axes, fraction=0.025, pad=0.01)
    cb.set_label("epoch")


def _vs_epoch(ax, mi, epochs, which: int, ylabel: str):
    ep = np.maximum(epochs, 1)
    colors = pyplot().cm.plasma(np.linspace(0, 0.85, mi.shape[2]))
    for layer in range(mi.shape[2]):
        v = mi[:, :, layer, which]
        ax.plot(ep, v.mean(0), color=colors[layer], label=LAYER_NAMES[layer])
        ax.fill_between(ep, v.min(0), v.max(0), color=colors[layer], alpha=0.15, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel("epoch (epoch 0 drawn at 1)")
    ax.set_ylabel(ylabel)


def _count(results, key: str, est: str) -> str:
    n_all = min(len(results[f"{key}/{est}"]), len(results[f"{key}/train_acc"]))
    n_fit = len(select(results, key, est))
    return f"{n_fit} nets" if n_fit == n_all else f"{n_fit} of {n_all} nets fit"


def _snapshots(ax, mi, epochs, show):
    """Every network at a few epochs (Shwartz-Ziv & Tishby's figure 2): colour = layer."""
    colors = pyplot().cm.plasma(np.linspace(0, 0.85, mi.shape[2]))
    for (j, e), marker in zip(show, ("o", "s", "^")):
        for layer in range(mi.shape[2]):
            ax.scatter(
                mi[:, j, layer, 0],
                mi[:, j, layer, 1],
                s=12,
                marker=marker,
                color=colors[layer],
                alpha=0.7,
                lw=0,
                label=LAYER_NAMES[layer] if marker == "o" else None,
            )
        ax.scatter([], [], marker=marker, color="0.3", label=f"epoch {e}")
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    ax.set_xlabel("I(X;T) (bits)")
    ax.set_ylabel("I(T;Y) (bits)")


def plot(results, cfg: Config) -> dict:
    plt = pyplot()
    epochs = results["epochs"]
    figs = {}

    # --- Shwartz-Ziv & Tishby
    mi = select(results, "tanh", "bin")
    fig, axes = plt.subplots(2, 2, figsize=(12, 9.5), layout="constrained")
    sc = _plane(
        axes[0, 0],
        mi,
        epochs,
        title=f"tanh, {cfg.estimators.n_edges} bin edges on [−1, 1]: mean of "
        + _count(results, "tanh", "bin"),
    )
    _colorbar(fig, sc, axes[0, 0])
    middle = int(np.argmin(np.abs(epochs - 400)))
    show = [(0, epochs[0]), (middle, epochs[middle]), (len(epochs) - 1, epochs[-1])]
    _snapshots(axes[0, 1], mi, epochs, show)
    axes[0, 1].set_title("every network at three epochs (colour: layer)")
    _vs_epoch(axes[1, 0], mi, epochs, 0, "I(X;T) (bits)")
    mean = mi.mean(0)[:, :, 0]
    moving = [j for j in range(mean.shape[1]) if np.ptp(mean[:, j]) > 0.5]
    peak = epochs[np.argmax(mean, axis=0)]
    drop = mean.max(0) - mean[-1]
    axes[1, 0].set_title("I(X;T) of each layer (line: mean; band: range over networks)")
    axes[1, 0].legend(fontsize=7, ncol=2)
    _vs_epoch(axes[1, 1], mi, epochs, 1, "I(T;Y) (bits)")
    axes[1, 1].set_title("I(T;Y) (line: mean; band: range over networks)")
    fig.suptitle(
        "Shwartz-Ziv & Tishby's information plane. Layers whose mean I(X;T) moves by > 0.5 bit: "
        + ", ".join(
            f"{LAYER_NAMES[j]} peaks at epoch {peak[j]}, then falls {drop[j]:.1f} bits"
            for j in moving
        )
        + "\n"
        + CAVEAT,
        fontsize=9,
    )
    figs["infoplane_tishby"] = fig

    # --- Saxe et al.
    fig, axes = plt.subplots(2, 2, figsize=(11, 9), layout="constrained")
    rows = [
        ("fixed", f"bins of width {cfg.estimators.bin_width}"),
        ("kde", f"KDE upper bound, σ² = {cfg.estimators.kde_noise_var}"),
    ]
    for i, (est, label) in enumerate(rows):
        for j, act in enumerate(("tanh", "relu")):
            sc = _plane(
                axes[i, j],
                select(results, act, est),
                epochs,
                title=f"{ACT_LABEL[act]}: {label} ({_count(results, act, est)})",
            )
    _colorbar(fig, sc, axes)
    hidden = slice(0, len(LAYER_NAMES) - 1)
    most = {
        (act, est): compression(select(results, act, est))[:, hidden].mean(0).max()
        for act in ("tanh", "relu")
        for est in ("fixed", "kde")
    }
    fig.suptitle(
        "Saxe et al.: largest mean compression of a hidden layer (peak − final I(X;T)): tanh "
        f"{most['tanh', 'fixed']:.1f} bits (bins), {most['tanh', 'kde']:.1f} (KDE); ReLU "
        f"{most['relu', 'fixed']:.1f} (bins), {most['relu', 'kde']:.1f} (KDE)\n" + CAVEAT,
        fontsize=9,
    )
    figs["infoplane_saxe"] = fig

    # --- Chelombiev et al.: planes
    acts = cfg.comparison.activations
    n_cols = min(3, len(acts))
    n_rows = -(-len(acts) // n_cols)
    fig, axes = plt.subplots(
        2 * n_rows,
        n_cols,
        figsize=(4.3 * n_cols + 1, 3.9 * 2 * n_rows),
        layout="constrained",
        squeeze=False,
    )
    for j, act in enumerate(acts):
        for i, (est, label) in enumerate((("ebab", "EBAB"), ("akde", "adaptive KDE"))):
            sc = _plane(
                axes[i * n_rows + j // n_cols, j % n_cols],
                select(results, act, est),
                epochs,
                title=f"{ACT_LABEL[act]}: {label}\n({_count(results, act, est)})",
            )
    for k in range(len(acts), n_rows * n_cols):  # unused cells of an incomplete last row
        for i in range(2):
            axes[i * n_rows + k // n_cols, k % n_cols].set_visible(False)
    _colorbar(fig, sc, axes)
    fig.suptitle(
        f"Chelombiev et al.: adaptive estimators ({cfg.estimators.ebab_bins} EBAB bins; "
        f"KDE σ² = {cfg.estimators.akde_scale}·max|T|²), no L2, mean over networks\n" + CAVEAT,
        fontsize=9,
    )
    figs["infoplane_chelombiev"] = fig

    # --- Chelombiev et al.: compression, L2, spread, generalisation
    fig, axes = plt.subplots(
        1, 3, figsize=(16, 4.8), layout="constrained", gridspec_kw=dict(width_ratios=[2.2, 1, 1])
    )
    ax = axes[0]
    n_layers = len(LAYER_NAMES)
    rng = np.random.default_rng(0)
    for g, act in enumerate(acts):
        for k, (lam, color) in enumerate(((0.0, "C0"), (cfg.comparison.l2, "C3"))):
            c = compression(select(results, _key(act, lam), "ebab"))
            if not len(c):
                ax.annotate(
                    "no network\nfits" + (" with L2" if lam else ""),
                    (g * (n_layers + 1) + (n_layers - 1) / 2, 0.5 + 1.2 * k),
                    ha="center",
                    fontsize=7,
                    color=color,
                )
                continue
            for layer in range(n_layers):
                xpos = g * (n_layers + 1) + layer + (k - 0.5) * 0.36
                jitter = rng.uniform(-0.08, 0.08, len(c))
                ax.scatter(xpos + jitter, c[:, layer], s=6, color=color, alpha=0.6, lw=0)
                ax.plot([xpos - 0.16, xpos + 0.16], [c[:, layer].mean()] * 2, color=color, lw=1.5)
    ax.set_xticks(
        [g * (n_layers + 1) + (n_layers - 1) / 2 for g in range(len(acts))],
        [f"{ACT_LABEL[a]}\n(T1 … Ŷ)" for a in acts],
    )
    ax.scatter([], [], color="C0", label="no L2")
    ax.scatter([], [], color="C3", label=f"L2, λ = {cfg.comparison.l2}")
    ax.legend(fontsize=8)
    ax.set_ylabel("compression: peak − final I(X;T), EBAB (bits)")
    ax.set_title("every network that fits (dot) and the mean (bar); layers T1 … Ŷ left to right")
    comp, acc, corr = _correlations(results, cfg)
    ax = axes[1]
    colors = {a: f"C{i}" for i, a in enumerate(acts)}
    for a, lam in _units(cfg):
        if a not in acts:
            continue
        key = _key(a, lam)
        ax.scatter(
            compression(select(results, key, "ebab"))[:, -1],
            results[f"{key}/test_acc"][fitted(results, key), -1],
            s=12,
            color=colors[a],
            marker="o" if lam == 0 else "^",
            label=ACT_LABEL[a] if lam == 0 else None,
        )
    rho, p = corr["test_acc"]
    ax.set_xlabel("compression of the output layer Ŷ, EBAB (bits)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Ŷ: ρ = {rho[-1]:+.2f} (Spearman, p = {p[-1]:.2g}); ▲ with L2")
    ax.legend(fontsize=7)
    ax = axes[2]
    xs = np.arange(n_layers)
    for k, (name, label, color) in enumerate(
        (("test_acc", "with test accuracy", "C0"), ("minus_gap", "with −(train − test acc.)", "C2"))
    ):
        rho, p = corr[name]
        ax.bar(xs + (k - 0.5) * 0.38, rho, width=0.38, color=color, label=label)
        for x, r, q in zip(xs + (k - 0.5) * 0.38, rho, p):
            if q < 0.05:
                ax.annotate("*", (x, r), ha="center", va="bottom" if r > 0 else "top")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(xs, LAYER_NAMES)
    ax.set_ylabel("Spearman ρ(compression, generalisation)")
    ax.legend(fontsize=7)
    ax.set_title(f"all {len(acc)} networks that fit; *: p < 0.05")
    fig.suptitle(
        "Chelombiev et al.: compression by activation, with and without L2, over "
        "initialisations; compression against generalisation (test accuracy, and minus the "
        "train − test gap), pooled over activations and L2\n" + CAVEAT,
        fontsize=9,
    )
    figs["infoplane_compression"] = fig
    return figs


def _mean_or_none(a) -> float | None:
    return float(np.mean(a)) if len(a) else None


def summary(results, cfg: Config) -> dict:
    """The numbers to check the figures against."""
    epochs = results["epochs"]
    out = {"epochs_recorded": epochs.tolist(), "configurations": {}}
    for act, lam in _units(cfg):
        k = _key(act, lam)
        fit = fitted(results, k)
        entry = {
            "networks_that_fit": int(fit.sum()),
            "final_train_acc_of_fits": _mean_or_none(results[f"{k}/train_acc"][fit, -1]),
            "final_test_acc_of_fits": _mean_or_none(results[f"{k}/test_acc"][fit, -1]),
        }
        for est in ("bin", "fixed", "ebab", "kde", "akde"):
            if f"{k}/{est}" not in results:
                continue
            mi = select(results, k, est)
            if not len(mi):
                entry[est] = None
                continue
            m = mi.mean(0)
            entry[est] = {
                "peak_epoch": [int(epochs[i]) for i in np.argmax(m[:, :, 0], axis=0)],
                "peak_i_xt": np.round(m[:, :, 0].max(0), 3).tolist(),
                "final_i_xt": np.round(m[-1, :, 0], 3).tolist(),
                "final_i_ty": np.round(m[-1, :, 1], 3).tolist(),
                "mean_compression": np.round(compression(mi).mean(0), 3).tolist(),
            }
        out["configurations"][k] = entry
    _, _, corr = _correlations(results, cfg)
    out["spearman_compression_vs_generalisation"] = {
        name: {n: {"rho": round(float(r), 3), "p": float(q)} for n, r, q in zip(LAYER_NAMES, *rp)}
        for name, rp in corr.items()
    }
    return out


def main(argv=None):
    return run_experiment(NAME, Config, QUICK, run, plot, argv, doc=__doc__, summary=summary)


if __name__ == "__main__":
    main()
