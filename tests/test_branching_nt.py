"""Several inputs, several outputs and `FanInConcat`: neural-tangents' branching API.

One script, written against neural-tangents' public API, is run by both libraries
(`compare_nt_script`, reference/nt_script.py): `FanInConcat` along every axis (batch, sites,
channels) of fully connected and convolutional networks, with the spatial diagonal (Flatten)
and the full covariance (global pooling); ``kernel_fn`` on a nested tuple of inputs; a network
with two outputs; a readout applied to a nested tuple of `Kernel`s; `batch` of jitted kernel
functions whose inputs are trees of arrays or of `Kernel`s.

Tolerance 1e-7 of the largest entry, float64: with x2 = None the ReLU NTK's self-pairs
differ by up to 8e-9 relative (neural-tangents takes arccos of a clipped ratio whose roundoff
is ~√ε ≈ 1e-8 there; ours sets the self-correlation to exactly 1); elsewhere they agree to
1e-15. The independent checks below need no oracle: the block structure that the
concatenation rules imply, computed from each branch alone.
"""

import numpy as np
import pytest

from theory.kernels import batch as ours_batch
from theory.kernels import stax

RTOL = 1e-7

SCRIPT = """
def run(nt, a, spatial=False):
    stax = nt.stax
    out = {}

    def fc(w):
        return stax.Dense(w, 1.3, 0.2)

    def conv(w):
        return stax.Conv(w, (3, 2), padding="SAME", W_std=1.3, b_std=0.2)

    cases = [("fc", a["x1"], a["x2"], fc, (0, 1), ("id",))]
    if spatial:
        cases = [("conv", a["s1"], a["s2"], conv, (0, 1, 2, -1), ("flatten", "gap"))]
    for name, x1, x2, layer, axes, readouts in cases:
        for axis in axes:
            on_channels = axis == -1 or (name == "fc" and axis == 1)
            for readout in readouts:
                branches = stax.parallel(
                    stax.serial(stax.Relu(), layer(4)),
                    stax.serial(stax.Erf(), layer(3), stax.Relu(), layer(5 if on_channels else 4)),
                )
                after = [layer(6), stax.Relu()] if on_channels else [stax.Relu()]
                ro = {"id": stax.Identity(), "flatten": stax.Flatten(), "gap": stax.GlobalAvgPool()}
                *_, kernel_fn = stax.serial(
                    layer(5), stax.FanOut(2), branches, stax.FanInConcat(axis), *after,
                    ro[readout], stax.Dense(2, 1.1, 0.3),
                )
                for same in (0, 1):
                    k = kernel_fn(x1, None if same else x2, ("nngp", "ntk"))
                    key = f"concat_{name}_{axis}_{readout}_{same}"
                    out[key + "_nngp"], out[key + "_ntk"] = k.nngp, k.ntk
    if spatial:
        return out

    # several inputs (a nested tuple), one output each, then a readout applied to the Kernels
    def net(n):
        return stax.parallel(
            stax.Dense(n, 1.2, 0.1),
            stax.parallel(stax.Dense(n + 1), stax.serial(stax.Dense(n + 2), stax.Relu())),
        )

    m1 = (a["x1"], (a["y1"], a["z1"]))
    m2 = (a["x2"], (a["y2"], a["z2"]))
    for same in (0, 1):
        ks = net(8)[2](m1, None if same else m2)
        for i, arr in enumerate(jax.tree_util.tree_leaves(net(1)[2](ks, get="ntk"))):
            out[f"multi_in_{same}_{i}"] = arr
        # `batch` of jitted kernel functions: several inputs in, Kernels out, and a batched
        # readout applied to those Kernels (blocks of one point: neural-tangents needs a
        # batch size that divides both point counts, 3 and 2)
        readin = nt.batch(jax.jit(net(8)[2]), 1)
        readout = nt.batch(jax.jit(lambda k: net(1)[2](k, get="ntk")), 1)
        ks = readout(readin(m1, None if same else m2))
        for i, arr in enumerate(jax.tree_util.tree_leaves(ks)):
            out[f"batched_{same}_{i}"] = arr
        # several inputs closed by fan-in layers into one output
        closed = stax.serial(
            stax.parallel(fc(5), stax.parallel(stax.Dense(5, 1.5), stax.Dense(5, 0.7, 0.2))),
            stax.parallel(stax.Identity(), stax.FanInSum()),
            stax.FanInConcat(),
            fc(6), stax.Relu(), stax.Dense(2),
        )
        k = closed[2](
            (a["x1"], (a["y1"], a["y1"] * 0.5)),
            None if same else (a["x2"], (a["y2"], a["y2"])),
            ("nngp", "ntk"),
        )
        out[f"closed_{same}_nngp"], out[f"closed_{same}_ntk"] = k.nngp, k.ntk
        # one input, two outputs
        two = stax.serial(
            fc(8), stax.Relu(), stax.FanOut(2),
            stax.parallel(stax.Dense(1), stax.serial(fc(8), stax.Erf(), stax.Dense(1))),
        )
        for i, arr in enumerate(two[2](a["x1"], None if same else a["x2"], "nngp")):
            out[f"multi_out_{same}_{i}"] = arr
    return out
"""


def _arrays():
    rng = np.random.default_rng(5)
    return {
        "x1": rng.standard_normal((3, 4)),
        "x2": rng.standard_normal((2, 4)),
        "y1": rng.standard_normal((3, 2)),
        "y2": rng.standard_normal((2, 2)),
        "z1": rng.standard_normal((3, 5)),
        "z2": rng.standard_normal((2, 5)),
        "s1": rng.standard_normal((3, 4, 3, 2)),
        "s2": rng.standard_normal((2, 4, 3, 2)),
    }


SPATIAL = (
    SCRIPT
    + """
_run = run


def run(nt, a):
    return _run(nt, a, spatial=True)
"""
)


@pytest.mark.slow  # 15-35 s: 20 networks, a compilation each; default: the identities below
def test_branching_script_agrees_with_neural_tangents(x64, nt_script):
    nt_script(SCRIPT, _arrays(), RTOL)


@pytest.mark.slow  # 16 networks, a compilation each (about 30 s)
def test_concatenation_of_convolutions_agrees_with_neural_tangents(x64, nt_script):
    """Along the batch, both site axes and the channels; Flatten (diagonal) and global
    pooling (full covariance)."""
    nt_script(SPATIAL, _arrays(), RTOL)


def _branches(layer):
    return [
        stax.serial(stax.Relu(), layer(4)),
        stax.serial(stax.Erf(), layer(3), stax.Relu(), layer(4)),
    ]


@pytest.mark.slow  # 10-13 s each (convolutions compile); default: the FC check below
@pytest.mark.parametrize("full", [False, True])
def test_concatenation_is_block_diagonal_off_the_channels(x64, full):
    """Branches are independent mean-zero Gaussians, so concatenating along the batch or a
    site axis gives a block-diagonal covariance whose diagonal blocks are each branch's own
    kernel; with the full spatial covariance the cross-branch site pairs are 0."""
    a = _arrays()
    conv = lambda w: stax.Conv(w, (3, 2), padding="SAME", W_std=1.3, b_std=0.2)  # noqa: E731
    stem = conv(5)
    # GlobalAvgPool needs the full spatial covariance; without a readout the output is the
    # site covariance itself
    readout = [stax.GlobalAvgPool()] if full else []
    x1, x2 = a["s1"], a["s2"]
    # each branch alone (the same layers, so the same kernel as inside the network)
    alone = [stax.serial(stem, b, *readout)[2] for b in _branches(conv)]
    # batch axis: (n1 + n1, n2 + n2) blocks
    both = stax.serial(
        stem, stax.FanOut(2), stax.parallel(*_branches(conv)), stax.FanInConcat(0), *readout
    )[2]
    k = both(x1, x2, ("nngp", "ntk"))
    k0, k1 = (f(x1, x2, ("nngp", "ntk")) for f in alone)
    for g in ("nngp", "ntk"):
        big = np.asarray(getattr(k, g))
        b0, b1 = np.asarray(getattr(k0, g)), np.asarray(getattr(k1, g))
        n1, n2 = x1.shape[0], x2.shape[0]
        np.testing.assert_allclose(big[:n1, :n2], b0, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(big[n1:, n2:], b1, rtol=1e-13, atol=1e-13)
        assert np.all(big[:n1, n2:] == 0) and np.all(big[n1:, :n2] == 0)
    # site axis 1: the sites of branch 0, then branch 1
    both = stax.serial(
        stem, stax.FanOut(2), stax.parallel(*_branches(conv)), stax.FanInConcat(1), *readout
    )[2]
    alone = [stax.serial(stem, b, *readout)[2] for b in _branches(conv)]
    k = np.asarray(both(x1, x2, "nngp"))
    b0, b1 = (np.asarray(f(x1, x2, "nngp")) for f in alone)
    if full:
        # global pooling averages all (2S)² site pairs of the S + S sites; the S² pairs across
        # branches are 0, so the pooled kernel is (S² G0 + S² G1) / (2S)² = (G0 + G1) / 4
        np.testing.assert_allclose(k, (b0 + b1) / 4, rtol=1e-13)
    else:  # a spatial output: the site covariance (n1, n2, H, H', W, W'), block-diagonal in H
        h = x1.shape[1]
        np.testing.assert_allclose(k[:, :, :h, :h], b0, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(k[:, :, h:, h:], b1, rtol=1e-13, atol=1e-13)
        assert np.all(k[:, :, :h, h:] == 0) and np.all(k[:, :, h:, :h] == 0)


def test_concatenation_on_the_batch_stacks_independent_branches(x64):
    """Fully connected, axis 0: K is block-diagonal with each branch's own kernel."""
    a = _arrays()
    dense = lambda w: stax.Dense(w, 1.3, 0.2)  # noqa: E731
    branches = [stax.serial(stax.Relu(), dense(3)), stax.serial(stax.Erf(), dense(3))]
    both = stax.serial(dense(4), stax.FanOut(2), stax.parallel(*branches), stax.FanInConcat(0))
    k = np.asarray(both[2](a["x1"], a["x2"], "ntk"))
    n1, n2 = len(a["x1"]), len(a["x2"])
    for i, b in enumerate(branches):
        alone = np.asarray(stax.serial(dense(4), b)[2](a["x1"], a["x2"], "ntk"))
        block = k[i * n1 : (i + 1) * n1, i * n2 : (i + 1) * n2]
        np.testing.assert_allclose(block, alone, rtol=1e-14)
    assert np.all(k[:n1, n2:] == 0) and np.all(k[n1:, :n2] == 0)
    # the same under batch: the network is computed whole (its points are not the inputs')
    np.testing.assert_array_equal(ours_batch(both[2], 1)(a["x1"], a["x2"], "ntk"), k)


def test_concatenation_on_channels_is_the_width_weighted_mean(x64):
    """A neuron after the concatenation sums over all c0 + c1 channels: K = (c0 K0 + c1 K1) /
    (c0 + c1); the same branch twice gives its own kernel."""
    a = _arrays()
    dense = lambda w: stax.Dense(w, 1.3, 0.2)  # noqa: E731
    b0 = stax.serial(stax.Relu(), dense(3))
    b1 = stax.serial(stax.Erf(), dense(5))
    k = stax.serial(dense(4), stax.FanOut(2), stax.parallel(b0, b1), stax.FanInConcat(-1))[2](
        a["x1"], a["x2"], "ntk"
    )
    k0 = stax.serial(dense(4), b0)[2](a["x1"], a["x2"], "ntk")
    k1 = stax.serial(dense(4), b1)[2](a["x1"], a["x2"], "ntk")
    np.testing.assert_allclose(k, (3 * k0 + 5 * k1) / 8, rtol=1e-14)


def test_bad_branches_are_refused_naming_the_problem():
    x = np.ones((2, 3), np.float32)
    mismatched = stax.serial(
        stax.Dense(4), stax.FanOut(2), stax.parallel(stax.Dense(3), stax.Dense(5)),
        stax.FanInConcat(0),
    )  # fmt: skip
    with pytest.raises(ValueError, match="agree off the concatenated axis"):
        mismatched[2](x)
    not_gaussian = stax.serial(stax.Dense(4), stax.Relu(), stax.FanOut(2), stax.FanInConcat(0))
    with pytest.raises(NotImplementedError, match="mean-zero Gaussian"):
        not_gaussian[2](x)
    with pytest.raises(ValueError, match="out of range"):
        stax.serial(stax.Dense(4), stax.FanOut(2), stax.FanInConcat(3))[2](x)
    with pytest.raises(TypeError, match="axis"):
        stax.FanInConcat(1.0)
    with pytest.raises(ValueError, match="same structure"):
        stax.parallel(stax.Dense(1), stax.Dense(1))[2]((x, x), (x,))


def test_a_tree_of_nones_means_each_input_against_itself(x64):
    """neural-tangents passes x2 = (None, None) for two inputs compared with themselves."""
    a = _arrays()
    kf = stax.parallel(stax.Dense(3), stax.serial(stax.Dense(4), stax.Relu()))[2]
    x = (a["x1"], a["y1"])
    want = kf(x, None, "nngp")
    for have in (kf(x, (None, None), "nngp"), ours_batch(kf, 2)(x, (None, None), "nngp")):
        for w, h in zip(want, have):
            np.testing.assert_array_equal(np.asarray(h), np.asarray(w))
