r"""Convolutional kernels with pooling (full spatial covariance): ours against neural-tangents.

Usage::

    python -m benchmarks.spatial [--quick] [--repeats R] [--scaling-ns 100 300] [--no-reference]

Two parts, both float32, NNGP + NTK, ``x2 = None``:

- **Myrtle-style CNN** (the issue's headline): 4 Conv 3×3 SAME of 64 channels with ReLU,
  2×2 average pools after the second and third, global average pooling, Dense; 16 images of
  16×16×3. Ours (``kernel_fn``, jitted on first call) and neural-tangents 0.6.5 (its
  ``kernel_fn`` under ``jax.jit`` with ``get`` static, in ``.venv-ref`` through
  ``reference/nt_spatial_bench.py``) on the same inputs, timed with
  `benchmarks.timing.time_call` (one first call, then ``repeats``; median). Agreement: the
  largest entrywise difference of each kernel relative to its largest entry, at most 1e-4
  (float32 rounding through 4 layers of 65 536 site pairs; measured ~3e-6).
- **Scaling with N** (Myrtle-5 of Shankar et al. 2020 — Conv-ReLU ×2, AvgPool, Conv-ReLU,
  AvgPool, Conv-ReLU, AvgPool ×3, Flatten, Dense, ``W_std = √2``, ``b_std = 0`` — on CIFAR-shaped
  32×32×3 inputs): each N in a fresh process, so that its peak resident memory
  (``ru_maxrss``) is its own: wall time of one call (compilation included, reported apart) and
  peak memory. Ours tiles the kernel (`theory.kernels.batching.default_tile`: tiles whose
  NNGP holds at most ``SPATIAL_TILE_BYTES``), so its memory is bounded by the tile, not by N;
  neural-tangents computes the whole batch at once, so its memory grows like N²·|S|²; it is
  run at ``nt_scaling_ns`` while each call finishes within ``nt_timeout_s``. Our rows are
  saved one by one (with their commit, time and load) and reused by later runs unless
  ``--remeasure``: N = 300 costs 22.5 min on 2 CPU cores and is measured once.

Writes ``results/bench/spatial.json`` and ``spatial_scaling.png`` (``--quick``: ``-quick``).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
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
REF_SCRIPT = ROOT / "reference" / "nt_spatial_bench.py"
AGREEMENT = 1e-4


@dataclass(frozen=True)
class Args:
    """Spatial (CNN-GP / CNTK with pooling) kernels: ours against neural-tangents 0.6.5."""

    quick: bool = False
    """a smoke run: 4 images of 8×8 for the headline, N = 2, 3 for the scaling"""
    repeats: Annotated[int, Interval(ge=1)] = 3
    """timed calls after the first one (headline)"""
    scaling_ns: tuple[int, ...] = (8, 32, 100, 300)
    """N for our scaling runs (32×32×3; about 30 ms per pair of images on 2 CPU cores:
    N = 300 took 22.5 min, N = 1000 would take ~4.2 h). Each N's row is saved as it finishes
    (``results/bench/spatial_scaling/``) and reused by later runs, so a long N is measured
    once and an interrupted run resumes"""
    remeasure: bool = False
    """measure every scaling N again instead of reusing saved rows"""
    disk_ns: tuple[int, ...] = (1000,)
    """N computed into a resumable on-disk store (`kernel_to_disk`, store tiles of
    ``disk_tile`` images, each computed 2 × 2 images at a time as in memory) instead of one
    call: N = 1000 is ~4 h of compute on 2 CPU cores, more than one sitting, so every run adds
    tiles to the store (``results/bench/spatial_scaling/``) and the row is complete when all are
    done. Its time is the sum of the per-tile compute seconds the store records (also the
    median tile × tiles, robust to tiles slowed by other work on the machine)"""
    disk_tile: Annotated[int, Interval(ge=1)] = 50
    """store tile edge (images) for ``disk_ns``: 2 500 pairs, ~75 s per tile on 2 cores"""
    nt_scaling_ns: tuple[int, ...] = (2, 4, 8, 16)
    """N for neural-tangents' scaling runs, in order, until one fails or times out"""
    nt_timeout_s: Annotated[float, Interval(gt=0)] = 600.0
    """per-N limit for neural-tangents' scaling runs"""
    skip_scaling: bool = False
    """run the headline comparison only"""
    no_reference: bool = False
    """skip neural-tangents (also skipped, with a note, when .venv-ref is absent)"""
    seed: int = 0
    """inputs are standard normal from this seed"""


def myrtle_spec(width: int = 64) -> list:
    """The headline network in `reference/nt_oracle.py`'s spec format."""
    conv = ["Conv", {"out_chan": width, "filter_shape": [3, 3], "padding": "SAME"}]
    relu = ["Relu", {}]
    pool = ["AvgPool", {"window_shape": [2, 2], "strides": [2, 2]}]
    return [conv, relu, conv, relu, pool, conv, relu, pool, conv, relu] + [
        ["GlobalAvgPool", {}],
        ["Dense", {"out_dim": 1}],
    ]


def myrtle5_spec(width: int = 1) -> list:
    """Myrtle-5 (Shankar et al. 2020), as neural-tangents' Myrtle example builds it."""
    w, b = float(np.sqrt(2.0)), 0.0
    conv = ["Conv", {"out_chan": width, "filter_shape": [3, 3], "padding": "SAME", "W_std": w,
                     "b_std": b}]  # fmt: skip
    relu = ["Relu", {}]
    pool = ["AvgPool", {"window_shape": [2, 2], "strides": [2, 2]}]
    return [conv, relu, conv, relu, pool, conv, relu, pool, conv, relu, pool, pool, pool] + [
        ["Flatten", {}],
        ["Dense", {"out_dim": 10, "W_std": w, "b_std": b}],
    ]


def ours(spec: list):
    from theory.kernels import stax

    def one(node):
        name, kw = node
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in kw.items()}
        return getattr(stax, name)(**kw)

    return stax.serial(*[one(n) for n in spec])[2]


def inputs(n: int, side: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, side, side, 3)).astype(np.float32)


def reference_available(args: Args) -> str | None:
    """None if neural-tangents can run, else why not."""
    if args.no_reference:
        return "--no-reference"
    if not REF_PYTHON.exists():
        return f"{REF_PYTHON} is absent (run `make reference`)"
    return None


def run_reference(spec, x, repeats, values, timeout):
    """neural-tangents' timing row (and kernels) from a subprocess, or raise."""
    with tempfile.TemporaryDirectory() as tmp:
        req, res = Path(tmp) / "req.npz", Path(tmp) / "res.npz"
        cfg = {"repeats": repeats, "get": ["nngp", "ntk"], "values": values}
        np.savez(req, spec=json.dumps(spec), config=json.dumps(cfg), x=x)
        proc = subprocess.run(
            [str(REF_PYTHON), str(REF_SCRIPT), str(req), str(res)],
            capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""},
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"neural-tangents failed: {proc.stderr[-1500:]}")
        r = np.load(res)
        row = json.loads(str(r["timing"]))
        kernels = {k: r[k] for k in ("nngp", "ntk") if k in r.files}
    return row, kernels


def headline(args: Args) -> dict:
    import jax

    n, side = (4, 8) if args.quick else (16, 16)
    spec = myrtle_spec(8 if args.quick else 64)
    x = inputs(n, side, args.seed)
    kf = ours(spec)
    xj = jax.numpy.asarray(x)
    row, k = timing.time_call(
        lambda: kf(xj, get=("nngp", "ntk")), args.repeats, jax.block_until_ready, True
    )
    out = {"n": n, "side": side, "ours": row}
    why = reference_available(args)
    if why:
        out["reference_skipped"] = why
        return out
    ref_row, ref = run_reference(spec, x, args.repeats, True, args.nt_timeout_s)
    out["neural_tangents"] = ref_row
    out["speedup"] = ref_row["steady_s"] / row["steady_s"]
    errs = {}
    for name in ("nngp", "ntk"):
        diff = np.max(np.abs(np.asarray(getattr(k, name)) - ref[name]))
        errs[name] = float(diff / np.max(np.abs(ref[name])))
    out["relative_difference"] = errs
    out["agreement_passed"] = max(errs.values()) <= AGREEMENT
    return out


WORKER = "_spatial_worker"


def worker(n: int, side: int, seed: int) -> dict:
    """One scaling point of ours, in this (fresh) process."""
    import jax

    from theory.kernels import batching

    kf = ours(myrtle5_spec())
    x = jax.numpy.asarray(inputs(n, side, seed))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    k = jax.block_until_ready(kf(x, get=("nngp", "ntk")))
    first = time.perf_counter() - t0
    small = jax.numpy.asarray(inputs(2, side, seed + 1))
    t0 = time.perf_counter()  # compilation cost alone: a 2-point kernel, compiled anew
    jax.block_until_ready(ours(myrtle5_spec())(small, get=("nngp", "ntk")))
    small_s = time.perf_counter() - t0
    return {
        "n": n,
        "side": side,
        "wall_s": first,
        "compile_estimate_s": small_s,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_before_bytes": rss0,
        "tile": batching.default_tile(n, n, kf.pair_bytes(x)),
        "tile_bytes": batching.SPATIAL_TILE_BYTES,
        "finite": bool(np.isfinite(np.asarray(k.ntk)).all()),
        "pairs_computed": n * (n + 1) // 2,
    }


DISK_WORKER = "_spatial_disk_worker"
# Partial N = 1 000 stores committed so that the hours-long on-disk row accumulates across
# sessions: each tile is written atomically with its own seconds, so a copy of a partial store
# is a valid starting point (kernel_to_disk checks the inputs and settings it was made for).
STORES = Path(__file__).resolve().parent / "stores"


def disk_store_path(n: int, side: int, seed: int, quick: bool) -> Path:
    stem = f"ours_disk_n{n}_side{side}_seed{seed}" + ("_quick" if quick else "")
    return RESULTS_DIR / "bench" / "spatial_scaling" / f"{stem}.zarr"


def disk_worker(n: int, side: int, seed: int, tile: int, quick: bool, path: Path) -> dict:
    """Add tiles to the N-point store until it is complete (resumes any earlier run; safe to
    kill at any moment: at most the tile in progress is lost), then summarize it."""
    import jax

    from theory.kernels import kernel_to_disk

    kf = ours(myrtle5_spec())
    x = inputs(n, side, seed)
    if quick:  # a smoke run starts from an empty store and completes it
        shutil.rmtree(path, ignore_errors=True)
    elif not path.exists() and (STORES / path.name).exists():
        # the tiles earlier sessions computed travel with the repository (a fresh checkout has
        # no results/): continue from them
        shutil.copytree(STORES / path.name, path)
    import zarr

    before = int(np.asarray(zarr.open_group(str(path))["done"][:]).sum()) if path.exists() else 0
    t0 = time.perf_counter()
    g = kernel_to_disk(kf, x, None, path, ("nngp", "ntk"), tile=tile)
    wall = time.perf_counter() - t0
    done = np.asarray(g["done"][:]).astype(bool)
    # the memory of computing tiles, not of reading a complete store back: the largest peak
    # of the runs that added tiles, kept with the store
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    attrs = zarr.open_group(str(path), mode="a").attrs
    if int(done.sum()) > before:
        attrs["peak_rss_bytes_computing"] = max(rss, attrs.get("peak_rss_bytes_computing", 0))
    sec = np.asarray(g["seconds"][:])
    nb = done.shape[0]
    n_tiles = nb * (nb + 1) // 2
    row = {
        "n": n,
        "side": side,
        "on_disk": True,
        "store": str(path),
        "tile": g.attrs["tile"],
        "batch_size": g.attrs["batch_size"],
        "tiles_done": int(done.sum()),
        "tiles": n_tiles,
        "complete": int(done.sum()) == n_tiles,
        "tile_seconds_sum": float(np.nansum(sec)),
        "this_run_wall_s": wall,
        "peak_rss_bytes": attrs.get("peak_rss_bytes_computing", rss),
        "pairs_computed": n * (n + 1) // 2,
    }
    # The same compute cost from the median tile of each kind (diagonal store tiles hold
    # about half the pairs), robust to tiles slowed by other work sharing the cores.
    diag = np.eye(nb, dtype=bool)
    med = {k: float(np.median(sec[done & m])) for k, m in (("diagonal", diag), ("off", ~diag))
           if (done & m).any()}  # fmt: skip
    row["median_tile_s"] = med
    if row["complete"]:
        row["wall_s"] = row["tile_seconds_sum"]
        row["wall_s_from_medians"] = nb * med["diagonal"] + (n_tiles - nb) * med["off"]
        # spot checks against the in-memory kernel: a diagonal block and the far corner
        xj = jax.numpy.asarray(x)
        errs = []
        m = min(3, n)
        for a, b in ((slice(0, m), slice(0, m)), (slice(0, m), slice(n - m, n))):
            want = kf(xj[a], None if a == b else xj[b], ("nngp", "ntk"))
            for name, w in zip(("nngp", "ntk"), want):
                w = np.asarray(w)
                errs.append(float(np.max(np.abs(g[name][a, b] - w)) / np.max(np.abs(w))))
        row["spot_check_relative_difference"] = max(errs)
        row["finite"] = bool(all(np.isfinite(g[k][:]).all() for k in ("nngp", "ntk")))
    return row


def disk_rows(args: Args, side: int) -> list[dict]:
    rows = []
    ns, tile = ((3,), 2) if args.quick else (args.disk_ns, args.disk_tile)
    for n in ns:
        path = disk_store_path(n, side, args.seed, args.quick)
        print(f"  ours  N={n:5d}: adding tiles to {path}", flush=True)
        cmd = [sys.executable, "-m", "benchmarks.spatial", DISK_WORKER, str(n), str(side),
               str(args.seed), str(tile), str(int(args.quick)), str(path)]  # fmt: skip
        # stderr (the progress bar) goes to the terminal
        env = {**os.environ, "XLA_FLAGS": ""}
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"our on-disk scaling run at N={n} failed (see above)")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row.update(git=git_commit(), load_after=timing.load_average())
        rows.append(row)
        if row["complete"]:
            print(
                f"  ours  N={n:5d}: {row['wall_s']:8.1f} s summed over {row['tiles']} store "
                f"tiles ({row['wall_s_from_medians']:.1f} s from median tiles), peak RSS "
                f"{row['peak_rss_bytes'] / 2**30:.2f} GiB, spot checks "
                f"{row['spot_check_relative_difference']:.1e}",
                flush=True,
            )
        else:
            print(f"  ours  N={n:5d}: {row['tiles_done']}/{row['tiles']} tiles", flush=True)
    return rows


def saved_row_path(n: int, side: int, seed: int) -> Path:
    """Where our scaling row for N is kept between runs (full runs only). A fresh checkout
    has no results/: rows committed under ``benchmarks/stores/`` are copied in first."""
    path = RESULTS_DIR / "bench" / "spatial_scaling" / f"ours_n{n}_side{side}_seed{seed}.json"
    if not path.exists() and (STORES / path.name).exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(STORES / path.name, path)
    return path


def scaling(args: Args) -> dict:
    side = 32  # Myrtle-5 pools five times: 32 → 1
    ns = (2, 3) if args.quick else args.scaling_ns
    rows = []
    for n in ns:
        saved = saved_row_path(n, side, args.seed)
        if not args.quick and not args.remeasure and saved.exists():
            row = json.loads(saved.read_text())
            rows.append(row)
            print(
                f"  ours  N={n:5d}: {row['wall_s']:8.1f} s, peak RSS "
                f"{row['peak_rss_bytes'] / 2**30:.2f} GiB (saved row, measured "
                f"{row.get('measured_at', '?')} at commit "
                f"{str(row.get('git', {}).get('commit', '?'))[:7]}; --remeasure to redo)",
                flush=True,
            )
            continue
        load_before = timing.load_average()
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.spatial", WORKER, str(n), str(side), str(args.seed)],
            capture_output=True, text=True, env={**os.environ, "XLA_FLAGS": ""},
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"our scaling run at N={n} failed: {proc.stderr[-1500:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row.update(measured_at=started, git=git_commit(), load_before=load_before,
                   load_after=timing.load_average())  # fmt: skip
        if not args.quick:
            save_json_atomic(saved, row)
        rows.append(row)
        print(
            f"  ours  N={n:5d}: {row['wall_s']:8.1f} s (compile ~{row['compile_estimate_s']:.1f}"
            f" s), peak RSS {row['peak_rss_bytes'] / 2**30:.2f} GiB, tile {row['tile']}",
            flush=True,
        )
    on_disk = disk_rows(args, side)
    rows += [r for r in on_disk if r["complete"]]
    out = {"side": side, "ours": rows, "on_disk": on_disk, "neural_tangents": [],
           "neural_tangents_stopped": None}  # fmt: skip
    why = reference_available(args)
    if why:
        out["neural_tangents_stopped"] = why
        return out
    for n in (2,) if args.quick else args.nt_scaling_ns:
        try:
            row, _ = run_reference(myrtle5_spec(), inputs(n, side, args.seed), 1, False,
                                   args.nt_timeout_s)  # fmt: skip
        except subprocess.TimeoutExpired:
            out["neural_tangents_stopped"] = f"N={n}: over {args.nt_timeout_s:.0f} s"
            break
        except RuntimeError as e:
            out["neural_tangents_stopped"] = f"N={n}: {str(e)[-300:]}"
            break
        row["n"] = n
        row["wall_s"] = row["first_s"]
        out["neural_tangents"].append(row)
        print(
            f"  neural-tangents N={n:5d}: {row['first_s']:8.1f} s first call, "
            f"{row['steady_s']:.1f} s steady, peak RSS {row['peak_rss_bytes'] / 2**30:.2f} GiB",
            flush=True,
        )
    if out["neural_tangents_stopped"]:
        print(f"  neural-tangents stopped: {out['neural_tangents_stopped']}")
    return out


def plot(scale: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label, style in (
        ("ours", "ours", "o-"),
        ("neural_tangents", "neural-tangents", "s--"),
    ):
        rows = scale[key]
        if not rows:
            continue
        mem = [r for r in rows if not r.get("on_disk")]
        disk = [r for r in rows if r.get("on_disk")]
        for part, lab, sty in (
            (mem, label, style),
            (disk, f"{label}, on disk (from median tiles)", "D"),
        ):
            if not part:
                continue
            ns = [r["n"] for r in part]
            # a store filled over several sessions: its tiles' median cost (tiles slowed by
            # other work on the cores, or paused, do not count), not the sum of its seconds
            secs = [r.get("wall_s_from_medians", r["wall_s"]) for r in part]
            a.loglog(ns, secs, sty, label=lab)
            b.loglog(ns, [r["peak_rss_bytes"] / 2**30 for r in part], sty, label=lab)
    a.set(xlabel="N (images)", ylabel="seconds (one call, compile included)",
          title=f"Myrtle-5 NNGP+NTK, {scale['side']}×{scale['side']}×3, float32")  # fmt: skip
    b.set(xlabel="N (images)", ylabel="peak resident memory (GiB)", title="memory")
    for ax in (a, b):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == WORKER:
        print(json.dumps(worker(*(int(v) for v in argv[1:4]))))
        return None
    if argv and argv[0] == DISK_WORKER:
        *ints, path = argv[1:7]
        n, side, seed, tile, quick = (int(v) for v in ints)
        print(json.dumps(disk_worker(n, side, seed, tile, bool(quick), Path(path))))
        return None
    args = tyro.cli(Args, args=argv, prog="python -m benchmarks.spatial")
    check_fields(args)
    import jax

    load_before = timing.load_average()
    print("Myrtle-style CNN, NNGP + NTK with the full spatial covariance, float32:")
    head = headline(args)
    line = f"  ours {head['ours']['steady_s']:.3f} s (compile {head['ours']['compile_s']:.1f} s)"
    if "neural_tangents" in head:
        nt = head["neural_tangents"]
        line += (
            f"; neural-tangents {nt['steady_s']:.3f} s: {head['speedup']:.1f}x faster; largest "
            f"relative difference nngp {head['relative_difference']['nngp']:.1e}, ntk "
            f"{head['relative_difference']['ntk']:.1e} (<= {AGREEMENT:g}: "
            f"{'passed' if head['agreement_passed'] else 'FAILED'})"
        )
    else:
        line += f"; neural-tangents skipped: {head['reference_skipped']}"
    print(f"  {head['n']} images of {head['side']}x{head['side']}x3")
    print(line, flush=True)
    scale = None
    if not args.skip_scaling:
        print("Scaling with N (Myrtle-5):")
        scale = scaling(args)
    out = {
        "headline": head,
        "scaling": scale,
        "provenance": {
            "git": git_commit(),
            "jax": jax.__version__,
            "platform": jax.devices()[0].platform,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": timing.load_average(),
        },
    }
    stem = "spatial-quick" if args.quick else "spatial"
    path = save_json_atomic(RESULTS_DIR / "bench" / f"{stem}.json", out)
    if scale is not None:
        plot(scale, RESULTS_DIR / "bench" / f"{stem}_scaling.png")
    print(f"wrote {path}" + ("" if scale is None else f" and {stem}_scaling.png"))
    if head.get("agreement_passed") is False:
        sys.exit(1)
    return out


if __name__ == "__main__":
    main()
