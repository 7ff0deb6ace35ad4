r"""Networks per second of the finite-network Monte Carlo (`sample_networks`) against a loop.

Usage::

    python -m benchmarks.criticality [--quick] [--repeats R] [--chunk C]

Networks: ReLU at criticality (C_b = 0, C_W = 2, K⁽¹⁾ = 1), ``depth`` = 16 hidden layers of
``width`` neurons and a scalar Dense readout, one input, float32
(`theory.kernels.criticality`); (width, depth) = (64, 16) is the headline, (256, 16) a wider
case. Each network yields the per-layer means of z², z⁴, the NTK Θ(x, x) and f(x).

- **loop (dense)**: a Python loop calling, once per network, the module's own jitted
  single-network function (``_sampler(..., method="dense", batched=False)``, i.e.
  `_network_dense` under ``jax.jit``: draw the n × n weights, forward, ``jax.grad``), so the
  work per network is the same as the vmapped dense route's. The keys are split beforehand;
  the loop dispatches every call and blocks once on all outputs at the end (asynchronous
  dispatch may overlap calls, which favours the loop). Timed on ``loop_networks`` = 200
  networks (it is slow); reported per network.
- **vmapped dense**: ``sample_networks(method="dense")``: the same function vmapped over
  networks in chunks of ``chunk`` (each chunk split over all local devices), results copied
  back to float64 numpy, as a user gets them.
- **vmapped gaussian**: ``sample_networks(method="gaussian")`` (default method): each layer
  drawn only through the Gaussian vectors one input's forward and backward passes see,
  O(n·depth) per network.

Rates are networks / ``steady_s`` with `benchmarks.timing.time_call` (a first call, which
compiles, then ``repeats`` calls; median). Ratios: vmapped rate / loop rate. The activation
object is built once (`as_activation`) and reused, so repeated calls hit the compiled sampler.
``local_device_count`` (``jax.local_device_count()``) is recorded: ``sample_networks`` splits
each chunk over that many devices; on a CPU host it is 1 unless
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` is set (XLA still uses the cores within
one device's operations).

Agreement, checked in the same run on the timed samples (three independent random streams,
so means are compared with their errors, not values): for each method the mean NTK against
the exact E[Θ] = (depth + 1)·K⁽¹⁾ (ReLU at criticality, any width; `ntk_recursion`) and the
mean of the last layer's z² against E[z²] = K⁽¹⁾, and the three mean NTKs pairwise, each within
4 standard errors (combined in quadrature for a pair; two-sided normal tail 6·10⁻⁵ per
comparison). The run records every z-score and ``agreement_passed``; the command exits with
status 1 (after writing the JSON) when a check fails.

Writes ``results/bench/criticality.json`` (``--quick``: ``criticality-quick.json``).
"""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import dataclass
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from benchmarks import timing
from experiments._common import RESULTS_DIR, Interval, check_fields, git_commit, save_json_atomic
from theory.kernels import criticality as cr
from theory.kernels import stax

C_B, C_W, K1 = 0.0, 2.0, 1.0
TOLERANCE_SE = 4.0
METHODS = ("loop_dense", "vmapped_dense", "vmapped_gaussian")


@dataclass(frozen=True)
class Args:
    """Finite-network Monte Carlo: vmapped samplers against a per-network loop."""

    quick: bool = False
    """small sizes only (a smoke run: widths 16, 32 at depth 2, fewer networks)"""
    repeats: Annotated[int, Interval(ge=1)] = 3
    """timed calls after the first one"""
    networks: Annotated[int, Interval(ge=2)] = 8192
    """networks per vmapped gaussian call"""
    dense_networks: Annotated[int, Interval(ge=2)] = 1024
    """networks per vmapped dense call"""
    loop_networks: Annotated[int, Interval(ge=2)] = 200
    """networks per plain-loop call"""
    chunk: Annotated[int, Interval(ge=1)] = 1024
    """networks per vmapped chunk (sample_networks' default)"""
    seed: int = 0
    """the three methods use keys seed, seed + 1, seed + 2 (independent streams)"""


def _sizes(args: Args) -> list[tuple[int, int]]:
    return [(16, 2), (32, 2)] if args.quick else [(64, 16), (256, 16)]


def _counts(args: Args) -> dict[str, int]:
    if args.quick:
        return {"loop_dense": 20, "vmapped_dense": 128, "vmapped_gaussian": 512}
    return {
        "loop_dense": args.loop_networks,
        "vmapped_dense": args.dense_networks,
        "vmapped_gaussian": args.networks,
    }


def _as_samples(outs) -> cr.NetworkSamples:
    """Per-network outputs of the single-network function, stacked like `sample_networks`'."""
    return cr.NetworkSamples(
        *(np.stack([np.asarray(o[i], np.float64) for o in outs]) for i in range(4))
    )


def _summary(s: cr.NetworkSamples) -> dict:
    count = len(s.ntk)
    m2 = s.m2[:, -1]
    return {
        "ntk_mean": float(s.ntk.mean()),
        "ntk_mean_se": float(s.ntk.std(ddof=1) / math.sqrt(count)),
        "last_m2_mean": float(m2.mean()),
        "last_m2_mean_se": float(m2.std(ddof=1) / math.sqrt(count)),
    }


def _z(a: float, b: float, se: float) -> float:
    return abs(a - b) / se if se > 0 else (0.0 if a == b else math.inf)


def agreement(stats: dict[str, dict], depth: int) -> dict:
    """z-scores (|difference| / standard error) of the checks in the module docstring."""
    ntk_exact = float(cr.ntk_recursion(stax.Relu(), C_B, C_W, K1, depth)[-1])
    checks = {}
    for m in METHODS:
        s = stats[m]
        checks[f"{m}: ntk vs exact"] = _z(s["ntk_mean"], ntk_exact, s["ntk_mean_se"])
        checks[f"{m}: last z^2 vs exact"] = _z(s["last_m2_mean"], K1, s["last_m2_mean_se"])
    for i, a in enumerate(METHODS):
        for b in METHODS[i + 1 :]:
            sa, sb = stats[a], stats[b]
            se = math.hypot(sa["ntk_mean_se"], sb["ntk_mean_se"])
            checks[f"ntk: {a} vs {b}"] = _z(sa["ntk_mean"], sb["ntk_mean"], se)
    return {
        "ntk_exact": ntk_exact,
        "last_m2_exact": K1,
        "tolerance_se": TOLERANCE_SE,
        "z": checks,
        "passed": all(z <= TOLERANCE_SE for z in checks.values()),
    }


def bench_size(act, width: int, depth: int, counts: dict[str, int], args: Args) -> dict:
    block = jax.block_until_ready
    dtype = jnp.dtype(jnp.float32)
    keys = {m: jax.random.key(args.seed + i) for i, m in enumerate(METHODS)}
    rows, stats = {}, {}

    one = cr._sampler(act, depth, width, C_B, C_W, K1, dtype, "dense", False)
    loop_keys = list(jax.random.split(keys["loop_dense"], counts["loop_dense"]))
    row, outs = timing.time_call(lambda: [one(k) for k in loop_keys], args.repeats, block, True)
    rows["loop_dense"], stats["loop_dense"] = row, _summary(_as_samples(outs))

    for m, method in (("vmapped_dense", "dense"), ("vmapped_gaussian", "gaussian")):
        row, s = timing.time_call(
            lambda method=method, m=m: cr.sample_networks(
                act,
                C_B,
                C_W,
                K1,
                depth,
                width,
                counts[m],
                key=keys[m],
                method=method,
                chunk=args.chunk,
            ),
            args.repeats,
            lambda x: x,  # sample_networks returns numpy arrays: already finished
            True,
        )
        rows[m], stats[m] = row, _summary(s)

    for m, row in rows.items():
        row["networks"] = counts[m]
        row["networks_per_s"] = counts[m] / row["steady_s"]
        row.update(stats[m])
    rate = {m: rows[m]["networks_per_s"] for m in METHODS}
    return {
        "width": width,
        "depth": depth,
        **rows,
        "ratios": {
            "vmapped_dense_over_loop": rate["vmapped_dense"] / rate["loop_dense"],
            "vmapped_gaussian_over_loop": rate["vmapped_gaussian"] / rate["loop_dense"],
            "vmapped_gaussian_over_vmapped_dense": rate["vmapped_gaussian"] / rate["vmapped_dense"],
        },
        "agreement": agreement(stats, depth),
    }


def run(args: Args) -> dict:
    act = cr.as_activation(stax.Relu())  # one object: the compiled samplers are reused
    counts = _counts(args)
    sizes = {f"{w}x{d}": bench_size(act, w, d, counts, args) for w, d in _sizes(args)}
    return {
        "settings": {
            "activation": "relu",
            "C_b": C_B,
            "C_W": C_W,
            "K1": K1,
            "dtype": "float32",
            "chunk": args.chunk,
            "repeats": args.repeats,
            "networks": counts,
            "quick": args.quick,
        },
        "local_device_count": jax.local_device_count(),
        "headline": next(iter(sizes)),
        "sizes": sizes,
        "agreement_passed": all(s["agreement"]["passed"] for s in sizes.values()),
    }


def main(argv=None):
    args = tyro.cli(Args, args=argv, prog="python -m benchmarks.criticality")
    check_fields(args)
    load_before = timing.load_average()
    out = run(args)
    out["provenance"] = {
        "git": git_commit(),
        "jax": jax.__version__,
        "platform": jax.devices()[0].platform,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_before": load_before,
        "load_after": timing.load_average(),
    }
    print(
        f"ReLU at criticality (C_b = 0, C_W = 2, K1 = 1), float32, chunk {args.chunk}, "
        f"{out['local_device_count']} local device(s), {os.cpu_count()} CPUs"
    )
    for name, s in out["sizes"].items():
        print(f"width x depth = {name}:")
        for m in METHODS:
            r = s[m]
            print(
                f"  {m:17s} {r['networks_per_s']:10.1f} networks/s  ({r['networks']} networks "
                f"in {r['steady_s']:.3f} s; compile {r['compile_s']:.1f} s)  "
                f"E[ntk] = {r['ntk_mean']:.3f} +- {r['ntk_mean_se']:.3f}"
            )
        q = s["ratios"]
        a = s["agreement"]
        print(
            f"  vmapped/loop: dense {q['vmapped_dense_over_loop']:.2f}x, gaussian "
            f"{q['vmapped_gaussian_over_loop']:.1f}x; gaussian/dense (vmapped) "
            f"{q['vmapped_gaussian_over_vmapped_dense']:.1f}x"
        )
        print(
            f"  agreement (exact E[ntk] = {a['ntk_exact']:g}): largest z "
            f"{max(a['z'].values()):.2f} <= {a['tolerance_se']:g}: "
            f"{'passed' if a['passed'] else 'FAILED'}"
        )
    name = "criticality-quick.json" if args.quick else "criticality.json"
    path = save_json_atomic(RESULTS_DIR / "bench" / name, out)
    print(f"wrote {path}")
    if not out["agreement_passed"]:
        failed = [
            f"{n}: {k} (z = {z:.2f})"
            for n, s in out["sizes"].items()
            for k, z in s["agreement"]["z"].items()
            if z > TOLERANCE_SE
        ]
        print("agreement check failed: " + "; ".join(failed), file=sys.stderr)
        sys.exit(1)
    return out


if __name__ == "__main__":
    main()
