"""Speed of our kernels against neural-tangents 0.6.5, on the same inputs in the same run.

Usage::

    python -m benchmarks.kernels [--quick] [--only A|B] [--repeats R] [--plot-only]

- **A** (infinite width): NNGP + NTK of ``serial(*[Dense(512, W_std=1.4, b_std=0.1),
  Relu()] * 10, Dense(1, W_std=1.4, b_std=0.1))`` on N = 250 … 4000 points in d = 100,
  float32, ``kernel_fn(x, None, ("nngp", "ntk"))``. Ours: `theory.kernels.stax` (jitted
  internally); neural-tangents: ``jax.jit(kernel_fn, static_argnames="get")`` and the plain,
  un-jitted ``kernel_fn``.
- **B** (finite width): empirical NTK of ``Dense(1024)-Relu-Dense(1024)-Relu-Dense(1)``
  (no biases: P = 1,152,000 weights) on N = 62 … 500 points, float32, same parameters on both sides.
  Ours: `theory.kernels.empirical.empirical_ntk` with ``"auto"`` (the structured path: no
  per-example Jacobian) at every N, and the generic ``"jacobian"`` path while one Jacobian
  block holds all N points, N ≤ ``_JACOBIAN_BLOCK_ELEMENTS`` / P = 2**28 / P = 233. Above that
  the path splits the points into blocks and recomputes the column blocks' Jacobians for every
  row block, so it gets a single call (compile included) at the first larger N of the sweep,
  stored as ``jacobian_probe``, to show what it would cost. neural-tangents:
  ``jax.jit(empirical_ntk_fn(apply_fn, implementation=i, vmap_axes=0))`` for i = 1 (its
  default, Jacobian contraction), 2 (NTK-vector products) and 3 (structured derivatives). An
  implementation that raises is recorded in ``nt_errors`` (exception type, message, raising
  frame, N, jax version) and drawn as failed; on jax 0.4.38 implementation 3 raises.

Timing: `benchmarks.timing.time_call`, the same function on both sides: a first call, then
``repeats`` calls, each ended by ``block_until_ready``; ``steady_s`` is their median. For
jitted code ``compile_s = first_s − steady_s``; the un-jitted neural-tangents ``kernel_fn`` is
not compiled as a whole, so its ``first_s − steady_s`` is stored as ``first_extra_s`` and not
shown as compile time. Ours runs first in this process, then `reference/nt_bench.py` in
``.venv-ref`` (jax 0.4.38) on inputs passed through an ``.npz``; the two never run at the same
time. The host's load average is recorded before each side and at the end.

Ratio at each N = t_NT,best / t_ours (> 1: ours faster), where NT,best is neural-tangents'
fastest working method at that N: for A the faster of jitted and un-jitted ``kernel_fn``, for
B the fastest implementation that ran.

Writes ``results/bench/kernels.json`` and ``paper_figs/bench_kernels.{png,pdf}``; runs with
``--quick``, ``--only`` or ``--repeats`` write ``results/bench/kernels-<variant>.json`` and
their figure under ``results/bench/kernels-<variant>/`` instead.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from benchmarks import timing
from experiments._common import (
    FIGS_DIR,
    REPO_ROOT,
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
from theory.kernels import stax

REF_PYTHON = REPO_ROOT / ".venv-ref" / "bin" / "python"
REF_SCRIPT = REPO_ROOT / "reference" / "nt_bench.py"

# Benchmark settings: the full run and the --quick smoke preset.
D_IN = 100  # input dimension d
A_NET = {"d_width": 512, "depth": 10, "W_std": 1.4, "b_std": 0.1}
B_WIDTH = 1024
FULL = {"A_ns": [250, 500, 1000, 2000, 4000], "B_ns": [62, 125, 250, 500], "repeats": 3}
QUICK = {"A_ns": [100, 200, 400], "B_ns": [31, 62], "repeats": 1}
# 1 = JACOBIAN_CONTRACTION (its default), 2 = NTK_VECTOR_PRODUCTS, 3 = STRUCTURED_DERIVATIVES
NT_B_IMPLEMENTATIONS = [1, 2, 3]
# The batch axis is independent across points, as empirical_ntk_fn's docstring asks users to
# declare; without it neural-tangents differentiates the whole batch per output (O(N²)
# backward passes: 6 s instead of 2 s at N=62, far worse at N=500).
NT_B_VMAP_AXES = 0

OURS = {"A": "ours", "B": "ours_auto"}  # the method each ratio is taken against
NT_METHODS = {"A": ("nt_jit", "nt_nojit"), "B": tuple(f"nt_impl{i}" for i in NT_B_IMPLEMENTATIONS)}

LABELS = {
    "ours": "ours (theory.kernels.stax)",
    "nt_jit": "neural-tangents, jax.jit",
    "nt_nojit": "neural-tangents, not jitted",
    "ours_auto": 'ours, "auto" (structured)',
    "ours_jacobian": 'ours, "jacobian"',
    "nt_impl1": "neural-tangents impl. 1 (default)",
    "nt_impl2": "neural-tangents impl. 2",
    "nt_impl3": "neural-tangents impl. 3",
}
SHORT = {"nt_jit": "jit", "nt_nojit": "no jit", "nt_impl1": "impl. 1", "nt_impl2": "impl. 2"}
SHORT["nt_impl3"] = "impl. 3"
COLORS = {"ours": "C0", "ours_auto": "C0", "ours_jacobian": "C4", "nt_jit": "C1"}
COLORS.update(nt_impl1="C1", nt_nojit="C2", nt_impl2="C2", nt_impl3="C3")


def time_call(fn, repeats):
    """`benchmarks.timing.time_call` of our (always jitted) code."""
    return timing.time_call(fn, repeats, jax.block_until_ready, jitted=True)


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


def jacobian_one_block_n(params):
    """Largest N whose whole Jacobian (N × P float32, one output) is one block of the
    "jacobian" path, and P."""
    from theory.kernels.empirical import _JACOBIAN_BLOCK_ELEMENTS

    n_params = sum(int(np.prod(np.shape(p))) for p in jax.tree_util.tree_leaves(params))
    return _JACOBIAN_BLOCK_ELEMENTS // n_params, n_params


def bench_b_ours(empirical_ntk, params, apply_fn, x_all, ns, repeats):
    """Timings of "auto" at every N and of "jacobian" up to one block; one "jacobian" call
    just beyond (the probe, or None); our kernels at the largest N."""
    one_block_n, n_params = jacobian_one_block_n(params)
    timings, main, probe = {}, {}, None
    for impl in ("auto", "jacobian"):
        name = f"ours_{impl}"
        timings[name] = []
        for n in ns:
            x = jnp.asarray(x_all[:n])

            def call(x=x, impl=impl):
                return empirical_ntk(apply_fn, params, x, implementation=impl)

            if impl == "jacobian" and n > one_block_n:
                t0 = time.perf_counter()
                jax.block_until_ready(call())
                first = time.perf_counter() - t0
                probe = {"n": n, "first_s": first, "one_block_n": one_block_n}
                probe["n_params"] = n_params
                print(
                    f"  [ours]            {name:<22} N={n:<5d} one call (compile included) "
                    f"{first:8.3f} s: beyond one Jacobian block (N <= {one_block_n}); "
                    "larger N not timed",
                    flush=True,
                )
                break
            row, k = time_call(call, repeats)
            timings[name].append({"n": n, **row})
            _log(name, n, row)
            if n == ns[-1]:
                main[name] = np.asarray(k)
    return timings, main, probe


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


# ------------------------------------------------------------------ analysis


def max_rel_diff(ours, ref):
    """max |ours − ref| / |ref| elementwise, and max |ours − ref| / max |ref|."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    err = np.abs(ours - ref)
    scale = np.max(np.abs(ref))
    elementwise = np.max(err / np.maximum(np.abs(ref), 1e-30 * scale))
    return {"elementwise": float(elementwise), "normalised": float(np.max(err) / scale)}


def at_n(rows, n):
    return next((r for r in rows if r["n"] == n), None)


def ratio_rows(timings, ours, nt_methods):
    """Per N of ``ours``: our steady time, neural-tangents' fastest working method there, the
    ratio t_NT,best / t_ours, and every jitted method's compile time."""
    out = []
    for r in timings[ours]:
        n = r["n"]
        nt = {m: at_n(timings[m], n) for m in nt_methods if m in timings}
        nt = {m: row for m, row in nt.items() if row is not None}
        if not nt:
            continue
        best = min(nt, key=lambda m: nt[m]["steady_s"])
        out.append(
            {
                "n": n,
                "ours_s": r["steady_s"],
                "nt_best": best,
                "nt_best_s": nt[best]["steady_s"],
                "ratio": nt[best]["steady_s"] / r["steady_s"],
                "ours_compile_s": r["compile_s"],
                "nt_compile_s": {m: row["compile_s"] for m, row in nt.items() if row["jitted"]},
            }
        )
    return out


def compile_verdict(rows):
    """The N at which our compile time is longer than every jitted neural-tangents method's,
    and those at which it is not."""
    longer = [
        r["n"]
        for r in rows
        if r["nt_compile_s"] and r["ours_compile_s"] > max(r["nt_compile_s"].values())
    ]
    return {
        "ours_longer_at": longer,
        "not_longer_at": [r["n"] for r in rows if r["n"] not in longer],
    }


def _ns(ns):
    return ", ".join(str(n) for n in ns)


def growth_entries(steps):
    return ", ".join(f"×{(r1['n'] / r0['n']) ** 2:.0f}" for r0, r1 in steps)


def notes(b, res, tex=False):
    """Findings for benchmark ``b``, every number read from ``res``. ``tex``: with matplotlib
    mathtext (for the figure; math spans hold no spaces, so line wrapping cannot split them),
    else plain text (console and JSON)."""

    def m(math, plain):
        return f"${math}$" if tex else plain

    def n_is(n):
        return m(f"N={n}", f"N = {n}")

    rows, tm = res.get("ratios", []), res["timings"]
    out = []
    if rows:
        hi = rows[-1]
        faster = [r["n"] for r in rows if r["ratio"] > 1]
        where = (
            f"faster at every {m('N', 'N')} measured"
            if len(faster) == len(rows)
            else f"faster only at {m('N', 'N')} = {_ns(faster) or 'none'}"
        )
        steps = ", ".join(f"{r['ratio']:.1f}× at {n_is(r['n'])}" for r in rows)
        out.append(
            f"Ours is {where}, against neural-tangents' fastest working method at each "
            f"{m('N', 'N')}: {steps}."
        )
    if b == "A" and len(rows) >= 2:
        from theory.kernels.batching import default_tile

        steps = list(zip(rows, rows[1:]))

        def growth(key):
            return ", ".join(f"×{r1[key] / r0[key]:.1f}" for r0, r1 in steps)

        text = (
            f"Step by step in {m('N', 'N')} ({_ns(r['n'] for r in rows)}; entries "
            f"{growth_entries(steps)}) neural-tangents' time grows {growth('nt_best_s')}, "
            f"ours {growth('ours_s')}"
        )
        slow = [
            r1["n"]
            for r0, r1 in steps
            if r1["ours_s"] / r0["ours_s"] < 0.5 * (r1["n"] / r0["n"]) ** 2
        ]
        if slow:
            text += (
                f": up to {n_is(slow[-1])} ours grows less than half as fast as the number "
                f"of entries (part of its time does not scale with {m('N^2', 'N²')}, e.g. "
                f"per-call costs), which hides its lower per-entry cost at small {m('N', 'N')}, "
                f"so the ratio rises with {m('N', 'N')}"
            )
        nxn = m(r"N\times N", "N×N")
        tiled = [r["n"] for r in rows if default_tile(r["n"], r["n"]) is not None]
        if tiled:
            text += (
                f". From {n_is(tiled[0])} on ours evaluates cache-sized 400-row tiles and only "
                "the upper triangle, while neural-tangents materialises every layer's full "
                f"{nxn} arrays ({hi['n'] ** 2 * 4 / 2**20:.0f} MiB each at {n_is(hi['n'])})"
            )
        out.append(
            text + ". The two sides also run different XLA versions (see the title); that "
            "part of the difference is not separated here."
        )
    if b == "B":
        formula = m(
            r"\hat{\Theta}=\sum_l(\delta_l\delta_l^{\top})\odot(a_{l-1}a_{l-1}^{\top})",
            "Θ̂ = Σ_l (δ_l δ_lᵀ) ⊙ (a_(l−1) a_(l−1)ᵀ)",
        )
        out.append(
            f"Ours never forms the per-example Jacobian: {formula} from one forward and one "
            "backward pass, while neural-tangents' impl. 1 and 2 differentiate per example; "
            "its own structured method (impl. 3) would be the like-for-like comparison."
        )
        for name, err in res.get("nt_errors", {}).items():
            # The raising frame is a file path: kept out of the figure, printed and stored.
            where = "" if tex else f" in {err['where']}"
            out.append(
                f"{LABELS[name]} crashes on jax {err['jax']} at {n_is(err['n'])}: "
                f"{err['type']}{where} (message in the JSON); no time."
            )
        probe = res.get("jacobian_probe")
        if probe is not None:
            jac = tm.get("ours_jacobian", [])
            ref = jac[-1] if jac else None
            more = (
                f" ({probe['first_s'] / ref['first_s']:.0f}× its first call at {n_is(ref['n'])})"
                if ref
                else ""
            )
            limit = m(
                f"N\\leq2^{{28}}/P={probe['one_block_n']}",
                f"N ≤ 2^28 / P = {probe['one_block_n']}",
            )
            out.append(
                f'Ours "jacobian" is timed while one 1 GiB block holds the whole Jacobian '
                f"({limit}, {m('P', 'P')} = {probe['n_params']:,} parameters). At "
                f"{n_is(probe['n'])} it splits the points into blocks and recomputes the "
                f"column blocks' Jacobians for every row block: one call took "
                f"{probe['first_s']:.1f} s{more}, so larger {m('N', 'N')} are not timed."
            )
    zero = [
        f"{LABELS[name]} at {n_is(r['n'])}"
        for name, rs in tm.items()
        for r in rs
        if r.get("jitted") and r["first_s"] <= r["steady_s"]
    ]
    if zero:
        out.append(
            "Compile time drawn as 0 where the first call was not slower than the median "
            f"steady call (load noise): {'; '.join(zero)}."
        )
    for name, rs in tm.items():
        c = [(r["n"], r["compile_s"]) for r in rs if r.get("jitted")]
        if len(c) >= 2 and c[-1][1] > 3 * max(v for _, v in c[:-1]):
            out.append(
                f"{LABELS[name]}: first call minus steady at {n_is(c[-1][0])} "
                f"({c[-1][1]:.1f} s) is over 3× its largest value at smaller {m('N', 'N')} "
                f"({max(v for _, v in c[:-1]):.1f} s): it includes a one-time cost of the "
                "first large run besides compilation (not separated here)."
            )
    verdict = res.get("compile")
    if verdict:
        longer, shorter = verdict["ours_longer_at"], verdict["not_longer_at"]
        if longer and not shorter:
            out.append(
                "Compile time: ours is longer than every jitted neural-tangents method at "
                f"every {m('N', 'N')}."
            )
        elif longer:
            out.append(
                "Compile time: ours is longer than every jitted neural-tangents method at "
                f"{m('N', 'N')} = {_ns(longer)}, not at {m('N', 'N')} = {_ns(shorter)}."
            )
        else:
            out.append(
                "Compile time: ours is not longer than every jitted neural-tangents method "
                f"at any {m('N', 'N')}."
            )
    return out


# ------------------------------------------------------------------ report


def print_agreement(agreement):
    for what, d in agreement.items():
        print(
            f"  agreement {what}: max rel diff {d['elementwise']:.2e} "
            f"(normalised by max |ref|: {d['normalised']:.2e})"
        )


def _cell(r):
    if r is None:
        return "-"
    if r["jitted"]:
        return f"{r['steady_s']:8.4f} (c {r['compile_s']:5.2f})"
    return f"{r['steady_s']:8.4f} (f {r['first_extra_s']:5.2f})"


def print_sweep(title, timings):
    print(
        f"\n{title}: steady time [s] against N; (c x): compile = first call - steady, jitted; "
        "(f x): first call - steady of un-jitted code (not compile)"
    )
    ns = sorted({r["n"] for rows in timings.values() for r in rows})
    print(f"  {'method':<36} " + " ".join(f"{'N=' + str(n):>21}" for n in ns))
    for name, rows in timings.items():
        cells = [_cell(at_n(rows, n)) for n in ns]
        print(f"  {LABELS[name]:<36} " + " ".join(f"{c:>21}" for c in cells))


def print_ratios(title, rows):
    print(f"\n{title}: ratio = neural-tangents' fastest working method / ours (steady)")
    print(
        f"  {'N':>5} {'ours [s]':>10} {'NT best':>10} {'NT best [s]':>12} {'ratio':>8}"
        f" {'ours compile [s]':>17}  NT compile [s]"
    )
    for r in rows:
        nt_c = ", ".join(f"{SHORT[m]} {c:.2f}" for m, c in r["nt_compile_s"].items())
        print(
            f"  {r['n']:>5} {r['ours_s']:>10.4f} {SHORT[r['nt_best']]:>10} "
            f"{r['nt_best_s']:>12.4f} {r['ratio']:>7.2f}x {r['ours_compile_s']:>17.2f}  {nt_c}"
        )


def plot(results, quick, host):
    plt = pyplot()
    panels = [b for b in ("A", "B") if b in results]
    fig, axes = plt.subplots(
        3,
        len(panels),
        figsize=(7.6 * len(panels), 12.5),
        squeeze=False,
        gridspec_kw={"height_ratios": [1.25, 1, 1]},
    )
    titles = {
        "A": r"A: NNGP + NTK, depth-10 ReLU, width 512, $d = 100$",
        "B": r"B: empirical NTK, two ReLU layers of width 1024, $d = 100$",
    }
    for col, b in enumerate(panels):
        res = results[b]
        tm = res["timings"]
        ax_t, ax_c, ax_r = axes[:, col]
        names = [m for m in LABELS if m in tm and tm[m]]  # fixed order (JSON sorts keys)
        ns_all = sorted({r["n"] for m in names for r in tm[m]})

        for name in names:
            rows = tm[name]
            ax_t.loglog(
                [r["n"] for r in rows],
                [r["steady_s"] for r in rows],
                "o-",
                color=COLORS[name],
                label=LABELS[name],
            )
        probe = res.get("jacobian_probe")
        if probe is not None:
            ax_t.loglog(
                [probe["n"]],
                [probe["first_s"]],
                "s",
                color=COLORS["ours_jacobian"],
                mfc="none",
                ms=8,
                mew=1.6,
                label=f'ours, "jacobian": one call at $N = {probe["n"]}$, compile incl.\n'
                f"(no longer one Jacobian block; larger $N$ not timed)",
            )
        for name, err in res.get("nt_errors", {}).items():
            # The failure is drawn where it happened: an × just above the axes at that N.
            ax_t.plot(
                [err["n"]],
                [1.04],
                "X",
                color=COLORS[name],
                ms=11,
                clip_on=False,
                transform=ax_t.get_xaxis_transform(),
                label=f"{LABELS[name]}: crashes on jax {err['jax']}\n({err['type']}), no time",
            )
            ax_t.annotate(
                f"{LABELS[name]} crashed here ({err['type']})",
                (err["n"], 1.04),
                xycoords=ax_t.get_xaxis_transform(),
                textcoords="offset points",
                xytext=(9, 0),
                va="center",
                fontsize=8,
                color=COLORS[name],
            )
        ax_t.set_ylabel(r"steady time per call $t$ [s]")
        ax_t.set_title(titles[b], pad=22 if res.get("nt_errors") else 6)

        for name in names:
            rows = [r for r in tm[name] if r["jitted"]]
            if rows:
                ax_c.semilogx(
                    [r["n"] for r in rows],
                    [r["compile_s"] for r in rows],
                    "o--",
                    color=COLORS[name],
                    label=LABELS[name],
                )
        ax_c.set_ylim(bottom=0)
        ax_c.set_ylabel("compile time [s]\n(first call $-$ steady)")
        unjitted = [LABELS[m] for m in names if not tm[m][0]["jitted"]]
        ax_c.set_title(
            "compile time, jitted code only"
            + (f"\n({', '.join(unjitted)}: not compiled, not shown)" if unjitted else ""),
            fontsize=9,
        )

        rows = res.get("ratios", [])
        if rows:
            ns = [r["n"] for r in rows]
            ratios = [r["ratio"] for r in rows]
            ax_r.loglog(ns, ratios, "o-", color="k", label="neural-tangents best / ours")
            ax_r.axhline(1.0, color="0.5", lw=1, ls=":")
            for r in rows:
                ax_r.annotate(
                    f"{r['ratio']:.1f}×\nvs NT {SHORT[r['nt_best']]}",
                    (r["n"], r["ratio"]),
                    textcoords="offset points",
                    xytext=(0, 8),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
            top = max(ratios + [1.0]) * 8
            ax_r.set_ylim(min(ratios + [1.0]) / 2, top)
        ax_r.set_ylabel(r"$t_{\mathrm{NT,\,best}} \,/\, t_{\mathrm{ours}}$")
        ax_r.set_title(
            "ratio against neural-tangents' fastest working method at each $N$", fontsize=9
        )
        ax_r.set_xlabel(r"$N$ (points)")
        text = "\n".join(
            textwrap.fill(line, 105, break_long_words=False, break_on_hyphens=False)
            for line in notes(b, res, tex=True)
        )
        ax_r.text(0.0, -0.28, text, transform=ax_r.transAxes, va="top", ha="left", fontsize=7.5)

        for ax in (ax_t, ax_c, ax_r):
            ax.set_xticks(ns_all, [str(n) for n in ns_all])
            ax.minorticks_off()
            ax.set_xlim(ns_all[0] / 1.25, ns_all[-1] * 1.25)
        for ax in (ax_t, ax_c):
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7.5)

    load = host.get("loadavg", {})
    load_txt = ", ".join(f"{k} {v['1min']:.1f}" for k, v in load.items())
    fig.suptitle(
        f"float32, {host.get('cpus')} CPU cores shared with other work (1-min load average: "
        f"{load_txt}); neural-tangents 0.6.5 on jax {host.get('nt_jax', '?')}, ours on jax "
        f"{host.get('jax', '?')}; median of {host.get('repeats')} call(s) after a first call"
        + (" (quick)" if quick else ""),
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.975))
    return fig


def derive(results, echo=False):
    """Add ``ratios``, ``compile`` and ``notes`` to each benchmark (printing the tables when
    ``echo``); the summary lines, one per note."""
    lines = []
    for b, res in results.items():
        res["ratios"] = ratio_rows(res["timings"], OURS[b], NT_METHODS[b])
        res["compile"] = compile_verdict(res["ratios"])
        if echo:
            print_sweep(f"{b} sweep", res["timings"])
            print_agreement(res.get("agreement", {}))
            if res["ratios"]:
                print_ratios(f"{b} ratios", res["ratios"])
            for name, err in res.get("nt_errors", {}).items():
                print(
                    f"  {LABELS[name]} failed at N={err['n']} on jax {err['jax']}: "
                    f"{err['type']}: {err['message'][:300]} (at {err['where']})"
                )
        res["notes"] = notes(b, res)
        lines += [f"{b}: {line}" for line in res["notes"]]
    return lines


@dataclass(frozen=True)
class Args:
    """Time our kernels against neural-tangents 0.6.5 on the same inputs in one run."""

    quick: bool = False
    """smaller N, 1 repeat"""
    only: Literal["A", "B"] | None = None
    """run one benchmark"""
    repeats: Annotated[int | None, Interval(ge=1)] = None
    """timed calls after warm-up (None: the preset's)"""
    no_unjitted: bool = False
    """skip the un-jitted neural-tangents kernel_fn"""
    plot_only: bool = False
    """redraw the figure from the saved JSON"""

    def __post_init__(self):
        check_fields(self)


def main(argv=None):
    # a bad value (type, or a rule in an annotation) exits 2 naming the flag
    args = tyro.cli(Args, args=argv, prog="python -m benchmarks.kernels")
    run = "kernels" + ("-quick" if args.quick else "") + (f"-only-{args.only}" if args.only else "")
    # Only the full default run writes the committed figure and results/bench/kernels.json.
    default = run == "kernels" and args.repeats is None
    json_path = RESULTS_DIR / "bench" / f"{run}.json"
    fig_dir = FIGS_DIR if default else RESULTS_DIR / "bench" / run
    if args.plot_only:
        with open(json_path) as fh:
            record = json.load(fh)
        # Ratios and findings are derived from the stored timings; refresh them with this
        # code's wording (the timings themselves are left exactly as measured).
        record["summary_lines"] = derive(record["benchmarks"])
        save_json_atomic(json_path, record)
        fig = plot(record["benchmarks"], args.quick, figure_host(record))
        figs = save_figure(fig, "bench_kernels", fig_dir)
        print(f"wrote {', '.join(str(p) for p in figs)}")
        return 0
    preset = QUICK if args.quick else FULL
    repeats = args.repeats if args.repeats is not None else preset["repeats"]
    todo = [args.only] if args.only else ["A", "B"]
    t_start = time.perf_counter()
    load = {"start": timing.load_average()}

    print(
        f"benchmarks.kernels: {os.cpu_count()} CPU cores on this machine, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')} (left as is), "
        f"load average {load['start']['1min']:.2f}; ours: jax {jax.__version__} on "
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
            timings, main_k, probe = bench_b_ours(
                empirical_ntk, params, apply_fn, b_x, preset["B_ns"], repeats
            )
            results["B"] = {"timings": timings, "n": preset["B_ns"][-1]}
            if probe is not None:
                results["B"]["jacobian_probe"] = probe
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
    load["reference_start"] = timing.load_average()
    ref = run_reference(config, arrays)
    load["end"] = timing.load_average()
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

    lines = derive(results, echo=True)

    print(
        f"\nNote: {os.cpu_count()} CPU cores, shared with other work (1-min load average at "
        f"start {load['start']['1min']:.2f}, before neural-tangents "
        f"{load['reference_start']['1min']:.2f}, at end {load['end']['1min']:.2f}); "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}. Ours on jax "
        f"{jax.__version__}, neural-tangents on jax "
        f"{ref_versions['jax'] if ref_versions else '?'}: different XLA versions."
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
            "ratio": "t_NT,best / t_ours (steady), NT,best = neural-tangents' fastest working "
            "method at that N (A: jitted or not; B: implementations that ran)",
            "compile_s": "first call - median steady call, jitted code only; un-jitted code "
            "has first_extra_s instead",
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
                "loadavg": load,
                "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
                "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
            },
            "wall_time_s": time.perf_counter() - t_start,
            "argv": sys.argv,
        },
    }
    save_json_atomic(json_path, record)
    figs = save_figure(plot(results, args.quick, figure_host(record)), "bench_kernels", fig_dir)
    if default:  # results/ is not committed: the figure's numbers and settings go beside it
        figs.append(save_json_atomic(Path(fig_dir) / "bench_settings.json", record))
    print(f"wrote {json_path} and {', '.join(str(p) for p in figs)}")
    return 0


def figure_host(record):
    """What the figure's title states about the run, from the saved record."""
    prov = record["provenance"]
    return {
        "cpus": prov["host"]["cpus"],
        "loadavg": {
            label: prov["host"]["loadavg"][k]
            for k, label in (("start", "start"), ("reference_start", "before NT"), ("end", "end"))
            if k in prov["host"]["loadavg"]
        },
        "jax": prov["versions"].get("jax", "?"),
        "nt_jax": (prov["reference_versions"] or {}).get("jax", "?"),
        "repeats": record["settings"]["repeats"],
    }


if __name__ == "__main__":
    sys.exit(main())
