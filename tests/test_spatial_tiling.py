"""Spatial kernels in tiles: the same numbers as the untiled computation, memory bounded by
the tile.

With the full spatial covariance a pair of points holds |S|² site pairs (10⁶ for 32×32
images), so ``kernel_fn`` splits the n1 × n2 kernel into b × b tiles sized from the bytes per
pair (`theory.kernels.batching.default_tile`); tiles of a symmetric kernel are computed for
i ≤ j and mirrored, which for a network whose output keeps its sites swaps the two sites of
every pair as well as the two points. Tiling changes no arithmetic: a tile runs the same
operations on a sub-block, so tiled and untiled agree to float64 roundoff: 1e-12 relative,
except at a point shared by both batches, whose correlation q12/√(q11 q22) = 1 − O(ε) is
rounded differently by the tile's input einsum and ReLU's arccos turns that into O(√ε) = 1e-8
(measured 2e-10).
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from theory.kernels import batching, stax
from theory.kernels.batching import tiled_kernel
from theory.kernels.kernel import KernelMemoryError, input_kernel

NETS = {
    "pool_gap": lambda: stax.serial(
        stax.Conv(4, (3, 3), padding="SAME", W_std=1.5, b_std=0.1),
        stax.Relu(),
        stax.AvgPool((2, 2)),
        stax.Conv(3, (2, 2)),
        stax.Gelu(),
        stax.GlobalAvgPool(),
        stax.Dense(1),
    ),
    "flatten": lambda: stax.serial(
        stax.Conv(4, (3, 3), padding="SAME"), stax.Relu(), stax.Flatten(), stax.Dense(1)
    ),
    # the output keeps its sites: tiles mirror the site pairs too
    "ends_in_conv": lambda: stax.serial(
        stax.Conv(4, (3, 3), padding="SAME"), stax.Relu(), stax.Conv(3, (2, 2), strides=(2, 1))
    ),
}


def data():
    rng = np.random.default_rng(1)
    x1 = rng.standard_normal((7, 5, 6, 2))
    x2 = rng.standard_normal((4, 5, 6, 2))
    x2[1] = x1[2]  # a point in both batches
    return jnp.asarray(x1), jnp.asarray(x2)


def assert_same(a, b, what):
    for name in ("nngp", "ntk", "cov1", "cov2"):
        u, v = getattr(a, name), getattr(b, name)
        if u is None:
            assert v is None, (what, name)
            continue
        assert u.shape == v.shape, (what, name, u.shape, v.shape)
        scale = float(jnp.max(jnp.abs(u)))
        np.testing.assert_allclose(
            np.asarray(v), np.asarray(u), rtol=1e-8, atol=1e-12 * scale, err_msg=f"{what} {name}"
        )


@pytest.mark.parametrize(
    # all slow (20 s and more each): by default, tiles of spatial kernels are checked against
    # whole kernels by test_experiment_cntk.py (pooled CNTK) and test_aggregate_oracle.py
    "net",
    [pytest.param(n, marks=pytest.mark.slow) for n in NETS],
)
def test_tiles_equal_the_untiled_kernel(net, x64):
    kf = NETS[net]()[2]
    diagonal = bool(kf.diagonal)
    x1, x2 = data()
    for xs in ((x1, None), (x1, x2)):
        whole = jax.jit(lambda a, b: kf.transform(input_kernel(a, b, True, diagonal)))(*xs)
        for tile in (1, 3):
            tiled = jax.jit(
                lambda a, b, tile=tile: tiled_kernel(
                    kf.transform, a, b, True, tile, diagonal_spatial=diagonal
                )
            )(*xs)
            assert_same(whole, tiled, f"{net} tile {tile} cross={xs[1] is not None}")


@pytest.mark.slow
def test_kernel_fn_tiles_large_spatial_kernels_itself(monkeypatch, x64):
    """Above the tile budget kernel_fn tiles on its own, with the same numbers."""
    x1, x2 = data()
    whole = {net: NETS[net]()[2](x1, x2) for net in NETS}
    whole_sym = {net: NETS[net]()[2](x1) for net in NETS}
    for net in NETS:
        kf = NETS[net]()[2]
        # tiles of 3 × 3 points
        monkeypatch.setattr(batching, "SPATIAL_TILE_BYTES", 9 * kf.pair_bytes(x1))
        assert batching.default_tile(7, 4, kf.pair_bytes(x1)) == 3
        assert_same(whole[net], kf(x1, x2), f"{net} auto-tiled cross")
        assert_same(whole_sym[net], kf(x1), f"{net} auto-tiled self")


@pytest.mark.slow
def test_batch_runs_spatial_networks_on_every_device(x64):
    """`batch` over the 4 forced host devices (tests/conftest.py) sums per-device buffers."""
    assert len(jax.devices()) == 4
    x1, x2 = data()
    for net in NETS:
        kf = NETS[net]()[2]
        for xs in ((x1,), (x1, x2)):
            assert_same(kf(*xs), batching.batch(kf, 2)(*xs), f"batch {net}")


def test_default_tile_bounds_the_tile_bytes():
    pair = 1024 * 1024 * 4  # 32×32 sites, full covariance, float32
    b = batching.default_tile(1000, 1000, pair)
    assert b * b * pair <= batching.SPATIAL_TILE_BYTES < (b + 1) ** 2 * pair
    assert batching.default_tile(2, 2, 1000) is None  # the whole kernel is one small tile
    assert batching.default_tile(4000, 4000) == 400  # fully connected: unchanged


def test_memory_check_counts_the_output_not_the_input_pairs(monkeypatch):
    """The refusal before allocating counts what is returned: a network with global pooling
    returns N1·N2 numbers whatever |S|² its tiles hold; one that ends in a Conv returns its
    full site covariance and is refused."""
    import theory.kernels.kernel as kernel

    monkeypatch.setattr(kernel, "available_memory", lambda device=None: 10**9)
    monkeypatch.setattr(kernel, "_MEMORY_CHECK_FLOOR", 0)
    x = np.ones((40, 32, 32, 1), np.float32)
    keeps_sites = stax.serial(
        stax.Conv(2, (3, 3), padding="SAME"), stax.Relu(), stax.Conv(1, (3, 3))
    )
    with pytest.raises(KernelMemoryError, match=r"x 810000 sites"):
        keeps_sites[2](x)
    pooled = stax.serial(stax.Conv(2, (3, 3), padding="SAME"), stax.Relu(), stax.GlobalAvgPool())
    assert pooled[2].output_pair_size(jnp.asarray(x)) == 1


PEAK_SCRIPT = r"""
import json, resource, sys
import jax, jax.numpy as jnp, numpy as np
from theory.kernels import stax
n, side = int(sys.argv[1]), int(sys.argv[2])
x = jnp.asarray(np.random.default_rng(0).standard_normal((n, side, side, 2)), jnp.float32)
_, _, kf = stax.serial(stax.Conv(8, (3, 3), padding="SAME"), stax.Relu(),
                       stax.Conv(8, (3, 3), padding="SAME"), stax.Relu(), stax.GlobalAvgPool())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
k = kf(x, get=("nngp", "ntk"))
jax.block_until_ready(k)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "after": after, "finite": bool(np.isfinite(k.ntk).all()),
                  "pair_bytes": kf.pair_bytes(x)}))
"""


def test_peak_memory_is_bounded_by_the_tile_not_by_n_squared():
    """48 images of 16×16 with global pooling: each untiled NNGP/NTK intermediate would hold
    48² · 256² float32 = 604 MB (and a ReLU layer holds several at once); tiled, the process's
    peak resident memory grows by far less than one of them (measured ~0.1 GB)."""
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, "48", "16"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    untiled_array = 48 * 48 * out["pair_bytes"]
    assert untiled_array > 600e6
    assert out["finite"]
    assert out["after"] - out["before"] < untiled_array / 2, out
