"""benchmarks.attention: the slope fit, and a quick run whose numbers hang together."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import attention as bench


def test_slope_recovers_a_power_law():
    ns = np.array([256, 512, 1024, 2048])
    assert bench._slope(ns, 3e-9 * ns**3.0) == pytest.approx(3.0)
    assert bench._slope(ns, 1e-4 * ns) == pytest.approx(1.0)


@pytest.mark.slow
def test_quick_run():
    """--quick: exact up to n = 1024, poly up to 4096, the 'big' size 2048 on 64 queries; the
    poly output is checked against exact inside `run` (it raises beyond the guarantee)."""
    out = bench.run(bench.Args(quick=True, repeats=1))
    assert out["big"]["n"] == 2048 and out["big"]["poly_rank"] == 3003
    assert out["big"]["poly_max_error_on_timed_queries"] <= out["big"]["poly_error_guarantee"]
    assert out["big"]["ratio_exact_over_poly"] > 1
    assert 0 < out["exact_fraction_of_matmul"] < 1.5
