"""Kernels written to disk tile by tile: larger than memory, resumable, shared by processes.

``kernel_to_disk(kernel_fn, x1, x2, path)`` evaluates a `theory.kernels.stax` kernel in
``tile × tile`` blocks (the tiles of `theory.kernels.batching`) and writes each block into a
chunked on-disk array as soon as it is computed, so memory holds one tile, never n1 × n2:

- **format**: a zarr (v3) group at ``path`` with one array per kernel (``nngp``, ``ntk``: shape
  (n1, n2, *P), P the network's trailing output pair axes, empty for a scalar output) whose
  chunks are the tiles, uncompressed (kernel entries are dense floats that compress by a few
  percent at most, while compression costs CPU in the hot loop). Any zarr reader (numpy
  slicing, dask, xarray) opens it. zarr rather than tensorstore: a pure-Python dependency
  whose local store writes every chunk atomically (a temporary file renamed over the chunk),
  which is what resuming after ``kill -9`` needs, and one chunk per tile means writers of
  disjoint tiles never touch the same file.
- **resumable**: a ``done`` array of one byte per tile, set after the tile's block (and, for a
  symmetric kernel, its mirror) is on disk; a rerun with the same arguments computes only
  the tiles not marked done. A process killed mid-tile leaves that tile unmarked (its chunk,
  written or not, is recomputed and replaced), so nothing done is lost and nothing half-done
  is kept.
- **refuses mismatches**: the group's attributes record the network (its description and
  channel/diagonal layout), the inputs (SHA-256 of x1, x2 and call-time keywords), the
  kernels, dtype, shape, tile and compute tile (``batch_size``, which moves the last bits);
  a store made for anything else, or that is not a store of this kind, raises `ValueError`
  naming ``path`` and the difference, and is never overwritten.
- **several processes**: ``worker=(index, count)`` computes only tiles ``t`` with
  ``t % count == index`` of the fixed tile order (default: ``jax.process_index()`` and
  ``jax.process_count()``, so processes started with ``jax.distributed.initialize()`` split
  the work with no other set-up). The store is created atomically (built in a temporary
  directory and renamed into place), so processes may start together.
- **progress**: a tqdm bar of tiles with rate and ETA (``progress=False`` or the environment
  variable ``THEORY_NO_PROGRESS=1`` turn it off). A ``seconds`` array (one float64 per tile,
  NaN until done) records each tile's compute time, so the cost of a kernel that took several
  sessions or processes is its sum (the first tile of each kind a process computes includes
  its compilation, seconds, so medians are the better per-tile figure).
- **tiles within tiles**: a store tile (the unit of resumption and the zarr chunk) may be
  larger than the in-memory tile it is computed in (``batch_size``): a spatial kernel with the
  full covariance needs small compute tiles (a 32×32 image pair is 4 MiB per array), but a
  store of 2 × 2 chunks would be a million files.

Symmetric kernels (``x2=None``) compute only tiles i ≤ j and write each block with its
mirror (`theory.kernels.batching.mirror_block`). Every block is probed for NaN/inf; a
non-finite block raises `NonFiniteKernelError` before it is written.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from theory.kernels.batching import (
    Batchable,
    mirror_block,
    pad_rows,
    tile_kernel,
    tile_pairs,
    tiled_kernel,
)
from theory.kernels.kernel import NonFiniteKernelError, all_finite, check_inputs

__all__ = ["kernel_to_disk", "FORMAT"]

FORMAT = "theory.kernels.disk/2"  # /2: per-tile seconds

# Default tile edge for fully connected networks: a float32 block of 1000 × 1000 is 4 MB, a
# zarr chunk large enough that per-chunk overheads (a file, a rename) are small against its
# compute (depth-10 ReLU: ~10 ms per tile on 2 cores).
DEFAULT_FC_TILE = 1000


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _kwargs_digest(kwargs: dict) -> str:
    parts = []
    for name in sorted(kwargs):
        v = kwargs[name]
        leaves = jax.tree_util.tree_leaves(v, is_leaf=lambda x: x is None)
        parts.append(name)
        parts.append(_digest(*[None if leaf is None else np.asarray(leaf) for leaf in leaves]))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _network(kernel_fn) -> str:
    return json.dumps(
        {
            "name": kernel_fn.__name__,
            "channel_axis": kernel_fn.channel_axis,
            "diagonal_spatial": bool(kernel_fn.diagonal),
        },
        sort_keys=True,
    )


def _bar(total: int, initial: int, enabled: bool, desc: str):
    if not enabled or os.environ.get("THEORY_NO_PROGRESS"):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="tile")


def _open_or_create(path: Path, attrs: dict, arrays: dict[str, tuple], done_shape: tuple):
    """The zarr group at ``path``: created atomically if absent, else checked against
    ``attrs`` (ValueError on any difference; never overwritten)."""
    import zarr

    if not (path.exists() and any(path.iterdir())):
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.creating"
        try:
            g = zarr.open_group(tmp, mode="w-", zarr_format=3)
            for name, (shape, chunks, dtype) in arrays.items():
                g.create_array(
                    name, shape=shape, chunks=chunks, dtype=dtype, compressors=None,
                    fill_value=np.nan,
                )  # fmt: skip
            g.create_array(
                "done", shape=done_shape, chunks=(1, 1), dtype="uint8", fill_value=0,
                compressors=None,
            )  # fmt: skip
            g.create_array(
                "seconds", shape=done_shape, chunks=(1, 1), dtype="float64",
                fill_value=np.nan, compressors=None,
            )  # fmt: skip
            g.attrs.update(attrs)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, path)  # atomic; fails if another process got there first
            except OSError:
                if not (path.exists() and any(path.iterdir())):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return _check_store(path, attrs)


def _check_store(path: Path, attrs: dict):
    import zarr

    try:
        g = zarr.open_group(path, mode="r+", zarr_format=3)
        have = dict(g.attrs)
    except Exception as e:  # noqa: BLE001 — any failure to read means: not our store
        raise ValueError(
            f"path: {str(path)!r} exists but is not a readable kernel store ({type(e).__name__}:"
            f" {e}); choose another path or delete it (nothing was written)"
        ) from None
    if have.get("format") != FORMAT:
        raise ValueError(
            f"path: {str(path)!r} is not a kernel store written by kernel_to_disk (format "
            f"{have.get('format')!r}, expected {FORMAT!r}); choose another path (nothing was "
            "written)"
        )
    diffs = [
        f"{k}: stored {have.get(k)!r}, requested {v!r}"
        for k, v in attrs.items()
        if have.get(k) != v
    ]
    if diffs:
        raise ValueError(
            f"path: the kernel store at {str(path)!r} was made for other arguments ("
            + "; ".join(diffs)
            + "); choose another path or delete it (nothing was overwritten)"
        )
    for name in attrs["kernels"]:
        if name not in g:
            raise ValueError(f"path: the kernel store at {str(path)!r} has no {name!r} array")
    return g


def kernel_to_disk(
    kernel_fn: Batchable,
    x1,
    x2=None,
    path: str | os.PathLike = "kernel.zarr",
    get: str | Sequence[str] = ("nngp", "ntk"),
    *,
    tile: int | None = None,
    batch_size: int | None = None,
    worker: tuple[int, int] | None = None,
    progress: bool = True,
    **kwargs: Any,
):
    """Write ``kernel_fn(x1, x2, get, **kwargs)`` to a zarr group at ``path``, tile by tile,
    resuming whatever an earlier run (or another process) finished; return the group.

    ``kernel_fn``: a `theory.kernels.stax` kernel function (fully connected or spatial).
    ``get``: "nngp", "ntk" or both (the arrays of the group). ``tile``: the block edge in
    points (default: 1000 for fully connected networks; for spatial ones the size whose
    NNGP block at the input's resolution holds 32 MiB, `theory.kernels.batching.default_tile`):
    the store's chunk and the unit of resumption. ``batch_size``: the in-memory tile each
    store tile is computed in (`theory.kernels.batching.tiled_kernel`; default ``tile``, and
    for spatial networks at most the 32 MiB tile), so a store tile may hold many compute
    tiles. Memory: one compute tile's working set (its input kernel and each layer's outputs)
    plus one store tile, whatever n1 and n2. ``worker=(index, count)``: this process computes
    every count-th tile from ``index`` (default from ``jax.process_index()``/
    ``jax.process_count()``). Call-time keywords (`Aggregate`'s ``pattern``) must be
    per-point pairs, sliced into tiles with the points.

    Returns the zarr group opened read-only; ``group["nngp"][:]`` reads a whole kernel,
    ``group["nngp"][a:b, c:d]`` a block. When several processes share the work, each returns
    once its own tiles are done: ``group.attrs``/``group["done"]`` tell whether all are.
    Every tile is one compiled computation, deterministic: a resumed run, or several
    processes sharing the work, give the values of one uninterrupted run bit for bit, and
    they equal the in-memory kernel of the same tiles (`theory.kernels.batch` with
    ``batch_size=tile``) bit for bit; ``kernel_fn``'s untiled result to float roundoff (each
    tile does its own input matmul). See the module notes for the format.
    """
    import zarr

    if not isinstance(kernel_fn, Batchable) or not hasattr(kernel_fn, "transform"):
        raise TypeError(
            "kernel_to_disk needs a kernel_fn from theory.kernels.stax, got "
            f"{type(kernel_fn).__name__}"
        )
    if getattr(kernel_fn, "batch_axis", None) not in (None, 0):
        raise NotImplementedError(
            f"kernel_to_disk: {kernel_fn!r} takes its points on batch_axis="
            f"{kernel_fn.batch_axis}; tiles are cut along axis 0 (move the points there and "
            "use batch_axis=0 layers)"
        )
    names = (get,) if isinstance(get, str) else tuple(get)
    if not names or any(g not in ("nngp", "ntk") for g in names) or len(set(names)) < len(names):
        raise ValueError(f"get must be 'nngp', 'ntk' or both, got {get!r}")
    kwargs = kernel_fn.check_kwargs(kwargs)
    x1, x2 = check_inputs(x1, x2, spatial_ndim=kernel_fn.spatial_ndim)
    symmetric = x2 is None
    per_point = kernel_fn.per_point(kwargs, x1, x2)
    if per_point is None:
        raise ValueError(
            f"kernel_to_disk: call-time keywords {sorted(kwargs)} must be per-point pairs "
            "(a1, a2) with x1's and x2's points on their leading axes (a2 None when x2 is None)"
        )
    n1 = x1.shape[0]
    n2 = n1 if symmetric else x2.shape[0]
    if tile is None:
        pair_bytes = kernel_fn.pair_bytes(x1)
        if pair_bytes == 0:
            tile = DEFAULT_FC_TILE
        else:
            from theory.kernels.batching import SPATIAL_TILE_BYTES

            tile = max(1, math.isqrt(SPATIAL_TILE_BYTES // pair_bytes))
    if not isinstance(tile, int) or isinstance(tile, bool) or tile < 1:
        raise ValueError(f"tile must be a positive integer, got {tile!r}")
    b = min(tile, max(n1, n2))
    if batch_size is None:
        batch_size = b
        pair_bytes = kernel_fn.pair_bytes(x1)
        if pair_bytes:
            from theory.kernels.batching import SPATIAL_TILE_BYTES

            batch_size = min(b, max(1, math.isqrt(SPATIAL_TILE_BYTES // pair_bytes)))
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    inner = min(batch_size, b)
    if worker is None:
        worker = (jax.process_index(), jax.process_count())
    index, count = worker
    ints = isinstance(count, int) and isinstance(index, int)
    if not (ints and count >= 1 and 0 <= index < count):
        raise ValueError(f"worker must be (index, count) with 0 ≤ index < count, got {worker!r}")

    compute_ntk = "ntk" in names
    diagonal = bool(kernel_fn.diagonal)
    channel_axis = kernel_fn.channel_axis
    x1p = pad_rows(x1, b)
    x2p = x1p if symmetric else pad_rows(x2, b)
    rows = {k: pad_rows(jnp.asarray(a1), b) for k, (a1, _) in per_point.items()}
    cols = {
        k: rows[k] if a2 is None else pad_rows(jnp.asarray(a2), b)
        for k, (_, a2) in per_point.items()
    }
    nb1, nb2 = x1p.shape[0] // b, x2p.shape[0] // b

    def one_tile(i, j, mirror_of_itself):
        if inner >= b:  # the store tile is one compute tile
            out = tile_kernel(
                kernel_fn.transform, x1p, x2p, i * b, j * b, b, compute_ntk, diagonal,
                channel_axis, symmetric, rows, cols,
            )  # fmt: skip
        else:  # the store tile in compute tiles: a symmetric kernel's diagonal tile is itself
            # symmetric (its own triangle and mirror); every other tile is a cross kernel
            xi = jax.lax.dynamic_slice_in_dim(x1p, i * b, b)
            xj = jax.lax.dynamic_slice_in_dim(x2p, j * b, b)

            def block(a, s):
                return jax.lax.dynamic_slice_in_dim(a, s, b)

            pp = {
                n: (block(rows[n], i * b), None if mirror_of_itself else block(cols[n], j * b))
                for n in rows
            }
            out = tiled_kernel(
                kernel_fn.transform, xi, None if mirror_of_itself else xj, compute_ntk, inner,
                diagonal_spatial=diagonal, per_point=pp or None, channel_axis=channel_axis,
            )  # fmt: skip
        blocks = tuple(getattr(out, n) for n in names)
        return blocks, all_finite(list(blocks))

    tile_fns = {
        m: jax.jit(lambda i, j, m=m: one_tile(i, j, m))
        for m in ((False, True) if symmetric else (False,))
    }
    probe = jax.eval_shape(lambda: one_tile(0, 0, symmetric))[0]
    pair_shape = tuple(probe[0].shape[2:])
    full_spatial = len(pair_shape) > 0 and not diagonal
    dtype = np.dtype(probe[0].dtype)

    attrs = {
        "format": FORMAT,
        "network": _network(kernel_fn),
        "inputs_sha256": _digest(x1, x2),
        "kwargs_sha256": _kwargs_digest(kwargs),
        "kernels": list(names),
        "shape": [n1, n2, *pair_shape],
        "dtype": dtype.str,
        "tile": b,
        "batch_size": inner,
        "symmetric": symmetric,
    }
    arrays = {n: ((n1, n2, *pair_shape), (b, b, *pair_shape), dtype) for n in names}
    path = Path(path)
    group = _open_or_create(path, attrs, arrays, (nb1, nb2))

    pairs = tile_pairs(nb1, nb2, symmetric)
    mine = pairs[index::count]
    done = np.asarray(group["done"][:]).astype(bool)
    todo = [(int(i), int(j)) for i, j in mine if not done[i, j]]
    bar = _bar(len(mine), len(mine) - len(todo), progress, f"kernel tiles ({b}×{b})")
    out_arrays = {name: group[name] for name in names}
    done_array, seconds = group["done"], group["seconds"]
    try:
        for i, j in todo:
            t0 = time.perf_counter()
            blocks, ok = jax.block_until_ready(tile_fns[symmetric and i == j](i, j))
            spent = time.perf_counter() - t0
            if not bool(ok):
                raise NonFiniteKernelError(
                    f"kernel_to_disk: tile ({i}, {j}) (rows {i * b}…, columns {j * b}…) of "
                    f"{kernel_fn.__name__} is not finite in {dtype.name}; float64 "
                    '(jax.config.update("jax_enable_x64", True)) is the usual remedy; '
                    "nothing of this tile was written",
                    result=[np.asarray(a) for a in blocks],
                )
            r0, r1 = i * b, min((i + 1) * b, n1)
            c0, c1 = j * b, min((j + 1) * b, n2)
            for name, block in zip(names, blocks):
                arr = out_arrays[name]
                if symmetric and i == j:
                    # the in-memory tiles (`batching.tiled_kernel`) write a diagonal tile's
                    # mirror over it; so does the store, to equal them bit for bit (K(x_a,
                    # x_b) and K(x_b, x_a) are computed apart and may differ by an ulp)
                    block = mirror_block(block, full_spatial)
                arr[r0:r1, c0:c1] = np.asarray(block)[: r1 - r0, : c1 - c0]
                if symmetric and i != j:
                    mirrored = np.asarray(mirror_block(block, full_spatial))
                    arr[c0:c1, r0:r1] = mirrored[: c1 - c0, : r1 - r0]
            seconds[i, j] = spent
            done_array[i, j] = 1
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return zarr.open_group(path, mode="r", zarr_format=3)
