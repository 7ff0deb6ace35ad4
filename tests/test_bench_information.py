"""benchmarks.information: the re-implemented original binning agrees with ours (an
independent route for `binned_mi`), and the issue's exact values come out of it too."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.information import original_binned_mi
from theory.information import binned_mi, tishby_dataset, tishby_edges


@pytest.mark.parametrize("layer", ["input", "ones", "bit", "tanh"])
def test_original_binning_equals_ours(layer):
    x, y = tishby_dataset()
    x = x.astype(np.float32)
    t = {
        "input": x,
        "ones": x.sum(1, keepdims=True) / 12,  # within [−1, 1], one bin per count
        "bit": x[:, :1],
        "tanh": np.tanh(2 * np.random.default_rng(0).standard_normal((4096, 6))),
    }[layer].astype(np.float32)
    edges = np.asarray(tishby_edges())
    orig = original_binned_mi(t, y, edges)
    ours = binned_mi(t, y, edges)
    np.testing.assert_allclose([float(ours[0]), float(ours[1])], orig, atol=1e-9)
    exact = {"input": (12, 0.999157), "ones": (2.838529, 0.627641), "bit": (1, 0.033906)}
    if layer in exact:
        np.testing.assert_allclose(orig, exact[layer], atol=1e-6)
