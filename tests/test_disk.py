"""Kernels beyond one device's memory: `batch(..., shard_output=True)` lays the output over
the devices (4 forced host devices here; two processes with `jax.distributed`), and
`kernel_to_disk` writes it tile by tile into a zarr store that survives ``kill -9``, refuses
stores made for anything else, and can be filled by several processes at once."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import zarr

from theory.kernels import batch, kernel_to_disk, stax
from theory.kernels import disk as disk_module

REPO = Path(__file__).resolve().parent.parent


def relu_net(depth=3):
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(16, 1.4, 0.1), stax.Relu()]
    return stax.serial(*layers, stax.Dense(1, 1.4, 0.1))[2]


def conv_net():
    return stax.serial(
        stax.Conv(4, (3, 3), padding="SAME", W_std=1.3, b_std=0.1), stax.Relu(),
        stax.Conv(4, (2, 2), padding="SAME"), stax.Erf(), stax.GlobalAvgPool(), stax.Dense(1),
    )[2]  # fmt: skip


def data(n, d=6, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


def snapshot(path: Path) -> dict:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in path.rglob("*") if p.is_file()}


def run_together(argvs: list[list[str]], env: dict) -> None:
    """Start one Python process per argument list at once; each must exit 0."""
    procs = [
        subprocess.Popen(
            [sys.executable, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for argv in argvs
    ]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out.decode()[-3000:]


# ------------------------------------------------------------------ the sharded result


@pytest.mark.parametrize("n1, n2", [(40, None), pytest.param(44, 21, marks=pytest.mark.slow)])
def test_sharded_output_holds_a_quarter_per_device(x64, n1, n2):
    """Four host devices: each holds one band of n1/4 rows and all columns (44/4 = 11 rows in
    tiles of 6: a ragged last tile), and the assembled arrays equal the one-device kernel to
    1e-13 relative (float64; each tile does its own input matmul)."""
    assert jax.device_count() == 4  # conftest forces 4 host devices
    kf = relu_net()
    x1 = data(n1)
    x2 = None if n2 is None else data(n2, seed=1)
    got = batch(kf, 8, shard_output=True)(x1, x2, ("nngp", "ntk"))
    want = kf(x1, x2, ("nngp", "ntk"))
    n2_ = n1 if n2 is None else n2
    for name, g, w in zip(("nngp", "ntk"), got, want):
        shards = g.addressable_shards
        assert len(shards) == 4 and len({s.device for s in shards}) == 4, name
        rows = [s.data.shape[0] for s in shards]
        assert rows == [n1 // 4] * 4, (name, rows)
        assert all(s.data.shape[1] == n2_ for s in shards)
        assert g.sharding.spec[0] == "tiles"
        err = np.max(np.abs(np.asarray(g) - np.asarray(w))) / np.max(np.abs(np.asarray(w)))
        assert err < 1e-13, (name, err)


def test_sharded_rows_must_divide_over_the_devices():
    with pytest.raises(ValueError, match="x1 has 37 points, not a multiple of the 4 devices"):
        batch(relu_net(), 8, shard_output=True)(data(37).astype(np.float32))


@pytest.mark.slow  # 10 s
def test_sharded_spatial_network(x64):
    """A pooled CNN (full spatial covariance) sharded over 4 devices equals its kernel_fn."""
    kf = conv_net()
    x = np.random.default_rng(2).standard_normal((12, 4, 4, 2))
    got = batch(kf, 2, shard_output=True)(x, None, "ntk")
    assert len(got.addressable_shards) == 4
    np.testing.assert_allclose(np.asarray(got), np.asarray(kf(x, None, "ntk")), rtol=1e-12)


_DISTRIBUTED = """
import sys
import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
sys.path.insert(0, sys.argv[4])
from test_disk import data, relu_net
from theory.kernels import batch
assert jax.device_count() == 4 and jax.local_device_count() == 2
out = batch(relu_net(), 8, shard_output=True)(data(40), None, "nngp")
rows = {}
for s in out.addressable_shards:
    r = s.index[0]
    rows[f"{r.start}_{r.stop}"] = np.asarray(s.data)
np.savez(sys.argv[3], **rows)
"""


@pytest.mark.slow  # two JAX processes: ~15 s
def test_two_processes_with_jax_distributed_make_the_same_kernel(tmp_path, x64):
    """Two local processes (coordinator on localhost, gloo collectives), two host devices
    each: each holds the rows of its own devices, and together they are the one-process
    kernel to 1e-13."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    script = tmp_path / "worker.py"
    script.write_text(_DISTRIBUTED)
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "PYTHONPATH": str(REPO),
    }
    run_together(
        [
            [str(script), f"localhost:{port}", str(i), str(tmp_path / f"rows{i}.npz"),
             str(REPO / "tests")]
            for i in range(2)
        ],
        env,
    )  # fmt: skip
    want = np.asarray(relu_net()(data(40), None, "nngp"))
    got = np.full_like(want, np.nan)
    for i in range(2):
        parts = np.load(tmp_path / f"rows{i}.npz")
        assert len(parts.files) == 2  # this process's two devices
        for key in parts.files:
            a, b = map(int, key.split("_"))
            got[a:b] = parts[key]
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13 * np.abs(want).max())


# ---------------------------------------------------------------------- to disk


@pytest.mark.parametrize("cross", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_disk_equals_the_in_memory_kernel(tmp_path, x64, cross):
    """40 (× 24) points in tiles of 8: every entry equals `batch(kernel_fn, 8)`'s bit for bit
    (the same tiles; a diagonal tile is stored as its mirror, as in memory: K(x_a, x_b) and
    K(x_b, x_a) are computed apart and differed by an ulp in 3.5 % of entries before), and
    kernel_fn's untiled result to 1e-13; every tile is marked done. (Resumed and
    multi-process stores equal one uninterrupted run bit for bit: the same compiled tile.)"""
    kf = relu_net()
    x1, x2 = data(40), (data(24, seed=1) if cross else None)
    g = kernel_to_disk(kf, x1, x2, tmp_path / "k.zarr", tile=8, progress=False)
    tiled = batch(kf, 8, jax.devices()[:1])(x1, x2, ("nngp", "ntk"))
    untiled = kf(x1, x2, ("nngp", "ntk"))
    for name, t, u in zip(("nngp", "ntk"), tiled, untiled):
        stored = g[name][:]
        assert stored.shape == t.shape and stored.dtype == np.float64
        np.testing.assert_array_equal(stored, np.asarray(t), err_msg=name)
        np.testing.assert_allclose(stored, np.asarray(u), rtol=1e-13, atol=0, err_msg=name)
    done = g["done"][:]
    want = np.triu(np.ones((5, 5))) if not cross else np.ones((5, 3))
    np.testing.assert_array_equal(done, want)
    assert g.attrs["tile"] == 8 and g.attrs["symmetric"] is (not cross)


@pytest.mark.slow  # 10 s
def test_disk_spatial_network_and_float32(tmp_path):
    """A pooled CNN in float32 (tiles of 5 images, ragged last tile) equals `batch(kernel_fn,
    5)` bit for bit and kernel_fn to float32 roundoff (2e-6 relative: each tile does its own
    input matmul), stored as float32."""
    kf = conv_net()
    x = np.random.default_rng(3).standard_normal((13, 4, 4, 2)).astype(np.float32)
    g = kernel_to_disk(kf, x, None, tmp_path / "c.zarr", get="ntk", tile=5, progress=False)
    assert set(g.array_keys()) == {"ntk", "done", "seconds"} and g["ntk"].dtype == np.float32
    want = np.asarray(kf(x, None, "ntk"))
    np.testing.assert_allclose(g["ntk"][:], want, rtol=2e-6, atol=2e-6 * np.abs(want).max())
    in_memory = batch(kf, 5, jax.devices()[:1])(x, None, "ntk")
    np.testing.assert_array_equal(g["ntk"][:], np.asarray(in_memory))


@pytest.mark.parametrize("cross", [False, True])
def test_store_tiles_computed_in_smaller_tiles(tmp_path, x64, cross):
    """A pooled CNN (full covariance) stored in tiles of 5 images, each computed in tiles of 2
    (``batch_size``; ragged both ways: 13 = 5 + 5 + 3, 5 = 2 + 2 + 1): equals kernel_fn's
    untiled kernel to 1e-13 relative in float64 (roundoff of a different summation order);
    a symmetric kernel's diagonal store tiles are computed as symmetric kernels, the rest as
    cross kernels. Every done tile has its compute seconds recorded, the others NaN."""
    kf = conv_net()
    rng = np.random.default_rng(5)
    x1 = rng.standard_normal((13, 4, 4, 2))
    x2 = rng.standard_normal((7, 4, 4, 2)) if cross else None
    g = kernel_to_disk(kf, x1, x2, tmp_path / "t.zarr", tile=5, batch_size=2, progress=False)
    assert g.attrs["tile"] == 5 and g.attrs["batch_size"] == 2
    for name, want in zip(("nngp", "ntk"), kf(x1, x2, ("nngp", "ntk"))):
        want = np.asarray(want)
        np.testing.assert_allclose(g[name][:], want, rtol=1e-13, atol=1e-13 * np.abs(want).max())
    done, seconds = g["done"][:].astype(bool), g["seconds"][:]
    assert done.sum() == 6  # 3 × 3 tiles' upper triangle, or 3 × 2 cross tiles
    assert np.all(seconds[done] > 0) and np.all(np.isnan(seconds[~done]))
    with pytest.raises(ValueError, match="batch_size must be"):
        kernel_to_disk(kf, x1, x2, tmp_path / "u.zarr", tile=5, batch_size=0)


_KILLED = """
import os, signal, sys
import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, sys.argv[2])
from test_disk import data, relu_net
import theory.kernels.disk as disk
calls = [0]
mirror = disk.mirror_block
def dying(block, full):  # called between a tile's block and its mirror: mid-tile
    calls[0] += 1
    if calls[0] == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
    return mirror(block, full)
disk.mirror_block = dying
disk.kernel_to_disk(relu_net(), data(40), None, sys.argv[1], tile=8, progress=False)
"""


def test_killed_run_resumes_to_the_same_kernel(tmp_path, x64, monkeypatch):
    """A subprocess is killed with SIGKILL in the middle of a tile (its NNGP block written, the
    mirror not, the tile not marked). The rerun computes exactly the tiles not marked done
    (counted) and the result equals an uninterrupted run bit for bit."""
    script = tmp_path / "killed.py"
    script.write_text(_KILLED)
    path = tmp_path / "k.zarr"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # two mirror calls per tile, NNGP then NTK (a diagonal tile's before its write, an
    # off-diagonal tile's after its block): call 7 is tile (0, 3)'s NNGP mirror, its NNGP
    # block written and nothing else, with (0, 0), (0, 1), (0, 2) done
    p = subprocess.run(
        [sys.executable, str(script), str(path), str(REPO / "tests"), "7"],
        env=env, capture_output=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == -9, p.stderr.decode()[-3000:]
    done = zarr.open_group(path, mode="r")["done"][:].astype(bool)
    n_done, n_tiles = int(done.sum()), 15  # 5 × 5 tiles, upper triangle
    assert n_done == 3  # (0, 0) … (0, 2); killed inside (0, 3)
    calls = []
    mirror = disk_module.mirror_block
    monkeypatch.setattr(disk_module, "mirror_block", lambda b, f: calls.append(1) or mirror(b, f))
    resumed = kernel_to_disk(relu_net(), data(40), None, path, tile=8, progress=False)
    todo = [(i, j) for i, j in zip(*np.triu_indices(5)) if not done[i, j]]
    assert len(calls) == 2 * len(todo)  # NNGP + NTK per tile computed
    monkeypatch.setattr(disk_module, "mirror_block", mirror)
    whole = kernel_to_disk(relu_net(), data(40), None, tmp_path / "w.zarr", tile=8, progress=False)
    for name in ("nngp", "ntk"):
        np.testing.assert_array_equal(resumed[name][:], whole[name][:], err_msg=name)
    assert resumed["done"][:].sum() == n_tiles
    assert not list(path.rglob("*.partial"))  # zarr's atomic writes leave no torn chunk


def test_mismatched_or_foreign_stores_are_refused_untouched(tmp_path, x64):
    """Another network, other inputs, another tile, other kernels or dtype, a directory that
    is not a store, and a corrupt store: each raises ValueError naming ``path`` and the
    difference, and no file changes."""
    kf, x = relu_net(), data(16)
    path = tmp_path / "k.zarr"
    kernel_to_disk(kf, x, None, path, tile=8, progress=False)
    before = snapshot(path)
    cases = [
        ((relu_net(depth=2), x, None), {}, "network"),
        ((kf, data(16, seed=5), None), {}, "inputs_sha256"),
        ((kf, x, None), {"tile": 4}, "tile"),
        ((kf, x, None), {"get": "nngp"}, "kernels"),
        ((kf, x.astype(np.float32), None), {}, "dtype"),
        ((kf, x, data(16, seed=6)), {}, "symmetric"),
    ]
    for args, kw, what in cases:
        with pytest.raises(ValueError, match=f"path: .*{what}"):
            kernel_to_disk(*args, path, progress=False, **kw)
    assert snapshot(path) == before

    other = tmp_path / "notes"
    other.mkdir()
    (other / "readme.txt").write_text("my notes")
    with pytest.raises(ValueError, match="path: .*not a readable kernel store"):
        kernel_to_disk(kf, x, None, other, progress=False)
    assert (other / "readme.txt").read_text() == "my notes"

    meta = path / "zarr.json"
    meta.write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    with pytest.raises(ValueError, match="path: .*not a kernel store written by"):
        kernel_to_disk(kf, x, None, path, tile=8, progress=False)
    meta.write_text("{ not json")
    with pytest.raises(ValueError, match="path: .*not a readable kernel store"):
        kernel_to_disk(kf, x, None, path, tile=8, progress=False)


def test_bad_arguments_name_themselves(tmp_path):
    kf, x = relu_net(), data(8).astype(np.float32)
    with pytest.raises(ValueError, match="get must be"):
        kernel_to_disk(kf, x, None, tmp_path / "a", get="cov1")
    with pytest.raises(ValueError, match="tile must be"):
        kernel_to_disk(kf, x, None, tmp_path / "a", tile=0)
    with pytest.raises(ValueError, match="worker must be"):
        kernel_to_disk(kf, x, None, tmp_path / "a", worker=(2, 2))
    with pytest.raises(TypeError, match="theory.kernels.stax"):
        kernel_to_disk(lambda a, b: a, x, None, tmp_path / "a")
    with pytest.raises(ValueError, match="x1 contains NaN"):
        kernel_to_disk(kf, np.full((4, 6), np.nan, np.float32), None, tmp_path / "a")
    assert not (tmp_path / "a").exists()


_WORKER = """
import sys
import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, sys.argv[2])
from test_disk import data, relu_net
from theory.kernels import kernel_to_disk
kernel_to_disk(relu_net(), data(40), None, sys.argv[1], tile=4, progress=False,
               worker=(int(sys.argv[3]), 2))
"""


@pytest.mark.slow  # two processes: ~10 s
def test_two_processes_fill_one_store(tmp_path, x64):
    """Two processes started together on one path (worker 0 and 1 of 2) create the store once
    and fill disjoint tiles; together they equal a one-process run bit for bit."""
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    path = tmp_path / "shared.zarr"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run_together([[str(script), str(path), str(REPO / "tests"), str(i)] for i in range(2)], env)
    shared = zarr.open_group(path, mode="r")
    assert shared["done"][:].sum() == 55  # 10 × 10 tiles of 4, upper triangle
    alone = kernel_to_disk(
        relu_net(), data(40), None, tmp_path / "alone.zarr", tile=4, progress=False
    )
    for name in ("nngp", "ntk"):
        np.testing.assert_array_equal(shared[name][:], alone[name][:], err_msg=name)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".creating")]


def test_progress_bar_counts_tiles(tmp_path, x64, monkeypatch, capsys):
    """The bar counts this process's tiles, starting from those already done."""
    monkeypatch.delenv("THEORY_NO_PROGRESS", raising=False)
    kf, x = relu_net(), data(24)
    kernel_to_disk(kf, x, None, tmp_path / "p.zarr", tile=8, progress=True)
    err = capsys.readouterr().err
    assert "6/6" in err and "tile" in err  # 3 × 3 tiles, upper triangle
    kernel_to_disk(kf, x, None, tmp_path / "p.zarr", tile=8, progress=True)
    assert "6/6" in capsys.readouterr().err  # resumed: all done, nothing computed
