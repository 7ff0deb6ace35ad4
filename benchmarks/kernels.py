"""Speed of our kernels against neural-tangents 0.6.5, on the same inputs in the same run.

Usage::

    python -m benchmarks.kernels [--quick] [--only A|B] [--repeats R]

- **A** (infinite width): NNGP + NTK of ``serial(*[Dense(512, W_std=1.4, b_std=0.1),
  Relu()] * 10, Dense(1, W_std=1.4, b_std=0.1))`` on N = 4000 points in d = 100, float32,
  ``kernel_fn(x, None, ("nngp", "ntk"))``. Ours: `theory.kernels.stax` (jitted internally);
  neural-tangents: ``jax.jit(kernel_fn, static_argnames="get")`` and the plain ``kernel_fn``.
- **B** (finite width): empirical NTK of ``Dense(1024)-Relu-Dense(1024)-Relu-Dense(1)`` on
  N = 500 points, float32, same parameters. Ours: `theory.kernels.empirical.empirical_ntk`
  ("auto"; "jacobian" up to N=125); neural-tangents: ``jax.jit(empirical_ntk_fn(apply_fn,
  implementation=i, vmap_axes=0))`` for i = 1 (its default), 2 and 3.

Each is also swept over N (log-log plot). Timing (docs/architecture.md, "Benchmarks"): a first call
(compile + run), then ``repeats`` calls, each ended by ``block_until_ready``; the steady time
is their median and ``compile = first − steady``. Ours runs first in this process, then
`reference/nt_bench.py` in ``.venv-ref`` (jax 0.4.38) on inputs passed through an ``.npz``;
the two never run at the same time. Ratio = neural-tangents time / our time (> 1: ours faster).

Writes ``results/bench/kernels.json`` and ``paper_figs/bench_kernels.{png,pdf}``; runs with
``--quick``, ``--only`` or ``--repeats`` write ``results/bench/kernels-<variant>.json`` and
their figure under ``results/bench/kernels-<variant>/`` instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments._common import (
    FIGS_DIR,
    REPO_ROOT,
    RESULTS_DIR,
    device_info,
    git_commit,
    library_versions,
    pyplot,
    save_figure,
    save_json_atomic,
)
from theory.kernels import stax

REF_PYTHON = REPO_ROOT / ".venv-ref" / "bin" / "python"
REF_SCRIPT = REPO_ROOT / "reference" / "nt_bench.py"

# Benchmark settings: the full run and the --quick smoke preset.
D_IN = 100  # input dimension d
A_NET = {"d_width": 512, "depth": 10, "W_std": 1.4, "b_std": 0.1}
B_WIDTH = 1024
FULL = {"A_ns": [250, 500, 1000, 2000, 4000], "B_ns": [62, 125, 250, 500], "repeats": 3}
QUICK = {"A_ns": [100, 200, 400], "B_ns": [31, 62], "repeats": 1}
NT_B_IMPLEMENTATIONS = [
    1,
    2,
    3,
]  # 1 = JACOBIAN_CONTRACTION (its default), 2 = NTK_VECTOR_PRODUCTS, 3 = STRUCTURED_DERIVATIVES
# The batch axis is independent across points, as empirical_ntk_fn's docstring asks users to
# declare; without it neural-tangents differentiates the whole batch per output (O(N²)
# backward passes: 6 s instead of 2 s at N=62, far worse at N=500).
NT_B_VMAP_AXES = 0

# Our generic "jacobian" path grows steeply with N (21 s at N=125 on 2 busy cores), so it is
# timed only up to here; "auto" (the structured path) is the one compared at every N.
OURS_JACOBIAN_MAX_N = 125

LABELS = {
    "ours": "ours (theory.kernels.stax)",
    "nt_jit": "neural-tangents, jax.jit",
    "nt_nojit": "neural-tangents, no jit",
    "ours_auto": 'ours empirical_ntk "auto"',
    "ours_jacobian": 'ours empirical_ntk "jacobian"',
    "nt_impl1": "neural-tangents impl 1 (default)",
    "nt_impl2": "neural-tangents impl 2",
    "nt_impl3": "neural-tangents impl 3",
}


COLORS = {"ours": "C0", "ours_auto": "C0", "ours_jacobian": "C4", "nt_jit": "C1"}
COLORS.update(nt_impl1="C1", nt_nojit="C2", nt_impl2="C2", nt_impl3="C3")


def time_call(fn, repeats):
    """First-call and median steady-state wall time of ``fn()`` (blocked), and its last output."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    steady = statistics.median(times)
    row = {"first_s": first, "steady_s": steady, "compile_s": max(first - steady, 0.0)}
    return {**row, "times_s": times}, out


def _log(method, n, row):
    print(
        f"  [ours]            {method:<22} N={n:<5d} steady {row['steady_s']:8.3f} s  "
        f"compile {row['compile_s']:7.3f} s",
        flush=True,
    )


# ------------------------------------------------------------------ our side


def bench_a_ours(x_all, ns, repeats):
    dense = stax.Dense(A_NET["d_width"], W_std=A_NET["W_std"], b_std=A_NET["b_std"])
    _, _, kernel_fn = stax.serial(
        *[dense, stax.Relu()] * A_NET["depth"],
        stax.Dense(1, W_std=A_NET["W_std"], b_std=A_NET["b_std"]),
    )
    rows, main = [], None
    for n in ns:
        x = jnp.asarray(x_all[:n])
        row, k = time_call(lambda x=x: kernel_fn(x, None, ("nngp", "ntk")), repeats)
        rows.append({"n": n, **row})
        _log("ours", n, row)
        main = (np.asarray(k[0]), np.asarray(k[1]))
    return {"ours": rows}, main


def b_network():
    """``(params, apply_fn)`` of the empirical-NTK network; params drawn by our ``init_fn``."""
    init_fn, apply_fn, _ = stax.serial(
        stax.Dense(B_WIDTH), stax.Relu(), stax.Dense(B_WIDTH), stax.Relu(), stax.Dense(1)
    )
    _, params = init_fn(jax.random.PRNGKey(0), (-1, D_IN))
    return params, apply_fn


def bench_b_ours(empirical_ntk, params, apply_fn, x_all, ns, repeats):
    timings, main = {}, {}
    for impl in ("auto", "jacobian"):
        name = f"ours_{impl}"
        timings[name] = []
        for n in ns:
            if impl == "jacobian" and n > OURS_JACOBIAN_MAX_N:
                continue
            x = jnp.asarray(x_all[:n])
            row, k = time_call(
                lambda x=x, impl=impl: empirical_ntk(apply_fn, params, x, implementation=impl),
                repeats,
            )
            timings[name].append({"n": n, **row})
            _log(name, n, row)
            if n == ns[-1]:
                main[name] = np.asarray(k)
    return timings, main


def import_empirical_ntk():
    """Our `empirical_ntk`, or None with the reason printed (the module may not exist yet)."""
    try:
        from theory.kernels.empirical import empirical_ntk
    except ImportError as e:
        print(f"B skipped: theory.kernels.empirical.empirical_ntk is not importable ({e}).")
        return None
    return empirical_ntk


# ------------------------------------------------------------------ reference side


def run_reference(config, arrays):
    """Run `reference/nt_bench.py` in ``.venv-ref``; its timings and arrays, or None."""
    if not REF_PYTHON.exists():
        print(f"neural-tangents skipped: {REF_PYTHON} is missing (run `make reference`).")
        return None
    with tempfile.TemporaryDirectory(prefix="bench-kernels-") as tmp:
        req, res = Path(tmp) / "request.npz", Path(tmp) / "result.npz"
        np.savez(req, config=json.dumps(config), **arrays)
        proc = subprocess.run([str(REF_PYTHON), str(REF_SCRIPT), str(req), str(res)], cwd=REPO_ROOT)
        if proc.returncode != 0:
            print(f"neural-tangents run failed (exit status {proc.returncode}); see above.")
            return None
        with np.load(res, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    return json.loads(str(out.pop("timings"))), out


# ------------------------------------------------------------------ report


def max_rel_diff(ours, ref):
    """max |ours − ref| / |ref| elementwise, and max |ours − ref| / max |ref|."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    err = np.abs(ours - ref)
    scale = np.max(np.abs(ref))
    elementwise = np.max(err / np.maximum(np.abs(ref), 1e-30 * scale))
    return {"elementwise": float(elementwise), "normalised": float(np.max(err) / scale)}


def print_agreement(agreement):
    for what, d in agreement.items():
        print(
            f"  agreement {what}: max rel diff {d['elementwise']:.2e} "
            f"(normalised by max |ref|: {d['normalised']:.2e})"
        )


def at_n(rows, n):
    return next((r for r in rows if r["n"] == n), None)


def print_table(title, timings, n, base):
    print(f"\n{title}")
    print(f"  {'method':<36} {'steady [s]':>11} {'compile [s]':>12} {'time / ours':>12}")
    t_base = at_n(timings[base], n)["steady_s"]
    for name, rows in timings.items():
        r = at_n(rows, n)
        if r is None:
            continue
        print(
            f"  {LABELS[name]:<36} {r['steady_s']:11.4f} {r['compile_s']:12.3f} "
            f"{r['steady_s'] / t_base:11.2f}x"
        )


def print_sweep(title, timings):
    print(f"\n{title}: steady time [s] (compile [s]) against N")
    ns = sorted({r["n"] for rows in timings.values() for r in rows})
    print(f"  {'method':<36} " + " ".join(f"{'N=' + str(n):>17}" for n in ns))
    for name, rows in timings.items():
        cells = [
            "-" if (r := at_n(rows, n)) is None else f"{r['steady_s']:8.4f} ({r['compile_s']:5.2f})"
            for n in ns
        ]
        print(f"  {LABELS[name]:<36} " + " ".join(f"{c:>17}" for c in cells))


def summary(tag, timings, n, ours, ref):
    t_ours = at_n(timings[ours], n)["steady_s"]
    t_ref = at_n(timings[ref], n)["steady_s"]
    return (
        t_ours,
        t_ref,
        f"{tag}: ours {t_ours:.3g} s, neural-tangents {t_ref:.3g} s, ratio {t_ref / t_ours:.2f}×",
    )


def plot(results, quick):
    plt = pyplot()
    panels = [b for b in ("A", "B") if b in results]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    titles = {
        "A": "A: NNGP+NTK, depth-10 ReLU, d=100",
        "B": "B: empirical NTK, 2×1024 ReLU, d=100",
    }
    for ax, b in zip(axes[0], panels):
        timings = results[b]["timings"]
        for name in [m for m in LABELS if m in timings]:  # fixed order (JSON sorts keys)
            rows = timings[name]
            ns = [r["n"] for r in rows]
            color = COLORS[name]
            ax.loglog(ns, [r["steady_s"] for r in rows], "o-", color=color, label=LABELS[name])
            ax.loglog(
                ns,
                [max(r["compile_s"], 1e-4) for r in rows],
                "o:",
                color=color,
                mfc="none",
                alpha=0.7,
            )
        ns_all = sorted({r["n"] for rows in results[b]["timings"].values() for r in rows})
        ax.set_xticks(ns_all, [str(n) for n in ns_all])
        ax.minorticks_off()
        ax.set_xlabel("N (points)")
        ax.set_ylabel("wall time [s]")
        ax.set_title(titles[b])
        ax.legend(fontsize=7, title="solid: steady  dotted: compile", title_fontsize=7)
    fig.suptitle(
        f"float32, {os.cpu_count()} CPU cores"
        + (" (quick)" if quick else "")
        + "; neural-tangents 0.6.5 on jax 0.4.38, ours on jax "
        + jax.__version__,
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller N, 1 repeat")
    parser.add_argument("--only", choices=("A", "B"), default=None, help="run one benchmark")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls after warm-up")
    parser.add_argument(
        "--no-unjitted", action="store_true", help="skip the un-jitted neural-tangents kernel_fn"
    )
    parser.add_argument(
        "--plot-only", action="store_true", help="redraw the figure from the saved JSON"
    )
    args = parser.parse_args(argv)
    run = "kernels" + ("-quick" if args.quick else "") + (f"-only-{args.only}" if args.only else "")
    # Only the full default run writes the committed figure and results/bench/kernels.json.
    default = run == "kernels" and args.repeats is None
    json_path = RESULTS_DIR / "bench" / f"{run}.json"
    fig_dir = FIGS_DIR if default else RESULTS_DIR / "bench" / run
    if args.plot_only:
        with open(json_path) as fh:
            record = json.load(fh)
        figs = save_figure(plot(record["benchmarks"], args.quick), "bench_kernels", fig_dir)
        print(f"wrote {', '.join(str(p) for p in figs)}")
        return 0
    preset = QUICK if args.quick else FULL
    repeats = args.repeats if args.repeats is not None else preset["repeats"]
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    todo = [args.only] if args.only else ["A", "B"]
    t_start = time.perf_counter()

    print(
        f"benchmarks.kernels: {os.cpu_count()} CPU cores on this machine, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')} (left as is), "
        f"load average {os.getloadavg()[0]:.2f}; ours: jax {jax.__version__} on "
        f"{jax.devices()[0]}; float32; {repeats} timed repeat(s), median."
    )

    rng = np.random.default_rng(0)
    a_x = rng.standard_normal((max(preset["A_ns"]), D_IN)).astype(np.float32)
    b_x = rng.standard_normal((max(preset["B_ns"]), D_IN)).astype(np.float32)
    config = {"repeats": repeats}
    arrays = {}
    results, ours_main = {}, {}

    if "A" in todo:
        print(f"\nA: ours, N in {preset['A_ns']}")
        timings, main_k = bench_a_ours(a_x, preset["A_ns"], repeats)
        results["A"] = {"timings": timings, "n": preset["A_ns"][-1]}
        ours_main["A"] = main_k
        config["A"] = {
            **A_NET,
            "ns": preset["A_ns"],
            "main_n": preset["A_ns"][-1],
            "unjitted": not args.no_unjitted,
        }
        arrays["a_x"] = a_x
    if "B" in todo:
        empirical_ntk = import_empirical_ntk()
        if empirical_ntk is not None:
            print(f"\nB: ours, N in {preset['B_ns']}")
            params, apply_fn = b_network()
            timings, main_k = bench_b_ours(
                empirical_ntk, params, apply_fn, b_x, preset["B_ns"], repeats
            )
            results["B"] = {"timings": timings, "n": preset["B_ns"][-1]}
            ours_main["B"] = main_k
            config["B"] = {
                "width": B_WIDTH,
                "ns": preset["B_ns"],
                "main_n": preset["B_ns"][-1],
                "implementations": NT_B_IMPLEMENTATIONS,
                "vmap_axes": NT_B_VMAP_AXES,
            }
            arrays["b_x"] = b_x
            for i, leaf in enumerate(jax.tree_util.tree_leaves(params)):
                arrays[f"b_params_{i}"] = np.asarray(leaf)
    if not results:
        return 1

    print("\nneural-tangents (separate process, .venv-ref), same inputs")
    ref = run_reference(config, arrays)
    ref_versions = None
    if ref is not None:
        ref_timings, ref_arrays = ref
        ref_versions = ref_timings.pop("versions")
        for b in results:
            got = dict(ref_timings.get(b, {}))
            results[b]["nt_errors"] = got.pop("errors", {})
            results[b]["timings"].update(got)
        if "A" in results:
            results["A"]["agreement"] = {
                "nngp": max_rel_diff(ours_main["A"][0], ref_arrays["a_nngp"]),
                "ntk": max_rel_diff(ours_main["A"][1], ref_arrays["a_ntk"]),
            }
        if "B" in results:
            results["B"]["agreement"] = {
                f"{o} vs nt_impl{i}": max_rel_diff(ours_main["B"][o], ref_arrays[f"b_ntk_{i}"])
                for o in ours_main["B"]
                for i in NT_B_IMPLEMENTATIONS
                if f"b_ntk_{i}" in ref_arrays
            }

    lines = []
    if "A" in results:
        n = results["A"]["n"]
        title = f"A: NNGP+NTK, depth-10 ReLU FC (width 512), N={n}, d={D_IN}, float32, x2=None"
        print_table(title, results["A"]["timings"], n, "ours")
        print_sweep("A sweep", results["A"]["timings"])
        print_agreement(results["A"].get("agreement", {}))
        if "nt_jit" in results["A"]["timings"]:
            t_o, t_r, line = summary("A", results["A"]["timings"], n, "ours", "nt_jit")
            results["A"]["summary"] = {"ours_s": t_o, "nt_s": t_r, "ratio": t_r / t_o}
            lines.append(line + " (neural-tangents jitted)")
    if "B" in results:
        n = results["B"]["n"]
        title = f"B: empirical NTK, Dense(1024)-Relu-Dense(1024)-Relu-Dense(1), N={n}, d={D_IN}"
        print_table(title, results["B"]["timings"], n, "ours_auto")
        print_sweep("B sweep", results["B"]["timings"])
        print_agreement(results["B"].get("agreement", {}))
        for name, msg in results["B"].get("nt_errors", {}).items():
            print(f"  {LABELS[name]} failed on jax {ref_versions['jax']}: {msg[:200]}")
        if "nt_impl1" in results["B"]["timings"]:
            tm = results["B"]["timings"]
            t_o, t_r, line = summary("B", tm, n, "ours_auto", "nt_impl1")
            best = min(
                (k for k in tm if k.startswith("nt_impl")), key=lambda k: at_n(tm[k], n)["steady_s"]
            )
            t_best = at_n(tm[best], n)["steady_s"]
            results["B"]["summary"] = {
                "ours_s": t_o,
                "nt_s": t_r,
                "ratio": t_r / t_o,
                "nt_best": best,
                "nt_best_s": t_best,
                "ratio_best": t_best / t_o,
            }
            lines.append(
                line + f" (neural-tangents default impl 1, vmap_axes=0, jitted; its fastest, "
                f"{best.replace('nt_', '')}: {t_best:.3g} s, ratio {t_best / t_o:.2f}×)"
            )

    print(
        f"\nNote: {os.cpu_count()} CPU cores, shared with other work "
        f"(load average now {os.getloadavg()[0]:.2f}); OPENBLAS_CORETYPE="
        f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}. Ours on jax {jax.__version__}, "
        f"neural-tangents on jax {ref_versions['jax'] if ref_versions else '?'}: different XLA "
        "versions. Ratio = neural-tangents time / our time."
    )
    for line in lines:
        print(line)

    record = {
        "benchmarks": results,
        "settings": {
            "quick": args.quick,
            "repeats": repeats,
            "d": D_IN,
            "A_net": A_NET,
            "B_width": B_WIDTH,
            "nt_B_implementations": NT_B_IMPLEMENTATIONS,
            "nt_B_vmap_axes": NT_B_VMAP_AXES,
            "ratio": "neural-tangents steady time / our steady time",
        },
        "summary_lines": lines,
        "provenance": {
            "git": git_commit(),
            "versions": library_versions(),
            "reference_versions": ref_versions,
            "device": device_info(),
            "host": {
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "loadavg": os.getloadavg(),
                "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
                "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
            },
            "wall_time_s": time.perf_counter() - t_start,
            "argv": sys.argv,
        },
    }
    save_json_atomic(json_path, record)
    figs = save_figure(plot(results, args.quick), "bench_kernels", fig_dir)
    print(f"wrote {json_path} and {', '.join(str(p) for p in figs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
