r"""The empirical NTK of models not written with stax: ours against neural-tangents.

Usage::

    python -m benchmarks.empirical_any [--quick] [--n 500] [--repeats 2] [--no-reference]

Two plain-JAX models (Python text, run by both libraries on the same weights and points,
float32, ``x2 = None``, Θ̂ averaged over the outputs):

- **MLP**: d = 100 inputs, three hidden ReLU layers of width 1024, one output
  (``x @ W / √fan_in + b``; 2.2 M parameters).
- **CNN**: 16×16×3 images, Conv 3×3 SAME 16 channels, ReLU, Conv 3×3 stride 2 SAME 32
  channels, ReLU, Flatten (2 048), Dense 128, ReLU, Dense 10 (``lax.conv_general_dilated``;
  268 k parameters, 10 outputs).

N = 500 points. Ours: `theory.kernels.empirical_ntk` with "auto" (what a user gets; the route
it picks and the cost model's estimates are reported); neural-tangents 0.6.5:
``jax.jit(empirical_ntk_fn(..., vmap_axes=0, implementation=i))`` for i = 1 (Jacobian
contraction), 2 (NTK-vector products), 3 (structured derivatives), each in ``.venv-ref`` through
``reference/nt_empirical_bench.py``. ``vmap_axes=0`` is neural-tangents' fastest setting for
these batch-independent models (its docstring's advice); an implementation that raises is
recorded with its error. Every run is a fresh process, so its peak resident memory
(``ru_maxrss``) is its own. Timing: `benchmarks.timing.time_call` (a first call, then
``repeats``; median). The speed-up is neural-tangents' fastest working implementation over
our "auto"; agreement is the largest entrywise difference relative to the largest entry (at
most 1e-4: float32 sums over up to 2.2 M parameters).

Writes ``results/bench/empirical_any.json`` (``--quick``: N = 16, narrower models,
``empirical_any-quick.json``).
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
REF_SCRIPT = ROOT / "reference" / "nt_empirical_bench.py"
AGREEMENT = 1e-4

MLP = """
D, WIDTH = {d}, {width}

def template():
    sizes = [D, WIDTH, WIDTH, WIDTH, 1]
    return [(np.zeros((a, b)), np.zeros(b)) for a, b in zip(sizes[:-1], sizes[1:])]

def apply_fn(params, x):
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w / np.sqrt(w.shape[0]) + b
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    return h
"""

CNN = """
SIDE = {side}

def template():
    flat = (SIDE // 2) ** 2 * 32
    return {{"k1": np.zeros((3, 3, 3, 16)), "b1": np.zeros(16),
             "k2": np.zeros((3, 3, 16, 32)), "b2": np.zeros(32),
             "w1": np.zeros((flat, 128)), "c1": np.zeros(128),
             "w2": np.zeros((128, 10)), "c2": np.zeros(10)}}

def apply_fn(params, x):  # x: (n, SIDE, SIDE, 3)
    dn = ("NHWC", "HWIO", "NHWC")
    h = lax.conv_general_dilated(x, params["k1"], (1, 1), "SAME", dimension_numbers=dn)
    h = jax.nn.relu(h / np.sqrt(27.0) + params["b1"])
    h = lax.conv_general_dilated(h, params["k2"], (2, 2), "SAME", dimension_numbers=dn)
    h = jax.nn.relu(h / np.sqrt(144.0) + params["b2"]).reshape(h.shape[0], -1)
    h = jax.nn.relu(h @ params["w1"] / np.sqrt(h.shape[1]) + params["c1"])
    return h @ params["w2"] / np.sqrt(128.0) + params["c2"]
"""


@dataclass(frozen=True)
class Args:
    """Empirical NTK of plain-JAX models: ours against neural-tangents 0.6.5."""

    quick: bool = False
    """a smoke run: N = 16, MLP width 64, 8×8 images"""
    n: Annotated[int, Interval(ge=1)] = 500
    """points (x2 = None)"""
    repeats: Annotated[int, Interval(ge=1)] = 2
    """timed calls after the first one"""
    ours: tuple[str, ...] = ("auto",)
    """our implementations to time ("jacobian", "ntvp", "structured" may be added; on the MLP
    our Jacobian route, like neural-tangents' implementation 1, forms 500 × 2.2 M Jacobian
    entries and takes minutes)"""
    nt_implementations: tuple[int, ...] = (1, 2, 3)
    """neural-tangents' implementations to time"""
    timeout_s: Annotated[float, Interval(gt=0)] = 900.0
    """per-run limit (a run over it is recorded as failed)"""
    no_reference: bool = False
    """skip neural-tangents (also skipped, with a note, when .venv-ref is absent)"""
    seed: int = 0


def models(quick: bool) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (source, shape of one point)."""
    d, width, side = (20, 64, 8) if quick else (100, 1024, 16)
    return {
        "mlp": (MLP.format(d=d, width=width), (d,)),
        "cnn": (CNN.format(side=side), (side, side, 3)),
    }


def build(source: str):
    import jax
    import jax.numpy as jnp
    from jax import lax

    scope = {"jax": jax, "jnp": jnp, "lax": lax, "np": np}
    exec(source, scope)  # noqa: S102 - the model texts above
    return scope["apply_fn"], scope["template"]


def request(source: str, point: tuple[int, ...], n: int, seed: int, repeats: int) -> dict:
    import jax

    _, template = build(source)
    leaves = jax.tree_util.tree_leaves(template())
    rng = np.random.default_rng(seed)
    req = {f"params_{i}": rng.standard_normal(np.shape(a)).astype(np.float32)
           for i, a in enumerate(leaves)}  # fmt: skip
    req.update(source=source, x=rng.standard_normal((n, *point)).astype(np.float32))
    req.update(repeats=repeats, vmap_axes="0")
    return req


WORKER = "_empirical_any_worker"


def worker(req_path: str, res_path: str, implementation: str) -> None:
    """One timed run of ours, in this fresh process."""
    import jax
    import jax.numpy as jnp

    from theory.kernels import empirical

    with np.load(req_path) as z:
        req = {k: z[k] for k in z.files}
    apply_fn, template = build(str(req["source"]))
    leaves, treedef = jax.tree_util.tree_flatten(template())
    params = jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(req[f"params_{i}"]) for i in range(len(leaves))]
    )
    x = jnp.asarray(req["x"])
    chosen = empirical.choose(apply_fn, params, x, None, (-1,), ())
    row, k = timing.time_call(
        lambda: empirical.empirical_ntk(apply_fn, params, x, None, implementation),
        int(req["repeats"]),
        jax.block_until_ready,
        True,
    )
    row.update(
        implementation=implementation,
        auto_chooses=chosen,
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        costs={
            c.implementation: {"flops": c.flops, "bytes": c.bytes}
            for c in empirical.costs(apply_fn, params, x, None)
        },
    )
    np.savez(res_path, timing=json.dumps(row), ntk=np.asarray(k))


def run(cmd: list[str], res: Path, timeout: float, env: dict) -> tuple[dict, np.ndarray | None]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": {"type": "timeout", "message": f"over {timeout:.0f} s"}}, None
    if proc.returncode != 0 or not res.exists():
        return {"error": {"type": "crash", "message": proc.stderr[-1500:]}}, None
    with np.load(res) as z:
        row = json.loads(str(z["timing"]))
        return row, (z["ntk"] if "ntk" in z.files else None)


def bench_model(name, source, point, args: Args, tmp: Path) -> dict:
    n = 16 if args.quick else args.n
    req = request(source, point, n, args.seed, args.repeats)
    req_path = tmp / f"{name}.npz"
    np.savez(req_path, **req)
    n_params = sum(v.size for k, v in req.items() if k.startswith("params_"))
    out = {"n": n, "parameters": int(n_params), "ours": {}, "neural_tangents": {}}
    env = {**os.environ, "XLA_FLAGS": ""}
    kernels = {}
    for impl in args.ours:
        res = tmp / f"{name}-ours-{impl}.npz"
        cmd = [sys.executable, "-m", "benchmarks.empirical_any", WORKER, str(req_path),
               str(res), impl]  # fmt: skip
        row, k = run(cmd, res, args.timeout_s, env)
        out["ours"][impl] = row
        kernels[f"ours_{impl}"] = k
        _print(name, f"ours {impl}", row)
    why = reference_skipped(args)
    if why:
        out["reference_skipped"] = why
        return out
    for impl in args.nt_implementations:
        res = tmp / f"{name}-nt-{impl}.npz"
        np.savez(req_path, **{**req, "implementation": impl})
        cmd = [str(REF_PYTHON), str(REF_SCRIPT), str(req_path), str(res)]
        row, k = run(cmd, res, args.timeout_s, {**env, "JAX_PLATFORMS": "cpu"})
        out["neural_tangents"][str(impl)] = row
        kernels[f"nt_{impl}"] = k
        _print(name, f"neural-tangents {impl}", row)
    working = {i: r for i, r in out["neural_tangents"].items() if "steady_s" in r}
    ours = out["ours"].get("auto", {})
    if working and "steady_s" in ours:
        best = min(working, key=lambda i: working[i]["steady_s"])
        out["nt_best"] = int(best)
        out["speedup"] = working[best]["steady_s"] / ours["steady_s"]
        ref = kernels[f"nt_{best}"]
        out["relative_difference"] = {
            impl: float(np.max(np.abs(kernels[f"ours_{impl}"] - ref)) / np.max(np.abs(ref)))
            for impl in args.ours
            if kernels.get(f"ours_{impl}") is not None
        }
        out["agreement_passed"] = max(out["relative_difference"].values()) <= AGREEMENT
        print(
            f"  {name}: ours auto ({ours['auto_chooses']}) {ours['steady_s']:.3f} s vs "
            f"neural-tangents {best} {working[best]['steady_s']:.3f} s: "
            f"{out['speedup']:.1f}x; agreement "
            f"{max(out['relative_difference'].values()):.1e} (<= {AGREEMENT:g})",
            flush=True,
        )
    return out


def _print(name, who, row):
    if "error" in row:
        e = row["error"]
        print(f"  {name}: {who} failed: {e['type']}: {str(e['message'])[:200]}", flush=True)
        return
    print(
        f"  {name}: {who}: {row['steady_s']:.3f} s (first {row['first_s']:.1f} s), peak RSS "
        f"{row['peak_rss_bytes'] / 2**30:.2f} GiB",
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
    args = tyro.cli(Args, args=argv, prog="python -m benchmarks.empirical_any")
    check_fields(args)
    load_before = timing.load_average()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (source, point) in models(args.quick).items():
            print(f"{name} (N = {16 if args.quick else args.n}, float32):", flush=True)
            results[name] = bench_model(name, source, point, args, Path(tmp))
    import jax

    out = {
        "models": results,
        "sources": {k: v[0] for k, v in models(args.quick).items()},
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
    stem = "empirical_any-quick" if args.quick else "empirical_any"
    path = save_json_atomic(RESULTS_DIR / "bench" / f"{stem}.json", out)
    print(f"wrote {path}")
    if any(r.get("agreement_passed") is False for r in results.values()):
        sys.exit(1)
    return out


if __name__ == "__main__":
    main()
