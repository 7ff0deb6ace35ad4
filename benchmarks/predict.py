r"""Infinite-ensemble predictions (`predict.gradient_descent_mse_ensemble`): ours against
neural-tangents, with the time split between the kernel and the linear algebra.

Usage::

    python -m benchmarks.predict [--quick] [--sizes 500 1000 4000] [--repeats 2] [--no-reference]

One script text (``SCRIPT``) is run by both libraries, ``nt`` bound to ``theory.kernels`` or to
neural-tangents 0.6.5 (``reference/nt_predict_bench.py`` in ``.venv-ref``), each size and case
in a fresh process (its peak resident memory is its own): a 3-layer ReLU network (Dense 512,
``W_std = 1.5``, ``b_std = 0.05``) on N training points of dimension 64 with 10 outputs, M = N/4
test points, 20 times log-spaced over 10 … 10⁶ steps, float32, ``diag_reg = 1e-4``. Cases:

- ``mean``: ``predict_fn(t, x_test, "ntk")``, the trained ensemble's mean;
- ``cov``: ``predict_fn(t, x_test, ("nngp", "ntk"), compute_cov=True)``, means and
  covariances of both.

Each timed call builds a new predictor and calls it once (nothing cached from a previous call;
compiled code is, after the first call). neural-tangents' ``kernel_fn`` is jitted
(``jax.jit(kernel_fn, static_argnames="get")``: its fastest use); ours is called as is. The
time inside ``kernel_fn`` (blocked until ready) is reported as ``kernel_s``, the rest as
``linear_algebra_s`` (eigendecompositions, solves, contractions). Accuracy: each library's
float32 outputs against ours in float64 (one more process), the largest difference relative
to the largest entry; a run passes when ours is within 1e-3 or no worse than
neural-tangents' (float32 eigendecompositions of kernels with condition number up to 1e4
after ``diag_reg``; covariances are differences of terms larger than themselves).

Writes ``results/bench/predict.json`` (``--quick``: N = 64 and 128, ``predict-quick.json``).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro

from benchmarks import timing
from experiments._common import RESULTS_DIR, Interval, check_fields, git_commit, save_json_atomic

ROOT = Path(__file__).resolve().parent.parent
REF_PYTHON = ROOT / ".venv-ref" / "bin" / "python"
REF_SCRIPT = ROOT / "reference" / "nt_predict_bench.py"
AGREEMENT = 1e-3
CASES = ("mean", "cov")

SCRIPT = """
import time

def make(nt, a, jit_kernel):
    stax = nt.stax
    _, _, kernel_fn = stax.serial(
        stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(),
        stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(),
        stax.Dense(1, W_std=1.5, b_std=0.05),
    )
    if jit_kernel:
        kernel_fn = jax.jit(kernel_fn, static_argnames="get")
    spent = [0.0]

    def timed_kernel_fn(x1, x2, get, **kwargs):
        t0 = time.perf_counter()
        out = jax.block_until_ready(kernel_fn(x1, x2, get, **kwargs))
        spent[0] += time.perf_counter() - t0
        return out

    def call():
        spent[0] = 0.0
        predict_fn = nt.predict.gradient_descent_mse_ensemble(
            timed_kernel_fn, a["x_train"], a["y_train"], learning_rate=1.0, diag_reg=1e-4
        )
        if str(a["case"]) == "mean":
            return {"ntk_mean": predict_fn(a["t"], a["x_test"], "ntk")}
        out = predict_fn(a["t"], a["x_test"], ("nngp", "ntk"), compute_cov=True)
        return {"nngp_mean": out.nngp.mean, "nngp_cov": out.nngp.covariance,
                "ntk_mean": out.ntk.mean, "ntk_cov": out.ntk.covariance}

    return call, spent
"""


def inputs(n: int, m: int, case: str, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.standard_normal((n, 64)).astype(np.float32),
        "x_test": rng.standard_normal((m, 64)).astype(np.float32),
        "y_train": np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)] - 0.1,
        "t": np.logspace(1, 6, 20).astype(np.float32),
        "case": case,
    }


WORKER = "_predict_worker"


def worker(req_path: str, res_path: str, x64: str = "0") -> None:
    """One timed run of ours, in this fresh process (``x64 == "1"``: one untimed float64 run,
    the reference both libraries' float32 answers are measured against)."""
    import jax
    import jax.numpy as jnp

    if x64 == "1":
        jax.config.update("jax_enable_x64", True)

    import theory.kernels as nt

    with np.load(req_path) as z:
        req = {k: z[k] for k in z.files}
    scope = {"jax": jax, "jnp": jnp, "np": np}
    exec(SCRIPT, scope)  # noqa: S102 - the script above
    if x64 == "1":
        req = {k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in req.items()}
        call, _ = scope["make"](nt, req, False)
        out = jax.block_until_ready(call())
        np.savez(res_path, timing=json.dumps({"x64": True}), **{k: np.asarray(v) for k, v in
                                                                  out.items()})  # fmt: skip
        return
    call, spent = scope["make"](nt, req, False)
    kernel_times = []

    def run():
        out = call()
        kernel_times.append(spent[0])
        return out

    row, out = timing.time_call(run, int(req["repeats"]), jax.block_until_ready, False)
    row.update(split(row, kernel_times), peak_rss_bytes=_rss())
    np.savez(res_path, timing=json.dumps(row), **{k: np.asarray(v) for k, v in out.items()})


def split(row: dict, kernel_times: list[float]) -> dict:
    """The median call's time inside kernel_fn and outside it."""
    repeated = kernel_times[1:]
    kernel_s = float(np.median(repeated))
    return {"kernel_s": kernel_s, "linear_algebra_s": row["steady_s"] - kernel_s}


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Args:
    """gradient_descent_mse_ensemble: ours against neural-tangents 0.6.5."""

    quick: bool = False
    """a smoke run: N = 64 and 128"""
    sizes: tuple[int, ...] = (500, 1000, 4000)
    """training-set sizes N (M = N/4 test points)"""
    repeats: Annotated[int, Interval(ge=1)] = 2
    """timed calls after the first one"""
    timeout_s: Annotated[float, Interval(gt=0)] = 1800.0
    """per-run limit (a run over it is recorded as failed)"""
    no_reference: bool = False
    """skip neural-tangents (also skipped, with a note, when .venv-ref is absent)"""
    seed: int = 0


def run(cmd: list[str], res: Path, timeout: float, env: dict) -> tuple[dict, dict]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": {"type": "timeout", "message": f"over {timeout:.0f} s"}}, {}
    if proc.returncode != 0 or not res.exists():
        return {"error": {"type": "crash", "message": proc.stderr[-1500:]}}, {}
    with np.load(res) as z:
        return json.loads(str(z["timing"])), {k: z[k] for k in z.files if k != "timing"}


def bench_case(n: int, case: str, args: Args, tmp: Path) -> dict:
    m = max(n // 4, 1)
    # sub-second calls are timed more often: their medians would otherwise be noise
    repeats = args.repeats if n > 1000 else max(args.repeats, 7)
    req = {**inputs(n, m, case, args.seed), "repeats": repeats, "source": SCRIPT}
    req_path = tmp / f"{n}-{case}.npz"
    np.savez(req_path, **req)
    env = {**os.environ, "XLA_FLAGS": ""}
    res = tmp / f"{n}-{case}-ours.npz"
    ours, out_ours = run([sys.executable, "-m", "benchmarks.predict", WORKER, str(req_path),
                          str(res)], res, args.timeout_s, env)  # fmt: skip
    row = {"n": n, "m": m, "case": case, "ours": ours}
    _print(n, case, "ours", ours)
    why = reference_skipped(args)
    if why:
        row["reference_skipped"] = why
        return row
    res = tmp / f"{n}-{case}-nt.npz"
    nt, out_nt = run([str(REF_PYTHON), str(REF_SCRIPT), str(req_path), str(res)], res,
                     args.timeout_s, {**env, "JAX_PLATFORMS": "cpu"})  # fmt: skip
    row["neural_tangents"] = nt
    _print(n, case, "neural-tangents", nt)
    if "steady_s" in ours and "steady_s" in nt:
        res = tmp / f"{n}-{case}-x64.npz"
        _, exact = run([sys.executable, "-m", "benchmarks.predict", WORKER, str(req_path),
                        str(res), "1"], res, args.timeout_s, env)  # fmt: skip
        row["speedup"] = nt["steady_s"] / ours["steady_s"]
        row["relative_difference"] = _errors(out_ours, out_nt)
        row["error_vs_float64"] = {"ours": _errors(out_ours, exact), "neural_tangents":
                                   _errors(out_nt, exact)}  # fmt: skip
        worst = max(row["error_vs_float64"]["ours"].values())
        theirs = max(row["error_vs_float64"]["neural_tangents"].values())
        row["agreement_passed"] = worst <= max(AGREEMENT, theirs)
        print(
            f"  N = {n} {case}: {row['speedup']:.2f}x (kernel {nt['kernel_s']:.2f} -> "
            f"{ours['kernel_s']:.2f} s, linear algebra {nt['linear_algebra_s']:.2f} -> "
            f"{ours['linear_algebra_s']:.2f} s); ours vs neural-tangents "
            f"{max(row['relative_difference'].values()):.1e}; vs float64: ours {worst:.1e}, "
            f"neural-tangents {theirs:.1e} (pass: ours <= max({AGREEMENT:g}, theirs))",
            flush=True,
        )
    return row


def _errors(got: dict, want: dict) -> dict:
    """Largest difference relative to the largest entry, per output."""
    return {k: float(np.max(np.abs(got[k] - want[k])) / np.max(np.abs(want[k]))) for k in want}


def _print(n, case, who, row):
    if "error" in row:
        e = row["error"]
        print(f"  N = {n} {case}: {who} failed: {e['type']}: {str(e['message'])[-300:]}")
        return
    print(
        f"  N = {n} {case}: {who}: {row['steady_s']:.2f} s (kernel {row['kernel_s']:.2f} s, "
        f"linear algebra {row['linear_algebra_s']:.2f} s; first {row['first_s']:.1f} s), peak "
        f"RSS {row['peak_rss_bytes'] / 2**30:.2f} GiB",
        flush=True,
    )


def reference_skipped(args: Args) -> str | None:
    if args.no_reference:
        return "--no-reference"
    if not REF_PYTHON.exists():
        return f"{REF_PYTHON} is absent (run `make reference`)"
    return None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == WORKER:
        worker(*argv[1:4])
        return None
    args = tyro.cli(Args, args=argv, prog="python -m benchmarks.predict")
    check_fields(args)
    sizes = (64, 128) if args.quick else args.sizes
    load_before = timing.load_average()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            for case in CASES:
                rows.append(bench_case(n, case, args, Path(tmp)))
    import jax

    out = {
        "rows": rows,
        "script": SCRIPT,
        "provenance": {
            "git": git_commit(),
            "started": started,
            "jax": jax.__version__,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": timing.load_average(),
        },
    }
    stem = "predict-quick" if args.quick else "predict"
    path = save_json_atomic(RESULTS_DIR / "bench" / f"{stem}.json", out)
    print(f"wrote {path}")
    if any(r.get("agreement_passed") is False for r in rows):
        sys.exit(1)
    return out


if __name__ == "__main__":
    main()
