r"""Speed of the depth-∞ classifier against the authors' finite-depth method, same data, same run.

Usage::

    python -m benchmarks.singular [--quick] [--ns N ...] [--repeats R] [--plot-only]

Radhakrishnan, Belkin & Uhler (2023), "Wide and deep neural networks achieve consistency for
classification", PNAS 120(14). Task: the paper's 3-D Dirichlet task
(`theory.singular.data.DirichletTask.paper(3)`), n training and n test points on the sphere
(seeds 0 and 1), dual φ̌(ρ) = ρ/2 + ρ³/2 (their ``3d_opt``: c = 1/2, λ = 2, α = 2, the
consistent choice for intrinsic dimension 2).

- **Authors' method** (uhlerlab/inf_depth_ntks, ``models.py``: ``nngp_kernel`` +
  ``solve_kr``), re-implemented here in float64 numpy: K_train = clip(X Xᵀ, −1, 1),
  K_test = clip(X_t Xᵀ, −1, 1); ρ ← clip(φ̌(ρ), −1, 1) applied ``depth`` = 100 times to both
  (in place, no temporaries beyond one work array); diag(K_train) = 1;
  sol = numpy.linalg.solve(K_train, y), y ∈ {−1, +1}; prediction sign(K_test sol), 0 ↦ +1.
  At depth L, K = I + c^L Φ + o(c^L) off the diagonal, so this is the depth-∞ rule up to
  O(c^L) = O(2^−100) relative terms.
- **Ours**: ``InfiniteDepthClassifier(polynomial_dual([0, .5, 0, .5]), depth="inf")
  .fit(X, y).predict(X_t)``: Nadaraya–Watson with the Koenigs kernel
  Φ = lim c^(−L) φ̌^{∘L} (`theory.singular.koenigs_kernel`, default ``'table'`` method), no
  linear solve. The Koenigs table is built once per dual and cached; its build (including
  the compilation of the exact evaluator that fills it) is timed once, separately, as a
  one-time cost (``table_build_s``). Also timed alone: ``koenigs_kernel(X_t, X, dual)``, the
  full n × n kernel.

Timing: ours by `benchmarks.timing.time_call` (a first call, which compiles for the new
shapes, then ``repeats`` calls; ``steady_s`` is their median, ``compile_s`` = first − steady).
The authors' numpy code has nothing to compile: it is run ``authors_repeats`` times (3 below
n = 5000; once from n = 5000 on, where one run takes minutes) and ``steady_s`` is the median.
Ratio at each n = t_authors / t_ours,steady (> 1: ours faster). The requirement: ratio ≥ 5 at
n = 10000. The host's load average is recorded before each n and at the end.

Agreement: the fraction of test points where both give the same label (expected ≥ 99.5 %:
the two rules differ by O(c^L) relative terms), and both test accuracies, with the Bayes
rule's for scale.

Writes ``results/bench/singular.json`` and ``paper_figs/bench_singular.{png,pdf}`` with
``paper_figs/bench_singular_settings.json`` beside them; runs with ``--quick``, ``--ns`` or
``--repeats`` write ``results/bench/singular-<variant>.json`` and their figure under
``results/bench/singular-<variant>/`` instead.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import jax
import numpy as np
import tyro

from benchmarks import timing
from experiments._common import (
    FIGS_DIR,
    RESULTS_DIR,
    Interval,
    check_fields,
    device_info,
    git_commit,
    library_versions,
    pyplot,
    save_figure,
    save_json_atomic,
)
from theory.singular import InfiniteDepthClassifier, koenigs_kernel, polynomial_dual
from theory.singular import kernels as singular_kernels
from theory.singular.data import DirichletTask

DUAL_WEIGHTS = (0.0, 0.5, 0.0, 0.5)  # φ̌(ρ) = ρ/2 + ρ³/2: the authors' "3d_opt"
DEPTH = 100  # the authors' depth for 3d_opt
DIM = 3  # DirichletTask.paper(3): intrinsic dimension 2 = α of the dual
SEEDS = {"train": 0, "test": 1}
FULL = {"ns": (1000, 2500, 5000, 10000), "repeats": 3}
QUICK = {"ns": (500, 1000), "repeats": 3}
AUTHORS_SINGLE_FROM = 5000  # from this n on the authors' method runs once (minutes per run)
REQUIRED_RATIO = 5.0  # at REQUIRED_N
REQUIRED_N = 10000
EXPECTED_AGREEMENT = 0.995


def the_dual():
    return polynomial_dual(list(DUAL_WEIGHTS))


def _dual_in_place(rho, work):
    """rho ← clip(rho/2 + rho³/2, −1, 1) in place: (rho + rho³)/2 (halving is exact)."""
    np.multiply(rho, rho, out=work)
    work *= rho
    rho += work
    rho *= 0.5
    np.clip(rho, -1.0, 1.0, out=rho)


def authors_predict(x, y, xt, depth=DEPTH):
    """The authors' depth-``depth`` NNGP classifier in float64 numpy; labels in {0, 1}.

    f(x_t) = K_L(x_t, X) K_L(X, X)⁻¹ (2y − 1) with K_L = clip∘φ̌ iterated ``depth`` times on
    clip(xᵀz, −1, 1) and diag K_L(X, X) set to 1; label 1 where f ≥ 0 (sign, 0 ↦ +1)."""
    k_train = np.clip(x @ x.T, -1.0, 1.0)
    k_test = np.clip(xt @ x.T, -1.0, 1.0)
    work = np.empty_like(k_train) if k_train.size >= k_test.size else np.empty_like(k_test)
    for k in (k_train, k_test):
        w = work.reshape(-1)[: k.size].reshape(k.shape)
        for _ in range(depth):
            _dual_in_place(k, w)
    del work
    np.fill_diagonal(k_train, 1.0)
    sol = np.linalg.solve(k_train, 2.0 * np.asarray(y, np.float64) - 1.0)
    return (k_test @ sol >= 0).astype(np.int64)


def ours_predict(dual, x, y, xt):
    """Our depth-∞ classifier: `InfiniteDepthClassifier` with ``depth='inf'``; labels."""
    return InfiniteDepthClassifier(dual, depth="inf").fit(x, y).predict(xt)


def time_table_build(dual):
    """Seconds to build the Koenigs table of ``dual`` from an empty cache (one-time cost)."""
    singular_kernels._koenigs_table.cache_clear()
    t0 = time.perf_counter()
    jax.block_until_ready(singular_kernels._koenigs_table(dual))
    return time.perf_counter() - t0


def time_authors(fn, repeats):
    """Median of ``repeats`` runs of numpy code (nothing to compile: no warm-up call)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return {"steady_s": statistics.median(times), "times_s": times, "repeats": repeats}, out


def authors_repeats(n, repeats):
    return 1 if n >= AUTHORS_SINGLE_FROM else repeats


def bench(ns, repeats, echo=True):
    """Time both methods at each n; one row per n, and the one-time table build."""
    dual = the_dual()
    task = DirichletTask.paper(DIM)
    table_s = time_table_build(dual)
    if echo:
        print(f"  Koenigs table of {dual.name}: built in {table_s:.2f} s (once per dual)")
    rows = []
    for n in ns:
        load = timing.load_average()
        x, y = task.sample(n, SEEDS["train"])
        xt, yt = task.sample(n, SEEDS["test"])

        ours, pred_ours = timing.time_call(
            lambda x=x, y=y, xt=xt: ours_predict(dual, x, y, xt), repeats, np.asarray, True
        )
        kern, _ = timing.time_call(
            lambda x=x, xt=xt: koenigs_kernel(xt, x, dual), repeats, jax.block_until_ready, True
        )
        r_auth = authors_repeats(n, repeats)
        if echo:
            print(f"  n={n}: authors' method, {r_auth} run(s) ...", flush=True)
        auth, pred_auth = time_authors(lambda x=x, y=y, xt=xt: authors_predict(x, y, xt), r_auth)
        # the authors resample their data when two training points have xᵀz ≥ 1 (rounded):
        # such a pair makes K_train singular at every depth. Counted, not resampled.
        gram = x @ x.T
        np.fill_diagonal(gram, -np.inf)
        row = {
            "n": n,
            "loadavg_before": load,
            "ours": ours,
            "koenigs_kernel": kern,
            "authors": auth,
            "ratio": auth["steady_s"] / ours["steady_s"],
            "agreement": float(np.mean(pred_ours == pred_auth)),
            "n_disagree": int(np.sum(pred_ours != pred_auth)),
            "accuracy": {
                "ours": float(np.mean(pred_ours == yt)),
                "authors": float(np.mean(pred_auth == yt)),
                "bayes": float(np.mean(task.bayes_predict(xt) == yt)),
            },
            "train_pairs_xtz_ge_1": int(np.sum(gram >= 1.0) // 2),
            "train_max_off_diagonal_xtz": float(gram.max()),
        }
        del gram
        rows.append(row)
        if echo:
            print(
                f"  n={n:<6d} authors {auth['steady_s']:8.2f} s  ours {ours['steady_s']:7.3f} s "
                f"(first {ours['first_s']:6.2f} s)  koenigs_kernel {kern['steady_s']:7.3f} s  "
                f"ratio {row['ratio']:6.1f}  agreement {row['agreement']:.4f}",
                flush=True,
            )
    return {"table_build_s": table_s, "dual": dual.name, "rows": rows}


# ------------------------------------------------------------------ report


def summary(results):
    """Verdict lines: the requirement, agreement and anything unexpected."""
    rows = results["rows"]
    lines = []
    at = [r for r in rows if r["n"] == REQUIRED_N]
    if at:
        r = at[0]
        ok = "met" if r["ratio"] >= REQUIRED_RATIO else "NOT met"
        lines.append(
            f"Requirement (ours ≥ {REQUIRED_RATIO:g}× faster at n = {REQUIRED_N}): {ok}, "
            f"ratio {r['ratio']:.1f} ({r['authors']['steady_s']:.1f} s vs "
            f"{r['ours']['steady_s']:.2f} s steady; ours' first call {r['ours']['first_s']:.2f} s)."
        )
    else:
        lines.append(f"n = {REQUIRED_N} not run: the requirement is not checked by this run.")
    low = [r for r in rows if r["agreement"] < EXPECTED_AGREEMENT]
    if low:
        lines.append(
            "Agreement below the expected "
            f"{EXPECTED_AGREEMENT:.1%} at "
            + ", ".join(f"n = {r['n']} ({r['agreement']:.4f})" for r in low)
            + "."
        )
    else:
        lines.append(
            f"The two predictions agree on ≥ {EXPECTED_AGREEMENT:.1%} of test points at every n "
            f"(lowest {min(r['agreement'] for r in rows):.4f})."
        )
    bad = [r["n"] for r in rows if r["train_pairs_xtz_ge_1"]]
    if bad:
        lines.append(
            "Training sets with a pair at xᵀz ≥ 1 in float64 (the authors would resample): "
            f"n = {', '.join(map(str, bad))}."
        )
    lines.append(
        f"One-time cost of ours: Koenigs table {results['table_build_s']:.2f} s per dual "
        "(cached for the process), plus compilation at each new n (first call − steady)."
    )
    return lines


def print_table(results):
    print(
        "\nsteady time [s] (authors: median of its runs; ours: median after a first call); "
        "ratio = authors / ours"
    )
    head = (
        f"  {'n':>6} {'authors':>9} {'runs':>4} {'ours':>8} {'ratio':>7} {'ours 1st':>9} "
        f"{'koenigs':>8} {'agree':>7} {'acc ours':>9} {'acc auth':>9} {'acc Bayes':>9}"
    )
    print(head)
    for r in results["rows"]:
        print(
            f"  {r['n']:>6d} {r['authors']['steady_s']:9.2f} {r['authors']['repeats']:>4d} "
            f"{r['ours']['steady_s']:8.3f} {r['ratio']:7.1f} {r['ours']['first_s']:9.2f} "
            f"{r['koenigs_kernel']['steady_s']:8.3f} {r['agreement']:7.4f} "
            f"{r['accuracy']['ours']:9.4f} {r['accuracy']['authors']:9.4f} "
            f"{r['accuracy']['bayes']:9.4f}"
        )
    print(f"  Koenigs table build (once per dual): {results['table_build_s']:.2f} s")


def plot(results, host, quick=False):
    plt = pyplot()
    rows = results["rows"]
    ns = [r["n"] for r in rows]
    fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(12.5, 5.2))
    series = [
        ("authors", "steady_s", "authors' method: depth 100, numpy float64 (+ solve)", "C1", "s-"),
        ("ours", "steady_s", 'ours: InfiniteDepthClassifier, depth="inf" (steady)', "C0", "o-"),
        ("ours", "first_s", "ours: first call at this n (compile included)", "C0", "o:"),
        ("koenigs_kernel", "steady_s", "ours: koenigs_kernel(X_t, X) alone (steady)", "C2", "^--"),
    ]
    for key, field, label, color, style in series:
        ax_t.loglog(ns, [r[key][field] for r in rows], style, color=color, label=label)
    ax_t.axhline(
        results["table_build_s"],
        color="0.4",
        ls="-.",
        lw=1,
        label=f"Koenigs table build, once per dual ({results['table_build_s']:.1f} s)",
    )
    ax_t.set_xlabel("n (training points = test points)")
    ax_t.set_ylabel("time [s]")
    ax_t.set_title("kernel + classifier, 3-D Dirichlet task, φ̌(ρ) = ρ/2 + ρ³/2")
    ax_t.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7.5, ncol=2)

    ratios = [r["ratio"] for r in rows]
    ax_r.loglog(ns, ratios, "o-", color="k", label="authors / ours (steady)")
    ax_r.axhline(
        REQUIRED_RATIO, color="C3", ls="--", lw=1.2, label=f"requirement: {REQUIRED_RATIO:g}×"
    )
    ax_r.axhline(1.0, color="0.5", ls=":", lw=1)
    for r in rows:
        ax_r.annotate(
            f"{r['ratio']:.1f}×\nagree {r['agreement']:.2%}",
            (r["n"], r["ratio"]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax_r.set_ylim(0.5, max(ratios + [REQUIRED_RATIO]) * 6)
    ax_r.set_xlabel("n (training points = test points)")
    ax_r.set_ylabel(r"$t_{\mathrm{authors}} \,/\, t_{\mathrm{ours}}$")
    ax_r.set_title("speed-up; agreement = share of equal test labels", fontsize=9)
    ax_r.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7.5, ncol=2)
    for ax in (ax_t, ax_r):
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.minorticks_off()
        ax.set_xlim(ns[0] / 1.3, ns[-1] * 1.3)
    text = "\n".join(textwrap.fill(line, 150, break_long_words=False) for line in summary(results))
    fig.text(0.01, -0.03, text, va="top", ha="left", fontsize=7.5)
    load = host.get("loadavg", {})
    load_txt = ", ".join(f"{k} {v['1min']:.1f}" for k, v in load.items())
    rep = host.get("repeats")
    fig.suptitle(
        f"{host.get('cpus')} CPU cores shared with other work (1-min load average: {load_txt}); "
        f"jax {host.get('jax', '?')}, numpy {host.get('numpy', '?')}; ours: median of "
        f"{rep} calls after a first call; authors: median of {rep} runs below "
        f"n = {AUTHORS_SINGLE_FROM}, 1 run from there" + (" (quick)" if quick else ""),
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def figure_host(record):
    """What the figure's title states about the run, from the saved record."""
    prov = record["provenance"]
    rows = record["results"]["rows"]
    load = {"start": rows[0]["loadavg_before"]} if rows else {}
    load["end"] = prov["host"]["loadavg_end"]
    return {
        "cpus": prov["host"]["cpus"],
        "loadavg": load,
        "jax": prov["versions"].get("jax", "?"),
        "numpy": prov["versions"].get("numpy", "?"),
        "repeats": record["settings"]["repeats"],
    }


# ------------------------------------------------------------------ entry points


def run(ns, repeats, quick=False, echo=True):
    """The benchmark at sizes ``ns``: the full record (results, summary, settings, provenance)."""
    t_start = time.perf_counter()
    if echo:
        print(
            f"benchmarks.singular: {os.cpu_count()} CPU cores, load average "
            f"{timing.load_average()['1min']:.2f}; jax {jax.__version__} on {jax.devices()[0]}, "
            f"numpy {np.__version__}; n in {list(ns)}; ours: {repeats} timed repeat(s), median"
        )
    results = bench(ns, repeats, echo=echo)
    lines = summary(results)
    if echo:
        print_table(results)
        for line in lines:
            print(line)
    return {
        "results": results,
        "summary_lines": lines,
        "settings": {
            "quick": quick,
            "ns": list(ns),
            "repeats": repeats,
            "authors_single_run_from_n": AUTHORS_SINGLE_FROM,
            "dual_weights": list(DUAL_WEIGHTS),
            "depth_authors": DEPTH,
            "task": f"DirichletTask.paper({DIM})",
            "seeds": SEEDS,
            "required_ratio": REQUIRED_RATIO,
            "required_n": REQUIRED_N,
            "expected_agreement": EXPECTED_AGREEMENT,
            "ratio": "t_authors / t_ours (steady medians)",
            "compile_s": "ours: first call at this n - median steady call",
        },
        "provenance": {
            "git": git_commit(),
            "versions": library_versions(),
            "device": device_info(),
            "host": {
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "loadavg_end": timing.load_average(),
                "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
                "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
            },
            "wall_time_s": time.perf_counter() - t_start,
            "argv": sys.argv,
        },
    }


def write(record, json_path, fig_dir, settings_beside=False):
    """Save the record as JSON and draw the figure; returns the paths written."""
    paths = [save_json_atomic(json_path, record)]
    fig = plot(record["results"], figure_host(record), record["settings"]["quick"])
    paths += save_figure(fig, "bench_singular", fig_dir)
    if settings_beside:  # results/ is not committed: the figure's numbers go beside it
        paths.append(save_json_atomic(Path(fig_dir) / "bench_singular_settings.json", record))
    return paths


@dataclass(frozen=True)
class Args:
    """Time the depth-∞ classifier against the authors' depth-100 numpy method."""

    quick: bool = False
    """n = 500, 1000 instead of 1000 … 10000"""
    ns: Annotated[tuple[int, ...] | None, Interval(ge=2)] = None
    """sizes n (training = test points) instead of the preset's"""
    repeats: Annotated[int | None, Interval(ge=1)] = None
    """timed calls of ours after the first, and runs of the authors' method below n = 5000
    (None: 3)"""
    plot_only: bool = False
    """redraw the figure from the saved JSON"""

    def __post_init__(self):
        check_fields(self)


def main(argv=None):
    # a bad value (type, or a rule in an annotation) exits 2 naming the flag
    args = tyro.cli(Args, args=argv, prog="python -m benchmarks.singular")
    custom = args.ns is not None or args.repeats is not None
    run_name = "singular" + ("-quick" if args.quick else "") + ("-custom" if custom else "")
    default = run_name == "singular"
    json_path = RESULTS_DIR / "bench" / f"{run_name}.json"
    fig_dir = FIGS_DIR if default else RESULTS_DIR / "bench" / run_name
    if args.plot_only:
        with open(json_path) as fh:
            record = json.load(fh)
        record["summary_lines"] = summary(record["results"])
        paths = write(record, json_path, fig_dir, settings_beside=default)
    else:
        preset = QUICK if args.quick else FULL
        ns = args.ns if args.ns is not None else preset["ns"]
        repeats = args.repeats if args.repeats is not None else preset["repeats"]
        record = run(ns, repeats, quick=args.quick)
        paths = write(record, json_path, fig_dir, settings_beside=default)
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
