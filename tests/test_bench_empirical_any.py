"""benchmarks.empirical_any: the models are the ones described, and a quick run (slow: it
starts one process per implementation, neural-tangents' among them) hangs together."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from benchmarks import empirical_any as bench


def test_models_are_the_described_ones():
    """MLP: 100 → 1024 → 1024 → 1024 → 1 (2.2 M parameters); CNN: 16×16×3 → 10 outputs through
    two convolutions and a 2048 → 128 dense layer (268 k parameters)."""
    sizes = {}
    for name, (source, point) in bench.models(False).items():
        apply_fn, template = bench.build(source)
        params = jax.tree_util.tree_map(np.asarray, template())
        sizes[name] = sum(a.size for a in jax.tree_util.tree_leaves(params))
        out = jax.eval_shape(apply_fn, params, jax.ShapeDtypeStruct((2, *point), np.float32))
        assert out.shape == ((2, 1) if name == "mlp" else (2, 10))
    assert sizes["mlp"] == 100 * 1024 + 2 * 1024 * 1024 + 1024 + 3 * 1024 + 1
    assert 2.2e6 < sizes["mlp"] < 2.3e6 and 2.6e5 < sizes["cnn"] < 2.7e5


@pytest.mark.slow  # about a minute: eight fresh processes
def test_quick_run(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path)
    out = bench.main(["--quick", "--repeats", "1"])
    saved = json.loads((tmp_path / "bench" / "empirical_any-quick.json").read_text())
    assert set(saved["models"]) == {"mlp", "cnn"}
    for row in out["models"].values():
        ours = row["ours"]["auto"]
        assert ours["steady_s"] > 0 and ours["peak_rss_bytes"] > 0
        assert ours["auto_chooses"] in ("jacobian", "ntvp", "structured")
        if "reference_skipped" not in row:
            assert row["agreement_passed"], row["relative_difference"]
            best = row["neural_tangents"][str(row["nt_best"])]
            assert row["speedup"] == pytest.approx(best["steady_s"] / ours["steady_s"])
