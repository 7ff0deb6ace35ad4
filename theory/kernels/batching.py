"""Tiled kernel evaluation: cache-sized tiles, half the work for symmetric kernels, all devices.

Every layer of `theory.kernels.stax` acts entrywise on the kernel, given the variances of
the two points of the entry. So an ``n1 × n2`` kernel splits into independent ``b × b``
tiles: tile (i, j) needs only rows ``i·b…`` of ``x1`` and ``j·b…`` of ``x2``. That gives

- **speed**: a tile's intermediates stay in cache through the whole depth loop;
- **symmetry**: for ``x2 = None`` only tiles with i ≤ j are computed, then mirrored;
- **scale-out**: the tile list is split over the visible devices with ``jax.shard_map``
  (one CPU, several forced host devices, one or many GPUs: the same code).

Entry (r, c) of a diagonal tile pairs a point with itself iff ``r + (i − j)·b == c``; the
tile's `Kernel` carries that offset, so duals set the correlation to exactly 1 there, as in
the untiled computation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from theory.kernels.kernel import Kernel, check_inputs

__all__ = ["batch", "tiled_kernel", "tile_pairs"]


def tile_pairs(nb1: int, nb2: int, symmetric: bool) -> np.ndarray:
    """(T, 2) tile indices (i, j): the upper triangle i ≤ j when symmetric, else all."""
    if symmetric:
        i, j = np.triu_indices(nb1)
    else:
        i, j = np.divmod(np.arange(nb1 * nb2), nb2)
    return np.stack([i, j], axis=1).astype(np.int32)


def _pad_rows(x: jax.Array, multiple: int) -> jax.Array:
    """Pad rows up to a multiple by repeating the last row (a valid input: no 0/0)."""
    n = x.shape[0]
    extra = (-n) % multiple
    return x if extra == 0 else jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)])


def tiled_kernel(
    transform: Callable[[Kernel], Kernel],
    x1: jax.Array,
    x2: jax.Array | None,
    compute_ntk: bool,
    tile: int,
    devices: Sequence[jax.Device] | None = None,
) -> Kernel:
    """Apply a layer ``transform`` to the input kernel of (x1, x2), tile by tile.

    Traceable (call it inside ``jax.jit``). Returns the full `Kernel` (``cov2`` is None when
    ``x2`` is None). ``devices``: spread tiles over these (default: one device, no mesh).
    """
    symmetric = x2 is None
    n1, d = x1.shape
    n2 = n1 if symmetric else x2.shape[0]
    b = int(min(tile, max(n1, n2)))
    x1p = _pad_rows(x1, b)
    x2p = x1p if symmetric else _pad_rows(x2, b)
    nb1, nb2 = x1p.shape[0] // b, x2p.shape[0] // b
    pairs = tile_pairs(nb1, nb2, symmetric)
    n_dev = 1 if not devices else len(devices)
    n_tiles = len(pairs)
    if n_tiles % n_dev:
        pad = n_dev - n_tiles % n_dev
        pairs = np.concatenate([pairs, np.repeat(pairs[-1:], pad, axis=0)])
    cov1_all = jnp.sum(x1p * x1p, axis=1) / d  # (n1p,)
    cov2_all = cov1_all if symmetric else jnp.sum(x2p * x2p, axis=1) / d
    static = {}

    def one_tile(ij):
        i, j = ij[0], ij[1]
        xi = jax.lax.dynamic_slice_in_dim(x1p, i * b, b)  # (b, d)
        xj = jax.lax.dynamic_slice_in_dim(x2p, j * b, b)
        nngp = jnp.dot(xi, xj.T, precision=jax.lax.Precision.HIGHEST) / d  # (b, b)
        k = Kernel(
            nngp=nngp,
            ntk=jnp.zeros_like(nngp) if compute_ntk else None,
            cov1=jax.lax.dynamic_slice_in_dim(cov1_all, i * b, b),
            cov2=jax.lax.dynamic_slice_in_dim(cov2_all, j * b, b),
            width=d,
            is_gaussian=False,
            diag_offset=(i - j) * b if symmetric else None,
        )
        out = transform(k)
        if isinstance(out, (list, tuple)):
            raise ValueError(
                f"the network ends with {len(out)} branches: close them with FanInSum() or "
                "FanInProd() before asking for a kernel"
            )
        static["width"], static["is_gaussian"] = out.width, out.is_gaussian
        return out.nngp, out.ntk, out.cov1, out.cov2

    def run_local(local_pairs):
        return jax.lax.map(one_tile, local_pairs)

    pairs_arr = jnp.asarray(pairs)
    if n_dev == 1:
        nngp_t, ntk_t, c1_t, c2_t = run_local(pairs_arr)
    else:
        mesh = Mesh(np.asarray(devices), ("tiles",))
        spec = PartitionSpec("tiles")
        sharded = jax.shard_map(
            run_local, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False
        )
        nngp_t, ntk_t, c1_t, c2_t = sharded(pairs_arr)

    I, J = pairs_arr[:, 0], pairs_arr[:, 1]

    def assemble(tiles):  # (T, b, b) -> (n1, n2)
        blocks = jnp.zeros((nb1, nb2, b, b), tiles.dtype).at[I, J].set(tiles)
        if symmetric:
            upper = (jnp.arange(nb1)[:, None] <= jnp.arange(nb2)[None, :])[:, :, None, None]
            blocks = jnp.where(upper, blocks, blocks.transpose(1, 0, 3, 2))
        return blocks.transpose(0, 2, 1, 3).reshape(nb1 * b, nb2 * b)[:n1, :n2]

    cov1 = jnp.zeros((nb1, b), c1_t.dtype).at[I].set(c1_t).reshape(-1)[:n1]
    cov2 = None
    if not symmetric:
        cov2 = jnp.zeros((nb2, b), c2_t.dtype).at[J].set(c2_t).reshape(-1)[:n2]
    return Kernel(
        nngp=assemble(nngp_t),
        ntk=None if ntk_t is None else assemble(ntk_t),
        cov1=cov1,
        cov2=cov2,
        width=static["width"],
        is_gaussian=static["is_gaussian"],
    )


def batch(
    kernel_fn: Callable,
    batch_size: int,
    devices: Sequence[jax.Device] | None = None,
) -> Callable:
    """``kernel_fn`` evaluated in ``batch_size × batch_size`` tiles spread over all devices.

    Same call signature and results as ``kernel_fn`` (to float roundoff: each tile does
    its own input matmul). Tiles of a symmetric kernel (``x2=None``) are computed once for
    i ≤ j and mirrored. ``devices`` defaults to ``jax.devices()``; on CPU, several host
    devices come from ``XLA_FLAGS=--xla_force_host_platform_device_count=N``.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    transform = getattr(kernel_fn, "transform", None)
    if transform is None:
        raise TypeError("batch needs a kernel_fn from theory.kernels.stax")
    devs = tuple(jax.devices() if devices is None else devices)
    if not devs:
        raise ValueError("devices must not be empty")

    @functools.partial(jax.jit, static_argnames=("get", "compute_ntk"))
    def compute(x1, x2, get, compute_ntk):
        k = tiled_kernel(transform, x1, x2, compute_ntk, batch_size, devs)
        return kernel_fn.select(k, get)

    def batched(x1, x2=None, get=None):
        get, compute_ntk = kernel_fn.parse_get(get)
        x1, x2 = check_inputs(x1, x2)
        return compute(x1, x2, get=get, compute_ntk=compute_ntk)

    batched.__name__ = f"batch({getattr(kernel_fn, '__name__', 'kernel_fn')}, {batch_size})"
    return batched


def default_tile(n1: int, n2: int) -> int | None:
    """The tile size used automatically by ``kernel_fn``: None (no tiling) for small kernels.

    256 × 256 float32 tiles (256 KiB an array) keep a layer's intermediates in L2 cache.
    """
    if n1 * n2 < 2**20 or min(n1, n2) < 512:
        return None
    return 256 if math.isfinite(n1) else None
