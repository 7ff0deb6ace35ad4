"""benchmarks.predict: the script is the described workload, and a quick run (slow: it starts
a process per library, size and case) hangs together."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import predict as bench


def test_inputs_and_script_are_the_described_workload():
    """N points of dimension 64 with 10 outputs, M = N/4 test points, 20 times over 10…10⁶."""
    a = bench.inputs(40, 10, "mean", 0)
    assert a["x_train"].shape == (40, 64) and a["x_test"].shape == (10, 64)
    assert a["y_train"].shape == (40, 10) and a["t"].shape == (20,)
    assert a["t"][0] == pytest.approx(10) and a["t"][-1] == pytest.approx(1e6)
    import theory.kernels as nt

    scope = {"jax": jax, "jnp": jnp, "np": np}
    exec(bench.SCRIPT, scope)  # noqa: S102 - the benchmark's script
    call, spent = scope["make"](nt, a, False)
    out = call()
    assert set(out) == {"ntk_mean"} and out["ntk_mean"].shape == (20, 10, 10)
    assert spent[0] > 0  # the time inside kernel_fn was recorded


@pytest.mark.slow  # about a minute: a dozen fresh processes
def test_quick_run(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path)
    out = bench.main(["--quick", "--repeats", "1"])
    saved = json.loads((tmp_path / "bench" / "predict-quick.json").read_text())
    assert len(saved["rows"]) == 4
    for row in out["rows"]:
        ours = row["ours"]
        assert ours["steady_s"] > 0 and ours["kernel_s"] > 0
        assert ours["linear_algebra_s"] == pytest.approx(ours["steady_s"] - ours["kernel_s"])
        if "reference_skipped" not in row:
            assert row["agreement_passed"], row["error_vs_float64"]
