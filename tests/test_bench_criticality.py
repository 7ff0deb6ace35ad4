"""benchmarks.criticality: the agreement check can fail, and a quick run whose numbers hang
together (rates, ratios, the statistical agreement of the three samplers)."""

from __future__ import annotations

import json
import math

import jax
import pytest

from benchmarks import criticality as bench


def _stats(ntk_means, se=0.1):
    return {
        m: {"ntk_mean": v, "ntk_mean_se": se, "last_m2_mean": 1.0, "last_m2_mean_se": 0.05}
        for m, v in zip(bench.METHODS, ntk_means, strict=True)
    }


def test_agreement_flags_a_sampler_that_is_off():
    """depth 3: exact E[Θ] = 4. A sampler 10 SE off fails, one 1 SE off passes."""
    ok = bench.agreement(_stats([4.0, 4.1, 3.9]), depth=3)
    assert ok["ntk_exact"] == pytest.approx(4.0) and ok["passed"]
    bad = bench.agreement(_stats([4.0, 4.0, 5.0]), depth=3)
    assert not bad["passed"]
    assert bad["z"]["vmapped_gaussian: ntk vs exact"] == pytest.approx(10.0)
    assert bad["z"]["ntk: loop_dense vs vmapped_gaussian"] == pytest.approx(
        1 / math.hypot(0.1, 0.1)
    )


@pytest.mark.slow  # 26 s; like the other benchmarks' quick runs
def test_quick_run(tmp_path, monkeypatch):
    """--quick (widths 16 and 32 at depth 2; about 10 s on 2 cores): positive rates, rates =
    networks / steady time, ratios = quotients of the rates, the agreement check passed, and
    the JSON written is the run's output."""
    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path)
    out = bench.main(["--quick", "--repeats", "1"])
    assert out["local_device_count"] == jax.local_device_count()
    assert list(out["sizes"]) == ["16x2", "32x2"] and out["headline"] == "16x2"
    for s in out["sizes"].values():
        rate = {}
        for m in bench.METHODS:
            r = s[m]
            assert r["networks"] == out["settings"]["networks"][m] >= 2
            assert r["steady_s"] > 0 and r["networks_per_s"] > 0
            assert r["networks_per_s"] == pytest.approx(r["networks"] / r["steady_s"])
            assert r["ntk_mean_se"] > 0
            rate[m] = r["networks_per_s"]
        q = s["ratios"]
        assert q["vmapped_dense_over_loop"] == pytest.approx(
            rate["vmapped_dense"] / rate["loop_dense"]
        )
        assert q["vmapped_gaussian_over_loop"] == pytest.approx(
            rate["vmapped_gaussian"] / rate["loop_dense"]
        )
        assert q["vmapped_gaussian_over_vmapped_dense"] == pytest.approx(
            rate["vmapped_gaussian"] / rate["vmapped_dense"]
        )
        a = s["agreement"]
        assert a["ntk_exact"] == pytest.approx(s["depth"] + 1)
        assert len(a["z"]) == 9 and a["passed"], a
        assert all(z <= a["tolerance_se"] for z in a["z"].values())
    assert out["agreement_passed"]
    saved = json.loads((tmp_path / "bench" / "criticality-quick.json").read_text())
    assert saved["sizes"]["16x2"]["ratios"] == pytest.approx(out["sizes"]["16x2"]["ratios"])
