"""``stax.DotGeneral``, neural-tangents' constant linear map, beyond a matrix on a site axis:
a layer left at the default ``channel_axis`` (the kernel's layout decides, as neural-tangents
reads it from its kernel), a map per point (the batch axis among the batch dimensions), a
constant that adds site axes to fully connected inputs (kept in full unless
``diagonal_spatial=True``), and a sum over the points (the batch axis contracted, computed
with ``diagonal_batch=False``; the output has no point axis).

One script run by both libraries (float64: the same closed forms, RTOL = 1e-10, measured
≤ 1e-15), and the contraction against its definition by brute force: the outputs
y = Σ_i A_i x_i of the input layer are explicit, and their covariance over the channels is
the kernel, exactly (1e-12).
"""

import jax
import numpy as np
import pytest

from theory.kernels import stax

C = 10.0  # the mask constant of neural-tangents' own tests


def RTOL(name: str) -> float:
    return 1e-10


SCRIPT = """
def run(nt, a):
    stax = nt.stax
    out = {}
    C = 10.0

    def record(name, layer, x, y, **kw):
        init_fn, apply_fn, kernel_fn = layer
        for tag, b in (("cross", y), ("self", None)):
            k = kernel_fn(x, b, **kw)
            for g in ("nngp", "ntk", "cov1", "cov2"):
                v = getattr(k, g)
                if v is not None:  # neural-tangents keeps a parameterless net's NTK as 0.
                    out[f"{name}_{tag}_{g}"] = v if g != "ntk" else np.broadcast_to(
                        v, k.nngp.shape)
        _, params = init_fn(jax.random.PRNGKey(0), x.shape)
        out[name + "_apply"] = apply_fn(params, x)

    # points on axis 1 of (C, N) inputs, the layer's channel_axis left at -1: the call decides
    xt, yt = a["x"].T, a["y"].T
    record("default_channel", stax.DotGeneral(rhs=a["s"], batch_axis=1), xt, yt,
           batch_axis=1, channel_axis=0)
    # a constant that adds a site axis to (N, C) inputs: its full covariance, or the diagonal
    dn = (((), ()), ((), ()))
    for ds in (None, True, False):
        record(f"new_sites_{ds}", stax.DotGeneral(rhs=a["r"], dimension_numbers=dn),
               a["x"], a["y"], diagonal_spatial=ds)
    # a matrix per point (the batch axis among the batch dimensions) on a site axis
    xs, ys = a["xs"], a["ys"]  # (N, H, C)
    per_point = stax.serial(
        stax.Dense(8, 1.1, 0.1), stax.Relu(),
        stax.DotGeneral(lhs=a["p"], dimension_numbers=(((2,), (1,)), ((0,), (0,)))),
        stax.Dense(8), stax.Erf(), stax.GlobalAvgPool(), stax.Dense(1))
    record("per_point", per_point, xs, ys)
    # a sum over the points (batch axis contracted), after a hidden layer, masked inputs
    for ds in (True, False):
        for masked in (False, True):
            xm, ym = (a["xm"], a["ym"]) if masked else (xs, ys)
            net = stax.serial(
                stax.Dense(8, 1.3, 0.2), stax.Relu(),
                stax.DotGeneral(rhs=a["q"], dimension_numbers=(((0,), (1,)), ((), ()))))
            record(f"sum_points_{ds}_{masked}", net, xm, ym, diagonal_batch=False,
                   diagonal_spatial=ds, mask_constant=C if masked else None)
    return out
"""


def _arrays():
    rng = np.random.default_rng(3)
    xs, ys = rng.standard_normal((3, 4, 2)), rng.standard_normal((3, 4, 2))
    xm, ym = xs.copy(), ys.copy()
    xm[1] = C  # a whole point absent
    xm[0, 2] = C  # a site of a point
    ym[2, 0:2, 1] = C  # one channel of two sites
    return {
        "x": rng.standard_normal((3, 4)),
        "y": rng.standard_normal((2, 4)),
        "s": np.asarray(0.7),
        "r": rng.standard_normal((1, 3)),  # (N, C) · (1, 3) → (N, C, 3): a new site axis
        "xs": xs,
        "ys": ys,
        "xm": xm,
        "ym": ym,
        "p": rng.standard_normal((3, 5, 4)),  # one (5, 4) matrix per point
        "q": rng.standard_normal((2, 3)),  # sums the 3 points with 2 sets of weights
    }


@pytest.mark.slow  # about 20 s of compilations in each library
def test_dot_general_agrees_with_neural_tangents(x64, nt_script):
    """Every case above, NNGP, NTK and both per-point (or, summed over the points, full)
    blocks, cross and self, and the layers' outputs."""
    nt_script(SCRIPT, _arrays(), RTOL)


def test_sum_over_points_is_the_covariance_of_the_summed_outputs(x64):
    """For y = Σ_i q[k, i] x_i (the batch axis contracted), the NNGP of the layer on its
    inputs is the channel covariance of y(x1) with y(x2) over every pair of sites (H, k):
    Σ_c y1[h, c, k] y2[g, c, l] / C. cov1/cov2 are the same of y(x1), y(x2) with themselves;
    with diagonal_spatial=True the (h = g, k = l) diagonal. Brute force in float64."""
    a = _arrays()
    x1, x2, q = a["xs"], a["ys"], a["q"]
    *_, kf = stax.DotGeneral(rhs=q.T, dimension_numbers=(((0,), (0,)), ((), ())))
    y1, y2 = np.einsum("nhc,nk->hck", x1, q.T), np.einsum("nhc,nk->hck", x2, q.T)

    def cov(u, v):
        return np.einsum("hck,gcl->hgkl", u, v) / u.shape[1]  # (H, H', K, K')

    k = kf(x1, x2, diagonal_batch=False, diagonal_spatial=False)
    np.testing.assert_allclose(k.nngp, cov(y1, y2), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(k.cov1, cov(y1, y1), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(k.cov2, cov(y2, y2), rtol=1e-12, atol=1e-14)
    diag = kf(x1, x2, "nngp", diagonal_batch=False, diagonal_spatial=True)
    np.testing.assert_allclose(diag, np.einsum("hhkk->hk", cov(y1, y2)), rtol=1e-12)
    alone = kf(x1, None, ("nngp", "cov2"), diagonal_batch=False, diagonal_spatial=False)
    np.testing.assert_allclose(alone.nngp, cov(y1, y1), rtol=1e-12, atol=1e-14)
    assert alone.cov2 is None
    init_fn, apply_fn, _ = stax.DotGeneral(rhs=q.T, dimension_numbers=(((0,), (0,)), ((), ())))
    shape, params = init_fn(jax.random.PRNGKey(0), x1.shape)
    assert shape == y1.shape
    np.testing.assert_allclose(apply_fn(params, x1), y1, rtol=1e-12)


def test_sum_over_points_errors_name_the_rule():
    x = np.ones((3, 4, 2))
    q = np.ones((2, 3))
    layer = stax.DotGeneral(rhs=q, dimension_numbers=(((0,), (1,)), ((), ())))
    with pytest.raises(ValueError, match="needs diagonal_batch=False"):
        layer[2](x, None, "nngp")
    with pytest.raises(ValueError, match="no layer may follow it"):
        stax.serial(layer, stax.Relu())
    with pytest.raises(ValueError, match="get must be"):
        layer[2](x, None, "shape1", diagonal_batch=False)
