r"""Speed of exact and polynomial-method tensor attention (Alman & Song) against n.

Usage::

    python -m benchmarks.attention [--quick] [--repeats R]

Inputs: Q, K1, K2, V1, V2 ~ U[−B, B]^(n × d), B = 1, d = 8, float32, seed 0; scale 1/d, so
every score lies in [−1, 1].

- **exact**: `theory.attention.tensor_attention` (blocked, streaming; n³ scores) at
  n = 256 … 2048 in full. At the headline size n = 16384 (4.4·10¹² scores, about an hour
  here) it is timed on the first ``--exact-queries`` queries only: the blocked algorithm
  treats every query block alike against all n² key pairs, so the full time is that time
  × n / queries (stated as such in the output).
- **poly**: `poly_tensor_attention(eps=1e-3)` (degree from the certified bound, rank
  r = C(d + g, g)) at n = 256 … 16384, and its error against exact on the timed queries
  (must be within the guarantee 2ε/(1 − ε)‖V1‖∞‖V2‖∞).
- **matmul rate**: a 2048 × 2048 float32 matmul in the same run; the exact kernel's achieved
  GFLOP/s (`tensor_attention_flops`: 4d + … flops per score, exponentials not counted) is
  reported against it.

Slopes: least squares of log t on log n over the largest three full sizes. Timing:
`benchmarks.timing.time_call` (first call, then ``repeats`` calls; median). Writes
``results/bench/attention.json`` (``--quick``: ``attention-quick.json``).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from benchmarks import timing
from experiments._common import RESULTS_DIR, Interval, check_fields, git_commit, save_json_atomic
from theory.attention import poly_tensor_attention, tensor_attention, tensor_attention_flops


@dataclass(frozen=True)
class Args:
    """Exact blocked against polynomial-method tensor attention (see the module docstring)."""

    quick: bool = False
    """small sizes only (a smoke run)"""
    repeats: Annotated[int, Interval(ge=1)] = 3
    """timed calls after the first one"""
    n_big: Annotated[int, Interval(ge=64)] = 16384
    """the headline size n"""
    exact_queries: Annotated[int, Interval(ge=16)] = 64
    """queries of the exact run at n_big (its time is scaled by n_big / exact_queries)"""
    eps: Annotated[float, Interval(gt=0, lt=1)] = 1e-3
    """accuracy asked of the polynomial method"""


def _inputs(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.uniform(-1, 1, size=(n, d)), jnp.float32) for _ in range(5)]


def _slope(ns, ts) -> float:
    return float(np.polyfit(np.log(ns), np.log(ts), 1)[0])


def matmul_rate(repeats: int) -> float:
    a = jnp.asarray(np.random.default_rng(1).normal(size=(2048, 2048)), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    row, _ = timing.time_call(lambda: f(a), max(repeats, 5), jax.block_until_ready, True)
    return 2 * 2048**3 / row["steady_s"] / 1e9


def run(args: Args) -> dict:
    d = 8
    block = jax.block_until_ready
    full = [256, 512, 1024] if args.quick else [256, 512, 1024, 2048]
    n_big = 2048 if args.quick else args.n_big
    polys = sorted({256, 1024, 4096, n_big} if args.quick else {256, 1024, 4096, 16384, n_big})
    rate = matmul_rate(args.repeats)
    exact_rows, poly_rows = {}, {}
    for n in full:
        xs = _inputs(n, d)
        row, _ = timing.time_call(
            lambda xs=xs: tensor_attention(*xs, block=None), args.repeats, block, True
        )
        row["gflops"] = tensor_attention_flops(n, n, n, d, d) / row["steady_s"] / 1e9
        exact_rows[n] = row
    for n in polys:
        xs = _inputs(n, d)
        row, _ = timing.time_call(
            lambda xs=xs: poly_tensor_attention(*xs, eps=args.eps), args.repeats, block, True
        )
        _, info = poly_tensor_attention(*xs, eps=args.eps, return_info=True)
        row.update(degree=info.degree, rank=info.rank, radius=info.radius)
        poly_rows[n] = row
    # the headline size: exact on a subset of the queries, scaled by n / queries
    q, k1, k2, v1, v2 = _inputs(n_big, d)
    nq = min(args.exact_queries, n_big)
    sub_row, exact_out = timing.time_call(
        lambda: tensor_attention(q[:nq], k1, k2, v1, v2, block=None), 1, block, True
    )
    poly_out, info = poly_tensor_attention(q, k1, k2, v1, v2, eps=args.eps, return_info=True)
    err = float(jnp.max(jnp.abs(poly_out[:nq] - exact_out)))
    if not err <= info.output_bound:
        raise AssertionError(f"poly error {err:.2e} exceeds the guarantee {info.output_bound:.2e}")
    exact_big = sub_row["steady_s"] * n_big / nq
    poly_big = poly_rows[n_big]["steady_s"]
    return {
        "d": d,
        "eps": args.eps,
        "matmul_gflops": rate,
        "exact": {str(n): r for n, r in exact_rows.items()},
        "poly": {str(n): r for n, r in poly_rows.items()},
        "exact_slope": _slope(full[-3:], [exact_rows[n]["steady_s"] for n in full[-3:]]),
        "poly_slope": _slope(polys[-3:], [poly_rows[n]["steady_s"] for n in polys[-3:]]),
        "exact_gflops_largest": exact_rows[full[-1]]["gflops"],
        "exact_fraction_of_matmul": exact_rows[full[-1]]["gflops"] / rate,
        "big": {
            "n": n_big,
            "exact_queries_timed": nq,
            "exact_subset_s": sub_row["steady_s"],
            "exact_estimated_s": exact_big,
            "exact_subset_gflops": tensor_attention_flops(nq, n_big, n_big, d, d)
            / sub_row["steady_s"]
            / 1e9,
            "poly_s": poly_big,
            "ratio_exact_over_poly": exact_big / poly_big,
            "poly_degree": info.degree,
            "poly_rank": info.rank,
            "poly_max_error_on_timed_queries": err,
            "poly_error_guarantee": info.output_bound,
        },
    }


def main(argv=None):
    args = tyro.cli(Args, args=argv, prog="python -m benchmarks.attention")
    check_fields(args)
    load_before = timing.load_average()
    out = run(args)
    out["provenance"] = {
        "git": git_commit(),
        "jax": jax.__version__,
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "load_before": load_before,
        "load_after": timing.load_average(),
    }
    print(f"matmul (2048², float32): {out['matmul_gflops']:.1f} GFLOP/s")
    print("exact blocked tensor attention (d = 8):")
    for n, r in out["exact"].items():
        print(f"  n = {n:>6s}  {r['steady_s']:9.3f} s  {r['gflops']:6.1f} GFLOP/s")
    print(
        f"  slope {out['exact_slope']:.2f}; {100 * out['exact_fraction_of_matmul']:.0f} % of matmul"
    )
    print(f"polynomial method (eps = {out['eps']:g}):")
    for n, r in out["poly"].items():
        print(f"  n = {n:>6s}  {r['steady_s']:9.3f} s  degree {r['degree']}, rank {r['rank']}")
    print(f"  slope {out['poly_slope']:.2f}")
    b = out["big"]
    print(
        f"n = {b['n']}: exact {b['exact_estimated_s']:.0f} s (timed on {b['exact_queries_timed']}"
        f" queries: {b['exact_subset_s']:.2f} s, x n/queries), poly {b['poly_s']:.2f} s -> "
        f"{b['ratio_exact_over_poly']:.0f}x; poly error {b['poly_max_error_on_timed_queries']:.1e}"
        f" (guarantee {b['poly_error_guarantee']:.1e})"
    )
    name = "attention-quick.json" if args.quick else "attention.json"
    path = save_json_atomic(RESULTS_DIR / "bench" / name, out)
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
