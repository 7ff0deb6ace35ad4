"""benchmarks.spatial: the networks are the ones described, the agreement check can fail, and
a quick run (slow: it compiles three CNN kernels and runs neural-tangents) hangs together."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from benchmarks import spatial as bench


def test_myrtle5_pools_32x32_down_to_one_site():
    """Myrtle-5: 4 convolutions (2 + 1 + 1), five 2×2 pools (32 → 1), a Dense of 10."""
    spec = bench.myrtle5_spec()
    assert sum(name == "Conv" for name, _ in spec) == 4
    assert sum(name == "AvgPool" for name, _ in spec) == 5
    from theory.kernels import stax

    init_fn = stax.serial(
        *[getattr(stax, n)(**{k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()})
          for n, kw in spec]
    )[0]  # fmt: skip
    shape, _ = init_fn(jax.random.key(0), (2, 32, 32, 3))  # width 1: tiny parameters
    assert tuple(shape) == (2, 10)


def test_headline_network_has_four_convs_two_pools_and_gap():
    spec = bench.myrtle_spec()
    names = [n for n, _ in spec]
    assert names.count("Conv") == 4 and names.count("AvgPool") == 2
    assert names[-2:] == ["GlobalAvgPool", "Dense"]
    assert all(kw["out_chan"] == 64 for n, kw in spec if n == "Conv")


def test_no_reference_flag_skips_neural_tangents():
    args = bench.Args(no_reference=True)
    assert bench.reference_available(args) == "--no-reference"


@pytest.mark.slow
def test_quick_run(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path)
    out = bench.main(["--quick", "--repeats", "1"])
    saved = json.loads((tmp_path / "bench" / "spatial-quick.json").read_text())
    assert saved["headline"]["ours"]["steady_s"] == pytest.approx(
        out["headline"]["ours"]["steady_s"]
    )
    head = out["headline"]
    if "neural_tangents" in head:
        assert head["agreement_passed"]
        assert head["speedup"] == pytest.approx(
            head["neural_tangents"]["steady_s"] / head["ours"]["steady_s"]
        )
    rows = out["scaling"]["ours"]
    # N = 2, 3 in memory, then N = 3 again through the on-disk store
    assert [(r["n"], r.get("on_disk", False)) for r in rows] == [(2, False), (3, False), (3, True)]
    assert all(r["finite"] for r in rows)
    assert all(np.isfinite(r["wall_s"]) and r["peak_rss_bytes"] > 0 for r in rows)
    (disk,) = out["scaling"]["on_disk"]  # N = 3 in store tiles of 2: 3 tiles, all done
    assert disk["complete"] and disk["tiles"] == 3 and disk["finite"]
    assert disk["spot_check_relative_difference"] < 1e-5  # float32 roundoff, 4 layers
    assert (
        tmp_path / "bench" / "spatial_scaling" / "ours_disk_n3_side32_seed0_quick.zarr"
    ).is_dir()
    assert (tmp_path / "bench" / "spatial-quick_scaling.png").exists()
