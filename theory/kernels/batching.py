"""Tiled kernel evaluation: cache-sized tiles, half the work for symmetric kernels, all devices.

Every layer of `theory.kernels.stax` acts on each pair of points separately, given the
variances of the two points (and, for spatial networks, of their sites). So an ``n1 × n2``
kernel splits into independent ``b × b`` tiles: tile (i, j) needs only rows ``i·b…`` of ``x1``
and ``j·b…`` of ``x2``. That gives

- **speed**: a tile's intermediates stay in cache through the whole depth loop;
- **symmetry**: for ``x2 = None`` only tiles with i ≤ j are computed, then mirrored;
- **bounded memory**: a spatial network's intermediates (|S|² sites per pair with the full
  covariance, 10⁶ for 32×32 images) exist for one tile at a time, never for all N² pairs;
- **scale-out**: the tile list is split over the visible devices with ``jax.shard_map``
  (one CPU, several forced host devices, one or many GPUs: the same code).

Entry (r, c) of a diagonal tile pairs a point with itself iff ``r + (i − j)·b == c``; the
tile's `Kernel` carries that offset, so duals set the correlation to exactly 1 there, as in
the untiled computation.
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from theory.kernels.kernel import (
    Kernel,
    input_kernel,
    nonfinite_probe,
)

__all__ = [
    "Batchable", "batch", "tiled_kernel", "tile_kernel", "tile_pairs", "mirror_block",
    "default_tile",
]  # fmt: skip


def tile_pairs(nb1: int, nb2: int, symmetric: bool) -> np.ndarray:
    """(T, 2) tile indices (i, j): the upper triangle i ≤ j when symmetric, else all."""
    if symmetric:
        i, j = np.triu_indices(nb1)
    else:
        i, j = np.divmod(np.arange(nb1 * nb2), nb2)
    return np.stack([i, j], axis=1).astype(np.int32)


def pad_rows(x: jax.Array, multiple: int) -> jax.Array:
    """Pad rows up to a multiple by repeating the last row (a valid input: no 0/0)."""
    n = x.shape[0]
    extra = (-n) % multiple
    return x if extra == 0 else jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)])


def _tile_size(n: int, target: int) -> int:
    """The tile edge closest to ``target`` that splits n rows into equal tiles (least padding)."""
    nb = max(1, math.ceil(n / max(1, target)))
    return math.ceil(n / nb)


def mirror_block(block: jax.Array, full_spatial: bool) -> jax.Array:
    """The block of the transposed kernel: K(x2_j, x1_i) from K(x1_i, x2_j). Swaps the two point
    axes and, with the full spatial covariance, the two sites of every zipped pair (S ↔ S')."""
    perm = [1, 0]
    for d in range((block.ndim - 2) // 2 if full_spatial else 0):
        perm += [3 + 2 * d, 2 + 2 * d]
    perm += list(range(len(perm), block.ndim))
    return jnp.transpose(block, perm)


def tile_kernel(
    transform: Callable[[Kernel], Kernel],
    x1p: jax.Array,
    x2p: jax.Array,
    r0,
    c0,
    b: int,
    compute_ntk: bool,
    diagonal_spatial: bool,
    channel_axis: int | None,
    symmetric: bool,
    rows: dict | None = None,
    cols: dict | None = None,
    mask_constant=None,
) -> Kernel:
    """The network's kernel on one tile: rows ``r0 … r0 + b − 1`` of ``x1p`` against
    ``c0 … c0 + b − 1`` of ``x2p`` (traced starts; the arrays padded so that every slice is
    full). For a symmetric kernel entry (r, c) pairs a point with itself iff r0 + r = c0 + c,
    which the tile's ``diag_offset`` records. ``rows``/``cols``: per-point call-time data
    (name → array with the points on the leading axis), sliced with the points."""
    xi = jax.lax.dynamic_slice_in_dim(x1p, r0, b)
    xj = jax.lax.dynamic_slice_in_dim(x2p, c0, b)
    k = input_kernel(xi, xj, compute_ntk, diagonal_spatial, channel_axis, mask_constant)
    k = k.replace(diag_offset=r0 - c0 if symmetric else None)
    kwargs = {
        n: (
            jax.lax.dynamic_slice_in_dim(rows[n], r0, b),
            jax.lax.dynamic_slice_in_dim(cols[n], c0, b),
        )
        for n in rows or {}
    }
    out = transform(k, **kwargs)
    if isinstance(out, (list, tuple)):
        raise ValueError(
            f"the network ends with {len(out)} branches: close them with FanInSum() or "
            "FanInProd() before asking for a kernel"
        )
    return out


def tiled_kernel(
    transform: Callable[[Kernel], Kernel],
    x1: jax.Array,
    x2: jax.Array | None,
    compute_ntk: bool,
    tile: int,
    devices: Sequence[jax.Device] | None = None,
    with_flags: bool = False,
    diagonal_spatial: bool = True,
    per_point: dict | None = None,
    channel_axis: int | None = None,
    shard_output: bool = False,
    mask_constant=None,
) -> Kernel | tuple[Kernel, jax.Array]:
    """Apply a layer ``transform`` to the input kernel of (x1, x2), tile by tile.

    ``per_point``: call-time data given point by point (`Aggregate`'s graph ``pattern``), a
    dict ``name -> (a1, a2)`` of arrays whose leading axis is x1's points and x2's (``a2`` None
    when ``x2`` is None); each tile's transform receives ``name=(a1[its rows], a2[its
    columns])``, so per-point data costs one tile's worth of memory too.

    ``x1``/``x2`` are (n, d) or NHWC (n, *S, C) (channels on ``channel_axis``, default the
    last); each tile builds its own input kernel (`input_kernel`: on the spatial diagonal, or
    with the full covariance when ``diagonal_spatial`` is False), so a tile's working set is
    b² times the bytes per pair of points (|S|² sites with the full covariance) and never the
    whole N² |S|².

    Traceable (call it inside ``jax.jit``). Returns the full `Kernel` (``cov2`` is None when
    ``x2`` is None); its entries have whatever trailing pair axes the network's output has
    (none after Flatten or global pooling). Each device loops over its share of the tiles and
    writes each result straight into its place in the output (and, for a symmetric kernel, its
    mirror, `mirror_block`, into the mirrored place): no assembly pass over the n1 × n2
    output. With several ``devices`` every device fills the tiles it owns into its own
    full-size buffer and the buffers are summed: the work is spread, the output's memory is
    not (each device holds n1 × n2).

    With ``shard_output`` (and ``devices``), the output is not summed but laid out over the
    devices: device d computes every tile of its band of n1/D rows (all column tiles, so a
    symmetric kernel's mirror saving is not used: about twice the work of the summed layout;
    n1 must be a multiple of D, as JAX's shardings divide evenly) into a buffer of 1/D of the
    rows, and the returned arrays are global `jax.Array`s sharded by rows over a one-axis
    mesh (``NamedSharding(mesh, PartitionSpec("tiles"))``; ``cov2`` replicated). Each device
    then holds 1/D of the kernel plus one tile's working set, so adding devices adds
    capacity. With
    `jax.distributed` the devices may span processes: every process runs the same call on the
    same inputs and holds its own devices' shards.

    ``mask_constant``: input entries equal to it are absent (`theory.kernels.stax` masking);
    each tile masks its own rows and columns. The returned `Kernel` carries no masks (they
    are per tile); its entries are the masked kernel's.

    With ``with_flags``, also returns whether every NNGP and NTK entry is finite, from a
    `nonfinite_probe` of each tile while it is in cache. On the depth-10 ReLU kernel at
    N = 4000 (2 shared CPU cores) that cost +0.3% to +3.5% CPU time (median of 15–25
    alternated calls, three runs), where ``all(isfinite)`` per tile cost +3.2% and one pass
    over the finished n1 × n2 outputs 50 ms (about 10%).
    """
    symmetric = x2 is None
    n1 = x1.shape[0]
    n2 = n1 if symmetric else x2.shape[0]
    if shard_output:
        return _sharded(
            transform, x1, x2, compute_ntk, tile, devices, with_flags, diagonal_spatial,
            per_point, channel_axis, mask_constant,
        )  # fmt: skip
    b = _tile_size(max(n1, n2) if symmetric else min(n1, n2), tile)
    x1p = pad_rows(x1, b)
    x2p = x1p if symmetric else pad_rows(x2, b)
    m1, m2 = x1p.shape[0], x2p.shape[0]
    nb1, nb2 = m1 // b, m2 // b
    pairs = tile_pairs(nb1, nb2, symmetric)
    valid = np.ones(len(pairs), np.float32)
    n_dev = 1 if not devices else len(devices)
    if len(pairs) % n_dev:  # pad with weight-0 copies so every device has equal work
        pad = n_dev - len(pairs) % n_dev
        pairs = np.concatenate([pairs, np.repeat(pairs[-1:], pad, axis=0)])
        valid = np.concatenate([valid, np.zeros(pad, np.float32)])

    rows = {n: pad_rows(a1, b) for n, (a1, _) in (per_point or {}).items()}
    cols = {
        n: rows[n] if a2 is None else pad_rows(a2, b) for n, (_, a2) in (per_point or {}).items()
    }

    def one_tile(i, j, rows=rows, cols=cols):
        return tile_kernel(
            transform, x1p, x2p, i * b, j * b, b, compute_ntk, diagonal_spatial, channel_axis,
            symmetric, rows, cols, mask_constant,
        )  # fmt: skip

    # The output's static fields and trailing pair shapes, from one traced tile.
    probe = jax.eval_shape(lambda: one_tile(0, 0))
    full = probe.full_spatial
    pair_shape = probe.nngp.shape[2:]
    cov_shape = probe.cov1.shape[1:]

    # One device: every entry is written exactly once, so tiles are stored as they are (a
    # diagonal tile is then overwritten by its own mirror: the same values).
    # Several devices: each fills the tiles it owns into a zero buffer and the buffers are
    # summed, so padding tiles get weight 0 and diagonal tiles are not mirrored.
    summed = n_dev > 1

    def add_block(buf, block, r, c):
        at = (r, c) + (jnp.zeros((), r.dtype),) * (block.ndim - 2)
        if not summed:
            return jax.lax.dynamic_update_slice(buf, block, at)
        cur = jax.lax.dynamic_slice(buf, at, block.shape)
        return jax.lax.dynamic_update_slice(buf, cur + block, at)

    def weigh(w, block):  # select, not multiply: 0 · inf would be NaN
        return block if not summed else jnp.where(w > 0, block, 0)

    def add_vec(buf, vec, r):
        if not summed:
            return jax.lax.dynamic_update_slice_in_dim(buf, vec, r, 0)
        cur = jax.lax.dynamic_slice_in_dim(buf, r, vec.shape[0])
        return jax.lax.dynamic_update_slice_in_dim(buf, cur + vec, r, 0)

    def fill(local_pairs, local_valid, rows, cols):
        dtype = probe.nngp.dtype
        zeros = jnp.zeros((m1, m2, *pair_shape), dtype)
        init = {
            "nngp": zeros,
            "ntk": zeros if compute_ntk else None,
            "cov1": jnp.zeros((m1, *cov_shape), dtype),
            "cov2": None if symmetric else jnp.zeros((m2, *cov_shape), dtype),
            # Σ (v − v) over every tile entry: 0 while all are finite, NaN otherwise.
            "probe": jnp.zeros((), dtype),
        }

        def body(t, acc):
            i, j = local_pairs[t, 0], local_pairs[t, 1]
            out = one_tile(i, j, rows, cols)
            if summed:  # each entry from exactly one tile, padding tiles from none
                w = local_valid[t].astype(dtype)
                w_mirror = w * (i != j)
                w_row = w * ((i == j) if symmetric else (j == 0))
                w_col = w * (i == 0)
            else:  # stores overwrite: repeated writes carry the same values
                w = w_mirror = w_row = w_col = 1.0
            acc = dict(acc)
            for name in ("nngp", "ntk"):
                if acc[name] is None:
                    continue
                block = getattr(out, name)
                acc[name] = add_block(acc[name], weigh(w, block), i * b, j * b)
                if with_flags:
                    acc["probe"] = acc["probe"] + nonfinite_probe(block)
                if symmetric:
                    mirrored = weigh(w_mirror, mirror_block(block, full))
                    acc[name] = add_block(acc[name], mirrored, j * b, i * b)
            acc["cov1"] = add_vec(acc["cov1"], weigh(w_row, out.cov1), i * b)
            if not symmetric:
                acc["cov2"] = add_vec(acc["cov2"], weigh(w_col, out.cov2), j * b)
            return acc

        return jax.lax.fori_loop(0, local_pairs.shape[0], body, init)

    pairs_arr, valid_arr = jnp.asarray(pairs), jnp.asarray(valid)
    if n_dev == 1:
        acc = fill(pairs_arr, valid_arr, rows, cols)
    else:
        mesh = Mesh(np.asarray(devices), ("tiles",))

        def fill_and_sum(p, v, r, c):
            return jax.tree_util.tree_map(lambda a: jax.lax.psum(a, "tiles"), fill(p, v, r, c))

        acc = jax.shard_map(
            fill_and_sum,
            mesh=mesh,
            in_specs=(PartitionSpec("tiles"),) * 2 + (PartitionSpec(),) * 2,
            out_specs=PartitionSpec(),
            check_vma=False,
        )(pairs_arr, valid_arr, rows, cols)

    def crop(a, *n):  # no copy when nothing was padded
        if a.shape[: len(n)] == n:
            return a
        return a[tuple(slice(0, k) for k in n)]

    k = probe.replace(
        nngp=crop(acc["nngp"], n1, n2),
        ntk=None if acc["ntk"] is None else crop(acc["ntk"], n1, n2),
        cov1=crop(acc["cov1"], n1),
        cov2=None if symmetric else crop(acc["cov2"], n2),
        diag_offset=None,
        mask1=None,
        mask2=None,
    )
    if not with_flags:
        return k
    return k, acc["probe"] == 0


def _sharded(
    transform,
    x1,
    x2,
    compute_ntk,
    tile,
    devices,
    with_flags,
    diagonal_spatial,
    per_point,
    channel_axis,
    mask_constant=None,
):
    """`tiled_kernel` with ``shard_output``: device d fills rows d·k … (d+1)·k − 1 (k = n1/D)
    in tiles of b rows (the last one ragged: rows past the band are computed and dropped)."""
    devices = list(devices or jax.devices())
    n_dev = len(devices)
    symmetric = x2 is None
    n1 = x1.shape[0]
    n2 = n1 if symmetric else x2.shape[0]
    if n1 % n_dev:
        raise ValueError(
            f"shard_output: x1 has {n1} points, not a multiple of the {n_dev} devices the "
            "rows are split over; pad x1 (and drop the extra rows after) or pass devices="
        )
    k_rows = n1 // n_dev
    b = _tile_size(k_rows, tile)
    local_tiles = math.ceil(k_rows / b)  # row tiles per device, the last may be ragged

    def pad_by(a, extra):  # room for a full tile past any start: repeat the last row
        return jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)])

    x1p = pad_by(x1, b)
    x2p = pad_rows(x1 if symmetric else x2, b)
    m2 = x2p.shape[0]
    nb2 = m2 // b
    rows = {n: pad_by(a1, b) for n, (a1, _) in (per_point or {}).items()}
    cols = {n: pad_rows(a1 if a2 is None else a2, b) for n, (a1, a2) in (per_point or {}).items()}

    def one_tile(r0, c0, x1p, x2p, rows, cols):
        return tile_kernel(
            transform, x1p, x2p, r0, c0, b, compute_ntk, diagonal_spatial, channel_axis,
            symmetric, rows, cols, mask_constant,
        )  # fmt: skip

    probe = jax.eval_shape(lambda: one_tile(0, 0, x1p, x2p, rows, cols))
    pair_shape = probe.nngp.shape[2:]
    cov_shape = probe.cov1.shape[1:]
    dtype = probe.nngp.dtype
    mesh = Mesh(np.asarray(devices), ("tiles",))

    def fill(x1p, x2p, rows, cols):
        start = jax.lax.axis_index("tiles") * k_rows
        zeros = jnp.zeros((local_tiles * b, m2, *pair_shape), dtype)
        init = {
            "nngp": zeros,
            "ntk": zeros if compute_ntk else None,
            "cov1": jnp.zeros((local_tiles * b, *cov_shape), dtype),
            "cov2": None if symmetric else jnp.zeros((m2, *cov_shape), dtype),
            "probe": jnp.zeros((), dtype),
        }

        def body(t, acc):
            li, j = t // nb2, t % nb2
            out = one_tile(start + li * b, j * b, x1p, x2p, rows, cols)
            acc = dict(acc)
            for name in ("nngp", "ntk"):
                if acc[name] is None:
                    continue
                block = getattr(out, name)
                at = (li * b, j * b) + (jnp.zeros((), li.dtype),) * (block.ndim - 2)
                acc[name] = jax.lax.dynamic_update_slice(acc[name], block, at)
                if with_flags:  # rows past the band are dropped: probe only the kept ones
                    kept = jnp.arange(b) < k_rows - li * b
                    kept = kept.reshape((b,) + (1,) * (block.ndim - 1))
                    acc["probe"] = acc["probe"] + nonfinite_probe(jnp.where(kept, block, 0))
            # every tile of a row band carries its rows' cov1 (all equal), of a column its cov2
            acc["cov1"] = jax.lax.dynamic_update_slice_in_dim(acc["cov1"], out.cov1, li * b, 0)
            if not symmetric:
                acc["cov2"] = jax.lax.dynamic_update_slice_in_dim(acc["cov2"], out.cov2, j * b, 0)
            return acc

        acc = jax.lax.fori_loop(0, local_tiles * nb2, body, init)
        out = {
            "nngp": acc["nngp"][:k_rows, :n2],
            "ntk": None if acc["ntk"] is None else acc["ntk"][:k_rows, :n2],
            "cov1": acc["cov1"][:k_rows],
            "cov2": None if symmetric else acc["cov2"][:n2],
            "probe": jax.lax.psum(acc["probe"], "tiles"),
        }
        return out

    rows_spec, rep = PartitionSpec("tiles"), PartitionSpec()
    out_specs = {
        "nngp": rows_spec,
        "ntk": rows_spec if compute_ntk else None,
        "cov1": rows_spec,
        "cov2": None if symmetric else rep,
        "probe": rep,
    }
    acc = jax.shard_map(fill, mesh=mesh, in_specs=(rep,) * 4, out_specs=out_specs, check_vma=False)(
        x1p, x2p, rows, cols
    )
    k = probe.replace(
        nngp=acc["nngp"], ntk=acc["ntk"], cov1=acc["cov1"], cov2=acc["cov2"], diag_offset=None,
        mask1=None, mask2=None,
    )  # fmt: skip
    if not with_flags:
        return k
    return k, acc["probe"] == 0


class Batchable(abc.ABC):
    """A kernel function that can evaluate itself in tiles spread over devices: what `batch`
    accepts (`theory.kernels.stax.KernelFn` is one). This module knows nothing of stax; stax
    builds on it."""

    @abc.abstractmethod
    def batched(
        self, batch_size: int, devices: tuple[jax.Device, ...], shard_output: bool = False
    ) -> Callable:
        """The kernel function evaluated in ``batch_size × batch_size`` tiles on ``devices``
        (``shard_output``: the result laid out over them, see `tiled_kernel`)."""


def batch(
    kernel_fn: Callable,
    batch_size: int = 0,
    device_count: int | Sequence[jax.Device] = -1,
    store_on_device: bool = True,
    *,
    devices: Sequence[jax.Device] | None = None,
    shard_output: bool = False,
) -> Callable:
    """``kernel_fn`` evaluated in ``batch_size × batch_size`` tiles spread over all devices.

    neural-tangents' signature: ``batch_size=0`` returns ``kernel_fn`` untiled;
    ``device_count`` −1 (all devices), 0 (the default device) or n (the first n), or a
    sequence of devices (ours; also ``devices=``); ``store_on_device=False`` returns the
    kernel in host memory (NumPy) instead of a device array. Any kernel function is
    accepted: a `stax` ``kernel_fn`` takes the fast path below; any other
    ``kernel_fn(x1, x2, *args, **kwargs)`` whose outputs put x1's and x2's points on their
    first two axes (an empirical or Monte Carlo kernel function) is called block by block and
    the blocks assembled.

    Same call signature, results and numerical guards as ``kernel_fn`` (to float roundoff:
    each tile does its own input matmul): 16-bit inputs raise `TypeError`, a non-finite
    output raises `NonFiniteKernelError` (float64 is the usual remedy), and outputs that
    cannot fit (each device holds a full n1 × n2 buffer per kernel; host devices share RAM)
    raise `KernelMemoryError` before allocating. Spatial (NHWC) networks are tiled the same
    way; a tile's working set is ``batch_size²`` times the bytes of one pair of points (|S|²
    sites with the full spatial covariance), so choose ``batch_size`` from that, not from N.
    Tiles of a symmetric kernel (``x2=None``) are computed once for i ≤ j and mirrored.
    ``devices`` defaults to ``jax.devices()`` (with `jax.distributed`, every process's
    devices); on CPU, several host devices come from
    ``XLA_FLAGS=--xla_force_host_platform_device_count=N``.

    ``shard_output=True``: tiles are computed where they live and the NNGP/NTK (and cov1) are
    global `jax.Array`s sharded by rows over ``devices`` (``NamedSharding``, axis "tiles"):
    each device holds about 1/D of the kernel plus one tile, so D devices hold a D times
    larger kernel, and with `jax.distributed.initialize()` the same call spans hosts (each
    process holds its devices' shards: ``out.addressable_shards``). A symmetric kernel then
    computes all of its tiles (no mirroring across devices: ~2× the arithmetic). Beyond all
    devices' memory, `theory.kernels.kernel_to_disk` writes the kernel to disk.
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int | np.integer)
        or batch_size < 0
    ):
        raise ValueError(f"batch_size must be a non-negative integer, got {batch_size!r}")
    if not callable(kernel_fn):
        raise TypeError(f"batch needs a kernel function, got {type(kernel_fn).__name__}")
    if devices is None:
        if isinstance(device_count, int | np.integer) and not isinstance(device_count, bool):
            every = jax.devices()
            devices = every if device_count < 0 else every[: max(int(device_count), 1)]
        else:
            devices = device_count
    devs = tuple(devices)
    if not devs:
        raise ValueError("devices must not be empty")
    if batch_size == 0:
        out = kernel_fn
    elif isinstance(kernel_fn, Batchable):
        out = kernel_fn.batched(int(batch_size), devs, shard_output=bool(shard_output))
    else:
        out = _blocks_of(kernel_fn, int(batch_size))
    if store_on_device:
        return out

    @functools.wraps(out)
    def on_host(*args, **kwargs):
        return jax.tree_util.tree_map(np.asarray, out(*args, **kwargs))

    return on_host


def _is_kernel(z) -> bool:
    return isinstance(z, Kernel)


def _kernel_block(k: Kernel, a: int, b: int, size: int) -> Kernel:
    """Rows a… and columns b… (``size`` each) of a `Kernel` given as an input: its pairs, x1's
    per-point blocks for the rows and x2's for the columns. A diagonal block of a symmetric
    kernel (x2 None, a = b) stays symmetric; any other block pairs distinct points."""
    cut = {}
    for name in ("nngp", "ntk"):
        v = getattr(k, name)
        cut[name] = None if v is None else v[a : a + size, b : b + size]
    cut["cov1"] = k.cov1[a : a + size]
    if k.cov2 is None and a == b:
        cut["cov2"] = None
    else:
        cut["cov2"] = k.var2()[b : b + size]
    return k.replace(diag_offset=None, **cut)


def _assemble_kernels(grid: list[list[Kernel]], symmetric: bool) -> Kernel:
    """One `Kernel` from a grid of blocks: pairs by rows and columns, x1's per-point blocks
    from the first column, x2's from the first row (None when x2 was None)."""

    def join(name):
        if getattr(grid[0][0], name) is None:
            return None
        rows = [jnp.concatenate([getattr(k, name) for k in row], axis=1) for row in grid]
        return jnp.concatenate(rows, axis=0)

    cov1 = jnp.concatenate([row[0].cov1 for row in grid], axis=0)
    cov2 = None if symmetric else jnp.concatenate([k.var2() for k in grid[0]], axis=0)
    return grid[0][0].replace(
        nngp=join("nngp"), ntk=join("ntk"), cov1=cov1, cov2=cov2, diag_offset=None
    )


def _blocks_of(kernel_fn: Callable, size: int) -> Callable:
    """Any kernel function, block by block over the points of x1 and x2, assembled. Inputs
    may be arrays or trees of them (several inputs), or `Kernel`s (a kernel function applied
    to the output of another: its pairs are sliced by rows and columns); outputs may be arrays
    whose first two axes are x1's and x2's points, or `Kernel`s, or trees of them."""

    @functools.wraps(kernel_fn)
    def tiled(x1, x2=None, *args, **kwargs):
        first = jax.tree_util.tree_leaves(x1, is_leaf=_is_kernel)[0]
        kernel_in = _is_kernel(first)
        if kernel_in:
            n1, n2 = first.nngp.shape[:2]
        else:
            n1 = first.shape[0]
            other = x1 if x2 is None else x2
            n2 = jax.tree_util.tree_leaves(other)[0].shape[0]

        def rows(x, a, b):
            return jax.tree_util.tree_map(lambda v: v[a:b], x)

        grid = []
        for a in range(0, n1, size):
            row = []
            for b in range(0, n2, size):
                if kernel_in:
                    block = jax.tree_util.tree_map(
                        functools.partial(_kernel_block, a=a, b=b, size=size),
                        x1,
                        is_leaf=_is_kernel,
                    )
                    rest = args if x2 is None else (x2, *args)  # a Kernel has no x2
                    row.append(kernel_fn(block, *rest, **kwargs))
                else:
                    row.append(kernel_fn(rows(x1, a, a + size), rows(other, b, b + size), *args,
                                         **kwargs))  # fmt: skip
            grid.append(row)
        symmetric = (first.cov2 is None) if kernel_in else x2 is None

        def assemble(*leaves):
            k = len(grid[0])
            blocks = [list(leaves[r * k : (r + 1) * k]) for r in range(len(grid))]
            if _is_kernel(leaves[0]):
                return _assemble_kernels(blocks, symmetric)
            return jnp.concatenate([jnp.concatenate(r, axis=1) for r in blocks], axis=0)

        flat = [leaf for row in grid for leaf in row]
        return jax.tree_util.tree_map(assemble, *flat, is_leaf=_is_kernel)

    return tiled


# Bytes of one NNGP or NTK array of a spatial tile (b² pairs × bytes per pair at the input's
# resolution, where the sites are most numerous); see `default_tile`.
SPATIAL_TILE_BYTES = 32 * 2**20


def default_tile(n1: int, n2: int, pair_bytes: int = 0) -> int | None:
    """The tile size used automatically by ``kernel_fn``: None (no tiling) for small kernels.

    Fully connected (``pair_bytes`` 0), measured on 2 CPU cores (depth-10 ReLU, N = 4000,
    x2 = None): 0.43 s untiled; 0.20–0.28 s with tiles of 256–1024 rows (the machine's noise is
    larger than the differences between those sizes); 400 keeps a tile's arrays (640 KiB each
    in float32) near L2.

    Spatial networks (``pair_bytes``: the bytes of one pair of points at the input's resolution,
    |S| or |S|² sites times the item size): tiles whose NNGP holds at most
    `SPATIAL_TILE_BYTES` (32 MiB), so that the working set is bounded by the tile whatever N is
    (a network holds a few such arrays at once: NNGP, NTK and the activation's intermediates);
    None when the whole kernel fits in one such array.
    """
    if pair_bytes <= 0:
        if n1 * n2 < 2**20 or min(n1, n2) < 512:
            return None
        return 400
    if n1 * n2 * pair_bytes <= SPATIAL_TILE_BYTES:
        return None
    return max(1, math.isqrt(SPATIAL_TILE_BYTES // pair_bytes))
