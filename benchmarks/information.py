r"""Speed of the binned and KDE mutual-information estimators on the Tishby data set.

Usage::

    python -m benchmarks.information [--quick] [--repeats R]

Per layer and epoch, on the 4096 inputs (activations tanh(2·N(0, 1)) of a 10-unit layer,
float32, seed 0):

- **original**: the per-epoch binned MI of Shwartz-Ziv & Tishby's code (IDNNs,
  ``information_utilities``/``mutual_info_estimation``), re-implemented in numpy, not copied:
  ``np.digitize`` on ``linspace(−1, 1, 30)``, unique rows through a void view, H(T), and the
  conditional entropies H(T|X) (a loop over the 4096 inputs — the part that makes it slow, and
  which is 0 for a deterministic layer) and H(T|Y) (a loop over the labels);
- **ours**: `theory.information.binned_mi` (one call per layer-epoch, and 100 epochs in one
  vectorised call), `adaptive_binned_mi`, `kde_mi` (σ² = 0.1).

Timing: `benchmarks.timing.time_call` for both (first call, then ``repeats`` calls; median).
The two binned estimates must agree to 1e-9 bits (same bins, same plug-in entropies). Writes
``results/bench/information.json`` (``--quick``: ``information-quick.json``); the issue's
target is ≤ 3 ms per layer-epoch for ours.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Annotated

import jax
import numpy as np
import tyro

from benchmarks import timing
from experiments._common import RESULTS_DIR, Interval, check_fields, git_commit, save_json_atomic
from theory.information import adaptive_binned_mi, binned_mi, kde_mi, tishby_dataset, tishby_edges


def original_binned_mi(t: np.ndarray, y: np.ndarray, bins: np.ndarray) -> tuple[float, float]:
    """(I(X;T), I(T;Y)) in bits the way the original per-epoch code computes them."""
    digitized = bins[np.digitize(t.reshape(1, -1).squeeze(), bins) - 1].reshape(len(t), -1)
    rows = np.ascontiguousarray(digitized).view(
        np.dtype((np.void, digitized.dtype.itemsize * digitized.shape[1]))
    )
    _, inverse, counts = np.unique(rows, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    p_t = counts / counts.sum()
    h_t = -np.sum(p_t * np.log2(p_t))
    # H(T|X): every input is its own x (4096 of them), each with one pattern -> 0, by a loop
    h_t_given_x = 0.0
    for i in range(len(t)):
        _, c = np.unique(inverse[i : i + 1], return_counts=True)
        p = c / c.sum()
        h_t_given_x += -np.sum(p * np.log2(p)) / len(t)
    h_t_given_y = 0.0
    for label in np.unique(y):
        sel = y == label
        _, c = np.unique(inverse[sel], return_counts=True)
        p = c / c.sum()
        h_t_given_y += sel.mean() * -np.sum(p * np.log2(p))
    return float(h_t - h_t_given_x), float(h_t - h_t_given_y)


@dataclass(frozen=True)
class Args:
    """Binned and KDE MI against the original per-epoch binning (see the module docstring)."""

    quick: bool = False
    """fewer repeats (a smoke run)"""
    repeats: Annotated[int, Interval(ge=1)] = 20
    """timed calls after the first one (the original's: a fifth of these, at least 2)"""


def run(repeats: int) -> dict:
    x, y = tishby_dataset()
    rng = np.random.default_rng(0)
    t = np.tanh(2 * rng.standard_normal((4096, 10))).astype(np.float32)
    edges = np.asarray(tishby_edges())
    block = jax.block_until_ready
    rows = {}
    orig_row, orig = timing.time_call(
        lambda: original_binned_mi(t, y, edges), max(2, repeats // 5), lambda o: o, False
    )
    ours_row, ours = timing.time_call(lambda: binned_mi(t, y, edges), repeats, block, True)
    diff = max(abs(float(ours[0]) - orig[0]), abs(float(ours[1]) - orig[1]))
    if diff > 1e-9:
        raise AssertionError(f"binned MI differs from the original's by {diff:.2e} bits")
    epochs = np.stack([np.roll(t, k, axis=1) for k in range(100)])
    many_row, _ = timing.time_call(
        lambda: binned_mi(epochs, y, edges), max(2, repeats // 5), block, True
    )
    ebab_row, _ = timing.time_call(lambda: adaptive_binned_mi(t, y), repeats, block, True)
    kde_row, _ = timing.time_call(lambda: kde_mi(t, y, 0.1), max(2, repeats // 4), block, True)
    rows = {
        "original_binned": orig_row,
        "binned": ours_row,
        "binned_100_epochs": many_row,
        "adaptive_binned": ebab_row,
        "kde": kde_row,
    }
    return {
        "rows": rows,
        "estimates_bits": {"original": orig, "ours": [float(ours[0]), float(ours[1])]},
        "ms_per_layer_epoch": {
            "original_binned": 1e3 * orig_row["steady_s"],
            "binned": 1e3 * ours_row["steady_s"],
            "binned_vectorised": 1e3 * many_row["steady_s"] / 100,
            "adaptive_binned": 1e3 * ebab_row["steady_s"],
            "kde": 1e3 * kde_row["steady_s"],
        },
        "ratio_original_over_binned": orig_row["steady_s"] / ours_row["steady_s"],
    }


def main(argv=None):
    args = tyro.cli(Args, args=argv, prog="python -m benchmarks.information")
    check_fields(args)
    repeats = 3 if args.quick else args.repeats
    load_before = timing.load_average()
    out = run(repeats)
    out["provenance"] = {
        "git": git_commit(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "load_before": load_before,
        "load_after": timing.load_average(),
    }
    print("ms per layer-epoch (4096 inputs, 10 units):")
    for k, v in out["ms_per_layer_epoch"].items():
        print(f"  {k:20s} {v:9.2f}")
    print(f"ratio original / ours (binned): {out['ratio_original_over_binned']:.0f}x")
    name = "information-quick.json" if args.quick else "information.json"
    path = save_json_atomic(RESULTS_DIR / "bench" / name, out)
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
