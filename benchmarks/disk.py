r"""A kernel larger than memory, written to disk: `theory.kernels.kernel_to_disk`.

Usage::

    python -m benchmarks.disk [--quick] [--n 50000] [--path DIR] [--keep]

The depth-10 ReLU network (``W_std = 1.4``, ``b_std = 0.1``, float32), NNGP and NTK of N points
in d = 100 dimensions with ``x2 = None``: at N = 50 000 the two outputs hold 2 × 50 000² × 4 B =
20 GB, on a machine of 24 GB. Reported: the wall time of the whole write (compilation
included), the kernel entries per second, the peak resident memory of this process
(``ru_maxrss``; bounded by one tile, a 1000 × 1000 float32 block is 4 MB, and the libraries),
and the fraction of the in-memory rate that the disk run achieves, where the in-memory rate is
``kernel_fn`` on N = 4 000 points (measured in the same run: median of 3 calls after the first).
A symmetric kernel computes the tiles i ≤ j only and writes each with its mirror, so the disk
rate counts all N² entries, as the in-memory one does.

The store goes to ``--path`` (default: a directory in the system's temporary directory) and is
deleted at the end unless ``--keep``; an interrupted run (``kill -9``) resumes where it
stopped when started again with the same ``--path`` and ``--keep``. Writes
``results/bench/disk.json`` (``--quick``: N = 3 000, ``disk-quick.json``).
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import jax
import numpy as np
import tyro

from benchmarks import timing
from experiments._common import RESULTS_DIR, Interval, check_fields, git_commit, save_json_atomic


@dataclass(frozen=True)
class Args:
    """Depth-10 ReLU NNGP + NTK written to disk with kernel_to_disk."""

    quick: bool = False
    """a smoke run: N = 3 000 (two 36 MB kernels)"""
    n: Annotated[int, Interval(ge=2)] = 50_000
    """points (the kernels are n × n, float32)"""
    d: Annotated[int, Interval(ge=1)] = 100
    """input dimension"""
    tile: Annotated[int, Interval(ge=1)] = 1000
    """tile (zarr chunk) edge"""
    memory_n: Annotated[int, Interval(ge=2)] = 4000
    """points of the in-memory reference rate"""
    path: str | None = None
    """where the zarr store goes (default: a fresh directory in the temporary directory)"""
    keep: bool = False
    """keep the store (and resume from it if it exists) instead of deleting it at the end"""

    def check(self) -> None:
        check_fields(self)


def network():
    from theory.kernels import stax

    layers = []
    for _ in range(10):
        layers += [stax.Dense(512, 1.4, 0.1), stax.Relu()]
    return stax.serial(*layers, stax.Dense(1, 1.4, 0.1))[2]


def main(argv=None) -> dict:
    args = tyro.cli(Args, args=argv)
    args.check()
    n = 3000 if args.quick else args.n
    from theory.kernels import kernel_to_disk

    kf = network()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, args.d)).astype(np.float32)

    xm = rng.standard_normal((args.memory_n, args.d)).astype(np.float32)
    mem, _ = timing.time_call(
        lambda: kf(xm, None, ("nngp", "ntk")), 3, block=lambda o: jax.block_until_ready(o),
        jitted=True,
    )  # fmt: skip
    mem_rate = args.memory_n**2 / mem["steady_s"]

    tmp = None
    if args.path is None:
        tmp = Path(tempfile.mkdtemp(prefix="theory-bench-disk-"))
        path = tmp / "kernel.zarr"
    else:
        path = Path(args.path)
    load_before = timing.load_average()
    start = time.perf_counter()
    group = kernel_to_disk(kf, x, None, path, ("nngp", "ntk"), tile=args.tile)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    done = int(np.asarray(group["done"][:]).sum())
    nb = -(-n // args.tile)
    # spot checks against the in-memory kernel: a block on the diagonal and one off it
    b = min(500, n // 2)
    want = kf(x[:b], None, ("nngp", "ntk"))
    cross = kf(x[-b:], x[:b], ("nngp", "ntk"))
    err = 0.0
    for name, w, c in zip(("nngp", "ntk"), want, cross):
        got = np.asarray(group[name][:b, :b])
        got_c = np.asarray(group[name][n - b :, :b])
        for g_, w_ in ((got, np.asarray(w)), (got_c, np.asarray(c))):
            err = max(err, float(np.max(np.abs(g_ - w_)) / np.max(np.abs(w_))))
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    if tmp is not None and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    elif args.path is not None and not args.keep:
        shutil.rmtree(path, ignore_errors=True)

    rate = n * n / seconds
    out = {
        "settings": {
            "n": n, "d": args.d, "tile": args.tile, "depth": 10, "dtype": "float32",
            "kernels": ["nngp", "ntk"], "memory_n": args.memory_n,
        },
        "disk": {
            "seconds": round(seconds, 2), "entries_per_s": rate, "peak_rss_bytes": rss,
            "store_bytes": size, "tiles_done": done, "tiles_total": nb * (nb + 1) // 2,
            "max_rel_err_spot_checks": err,
        },
        "memory": {
            "steady_s": mem["steady_s"], "first_s": mem["first_s"], "entries_per_s": mem_rate,
        },
        "fraction_of_in_memory_rate": rate / mem_rate,
        "provenance": {
            "commit": git_commit(), "machine": platform.platform(), "cpus": os.cpu_count(),
            "load_before": load_before, "load_after": timing.load_average(),
        },
    }  # fmt: skip
    lines = [
        f"kernel_to_disk: depth-10 ReLU NNGP+NTK, N = {n}, d = {args.d}, float32, tiles "
        f"{args.tile}: {seconds:.1f} s ({rate / 1e6:.1f} M entries/s), peak RSS "
        f"{rss / 2**30:.2f} GiB, store {size / 1e9:.2f} GB, {done}/{nb * (nb + 1) // 2} tiles",
        f"in memory (kernel_fn, N = {args.memory_n}): {mem['steady_s']:.3f} s "
        f"({mem_rate / 1e6:.1f} M entries/s); disk run at {rate / mem_rate:.0%} of that rate",
        f"spot checks against kernel_fn: max relative difference {err:.1e}",
    ]
    for line in lines:
        print(line)
    out["summary_lines"] = lines
    name = "disk-quick.json" if args.quick else "disk.json"
    save_json_atomic(RESULTS_DIR / "bench" / name, out)
    if err > 1e-5:
        raise SystemExit(f"disk kernel disagrees with kernel_fn: {err:.1e} > 1e-5")
    return out


if __name__ == "__main__":
    main()
