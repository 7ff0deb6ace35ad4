"""``stax.Index`` / ``stax.Slice``: neural-tangents' indexing layer, one script run by both
libraries, and the identities that define it.

Tolerance: float64. The two libraries apply the same selections to the same closed forms;
they differ only where neural-tangents evaluates arccos(q12/√(q11 q22)) on a point paired
with itself, which it computes as arccos(1 − δ), δ = O(ε): an O(√ε) error in the angle,
measured 7.9e-10 relative on a ReLU NTK here (ours sets the correlation to exactly 1 there;
see docs/conventions.md). RTOL = 1e-8 covers that with margin and fails any wrong selection
by orders of magnitude (a kernel of other sites or points differs at O(1)).
"""

import jax
import numpy as np
import pytest

from theory.kernels import stax

RTOL = 1e-8

SCRIPT = """
def run(nt, a):
    stax = nt.stax
    x1, x2 = a["x1"], a["x2"]
    out = {}
    cases = {
        "sites": (stax.Slice[:, 1:5:2, ::-1], True),
        "int_site": (stax.Slice[:, 2], True),
        "ellipsis": (stax.Slice[..., 1:4, :], True),
        "points": (stax.Slice[1:3], False),
        "points_and_sites": (stax.Slice[0:3, 2, 1:], True),
    }
    for name, (idx, pool) in cases.items():
        drop_axis = name in ("int_site", "points_and_sites")
        init_fn, apply_fn, kernel_fn = stax.serial(
            stax.Conv(8, (3, 3), padding="SAME"),
            stax.Relu(),
            stax.Index(idx),
            stax.Dense(8) if drop_axis else stax.Conv(8, (2, 2), padding="SAME"),
            stax.Relu(),
            stax.GlobalAvgPool() if pool else stax.Flatten(),
            stax.Dense(1),
        )
        shape, params = init_fn(jax.random.PRNGKey(0), x1.shape)
        out[name + "_shape"] = np.array(shape)
        out[name + "_apply_shape"] = np.array(apply_fn(params, x1).shape)
        for tag, b in (("cross", x2), ("self", None)):
            k = kernel_fn(x1, b, ("nngp", "ntk"))
            out[f"{name}_{tag}_nngp"], out[f"{name}_{tag}_ntk"] = k.nngp, k.ntk
    return out
"""


def _arrays():
    rng = np.random.default_rng(0)
    return {"x1": rng.standard_normal((4, 6, 5, 3)), "x2": rng.standard_normal((3, 6, 5, 3))}


@pytest.mark.slow  # about 15 s of compilations
def test_index_agrees_with_neural_tangents(x64, nt_script):
    """Site slices (strided, reversed), an int that removes a site axis, an ellipsis, a
    slice of points, points and sites together; spatial diagonal (Flatten) and full
    covariance (global pooling); NNGP and NTK, cross and self."""
    nt_script(SCRIPT, _arrays(), RTOL)


def test_index_of_points_is_the_kernel_of_those_points(x64):
    """Layers before Index act point by point, so selecting points mid-network gives the
    kernel of the selected inputs, exactly."""
    x1, x2 = _arrays()["x1"], _arrays()["x2"]
    head = [stax.Conv(4, (3, 3), padding="SAME"), stax.Relu()]
    tail = [stax.Conv(4, (2, 2), padding="SAME"), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1)]
    *_, with_index = stax.serial(*head, stax.Index(stax.Slice[1:4:2]), *tail)
    *_, plain = stax.serial(*head, *tail)
    for b, b_sel in ((None, None), (x2[:3], x2[1:4:2])):
        got = with_index(x1, b, ("nngp", "ntk"))
        want = plain(x1[1:4:2], b_sel, ("nngp", "ntk"))
        np.testing.assert_allclose(got.nngp, want.nngp, rtol=1e-14)
        np.testing.assert_allclose(got.ntk, want.ntk, rtol=1e-14)


def test_index_of_sites_selects_kernel_sites(x64):
    """On the spatial diagonal, Index keeps the kernel's entries at the selected sites: with
    Flatten after it, the kernel is the mean over those sites of the unindexed kernel."""
    x1 = _arrays()["x1"]
    head = [stax.Conv(4, (3, 3), padding="SAME"), stax.Relu()]
    *_, sel = stax.serial(*head, stax.Index(stax.Slice[:, ::2, 1]), stax.Flatten())
    *_, per_site = stax.serial(*head)
    k = per_site(x1, None, "nngp", diagonal_spatial=True)  # (n, n, H, W)
    np.testing.assert_allclose(
        sel(x1, None, "nngp"), np.asarray(k)[:, :, ::2, 1].mean((-1,)), rtol=1e-14
    )


def test_index_errors_name_the_argument():
    x = np.zeros((2, 4, 4, 3), np.float32)
    with pytest.raises(NotImplementedError, match="channel axis"):
        stax.Index(stax.Slice[..., 0])[2](x, None, "nngp")
    with pytest.raises(NotImplementedError, match="single point 1 on the batch axis"):
        stax.Index(stax.Slice[1])[2](x, None, "nngp")
    with pytest.raises(TypeError, match="idx entries"):
        stax.Index(stax.Slice[[0, 1]])
    with pytest.raises(IndexError, match="single ellipsis"):
        stax.Index(stax.Slice[..., 0, ...])
    with pytest.raises(IndexError, match="5 indices for 4-D"):
        stax.Index(stax.Slice[:, :, :, :, :])[2](x, None, "nngp")
    assert stax.Index(stax.Slice[:, 1:3])[0](jax.random.PRNGKey(0), x.shape)[0] == (2, 2, 4, 3)
