"""Layers with their points on another axis than 0 (neural-tangents' ``batch_axis``):
``Dense``, ``GlobalAvgPool``/``GlobalSumPool``, ``Flatten(batch_axis, batch_axis_out)``,
``Index``, convolutions whose ``dimension_numbers`` put N anywhere, ``AvgPool``/``SumPool``,
``LayerNorm``, ``GlobalSelfAttention`` and ``Aggregate``. One script run by both libraries,
and the identity that defines the feature.

Kernels are computed with the points moved to axis 0, so where the points are cannot change
a kernel: the test against transposed inputs is exact (1e-14). Against neural-tangents in
float64: the same closed forms in the same order, RTOL = 1e-10 (measured ≤ 5e-16).
"""

import jax
import numpy as np
import pytest

from theory.kernels import stax


def RTOL(name: str) -> float:
    return 1e-8 if name.endswith("_self") else 1e-10


SCRIPT = """
def run(nt, a):
    stax = nt.stax
    out = {}
    key = jax.random.PRNGKey(0)

    def record(name, layers, x, y):
        init_fn, apply_fn, kernel_fn = stax.serial(*layers)
        k = kernel_fn(x, y, ("nngp", "ntk"))
        out[name + "_nngp"], out[name + "_ntk"] = k.nngp, k.ntk
        out[name + "_self"] = kernel_fn(x, None, "ntk")
        shape, params = init_fn(key, x.shape)
        out[name + "_shape"] = np.array(shape)
        out[name + "_apply"] = apply_fn(params, x)

    x, y = a["x"], a["y"]  # (features, points)
    record("fc", [stax.Dense(16, 1.3, 0.1, batch_axis=1, channel_axis=0), stax.Relu(),
                  stax.Dense(4, 1.1, 0.2, batch_axis=1, channel_axis=0)], x, y)
    xi, yi = a["xi"], a["yi"]  # (H, N, W, C)
    record("gap", [stax.Dense(16, batch_axis=1, channel_axis=-1), stax.Relu(),
                   stax.GlobalAvgPool(batch_axis=1, channel_axis=-1),
                   stax.Dense(2, batch_axis=0, channel_axis=1)], xi, yi)
    xj, yj = jnp.moveaxis(xi, (1, 3), (2, 0)), jnp.moveaxis(yi, (1, 3), (2, 0))  # (C, H, N, W)
    record("gsp", [stax.Dense(16, batch_axis=2, channel_axis=0), stax.Erf(),
                   stax.GlobalSumPool(batch_axis=2, channel_axis=0),
                   stax.Dense(2, batch_axis=1, channel_axis=0)], xj, yj)
    record("flatten", [stax.Dense(16, batch_axis=1, channel_axis=-1), stax.Relu(),
                       stax.Flatten(batch_axis=1, batch_axis_out=1),
                       stax.Dense(2, batch_axis=1, channel_axis=0)], xi, yi)
    record("index", [stax.Dense(16, batch_axis=1, channel_axis=-1), stax.Relu(),
                     stax.Index(stax.Slice[1:3, :, ::-1], batch_axis=1),
                     stax.Dense(8, batch_axis=1), stax.Relu(),
                     stax.GlobalAvgPool(batch_axis=1), stax.Dense(1)], xi, yi)
    return out
"""


def _arrays():
    rng = np.random.default_rng(0)
    return {
        "x": rng.standard_normal((7, 5)),
        "y": rng.standard_normal((7, 3)),
        "xi": rng.standard_normal((4, 5, 3, 2)),
        "yi": rng.standard_normal((4, 3, 3, 2)),
    }


@pytest.mark.slow  # about 15 s of compilations
def test_batch_axes_agree_with_neural_tangents(x64, nt_script):
    """Kernels, output shapes and outputs of networks with their points on axes 1 and 2,
    channels before or after them, pooled, flattened to (−1, n) and indexed."""
    nt_script(SCRIPT, _arrays(), RTOL)


def test_where_the_points_are_does_not_change_the_kernel(x64):
    """A network reading its points from axis 1 has exactly the kernel of the same network on
    the transposed inputs with its points on axis 0; apply_fn moves the axes back."""
    a = _arrays()
    xi, yi = a["xi"], a["yi"]  # (H, N, W, C)
    on_1 = stax.serial(
        stax.Dense(8, batch_axis=1), stax.Relu(), stax.GlobalAvgPool(batch_axis=1), stax.Dense(1)
    )
    on_0 = stax.serial(stax.Dense(8), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1))
    got = on_1[2](xi, yi, ("nngp", "ntk"))
    want = on_0[2](np.moveaxis(xi, 1, 0), np.moveaxis(yi, 1, 0), ("nngp", "ntk"))
    np.testing.assert_allclose(got.nngp, want.nngp, rtol=1e-14)
    np.testing.assert_allclose(got.ntk, want.ntk, rtol=1e-14)
    shape, p = on_1[0](jax.random.PRNGKey(0), xi.shape)
    assert shape == (5, 1) and on_1[1](p, xi).shape == (5, 1)
    flat = stax.Flatten(batch_axis=1, batch_axis_out=1)
    assert flat[1]((), xi).shape == (24, 5)
    np.testing.assert_array_equal(flat[1]((), xi)[:, 2], xi[:, 2].reshape(-1))


def test_batch_axis_errors_name_the_argument():
    x = np.zeros((3, 4, 2), np.float32)
    with pytest.raises(ValueError, match="channel_axis=1 is the batch axis"):
        stax.Dense(2, batch_axis=1, channel_axis=1)[2](x, None, "nngp")
    with pytest.raises(ValueError, match="batch_axis=5 is out of range"):
        stax.GlobalAvgPool(batch_axis=5)[2](x, None, "nngp")
    with pytest.raises(NotImplementedError, match="batch: .*batch_axis=1"):
        from theory.kernels import batch

        batch(stax.Dense(2, batch_axis=1)[2], 2)
    with pytest.raises(NotImplementedError, match="kernel_to_disk: .*batch_axis=1"):
        from theory.kernels import kernel_to_disk

        kernel_to_disk(stax.Dense(2, batch_axis=1)[2], x, None, "/nonexistent/never.zarr")
    with pytest.raises(ValueError, match="batch_axis=1 and channel_axis=1 are the same axis"):
        stax.Aggregate(batch_axis=1, channel_axis=1)[1]((), x, pattern=np.zeros((4, 3, 3)))
    with pytest.raises(ValueError, match=r"aggregate_axis 1 must name .* not the batch axis 1"):
        stax.Aggregate(1, batch_axis=1)[1]((), x, pattern=np.zeros((4, 3, 3)))


def test_layout_keywords_at_call_time(x64):
    """neural-tangents' kernel_fn(..., batch_axis=, channel_axis=): where no layer names an
    axis they set the inputs' layout (the kernel of the moved inputs, exactly); where a layer
    does they must agree with it."""
    x = np.moveaxis(_arrays()["xi"], 1, 0)  # (N, H, W, C)
    *_, net = stax.serial(stax.Dense(4), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1))
    got = net(x, None, "nngp", batch_axis=0, channel_axis=-1)  # agreeing: the same kernel
    np.testing.assert_allclose(got, net(x, None, "nngp"), rtol=1e-14)
    *_, flat = stax.serial(stax.Flatten())  # names no channel axis
    xc, xb = np.moveaxis(x, -1, 1), np.moveaxis(x, 0, 2)  # (N, C, H, W), (H, W, N, C)
    want = flat(x, None, "nngp")
    np.testing.assert_allclose(flat(xc, None, "nngp", channel_axis=1), want, rtol=1e-14)
    np.testing.assert_allclose(flat(xb, None, "nngp", batch_axis=2), want, rtol=1e-14)
    with pytest.raises(ValueError, match="channel_axis=1 given, but the network's layers take"):
        net(x, None, "nngp", channel_axis=1)
    *_, on_1 = stax.serial(stax.Dense(4, batch_axis=1), stax.GlobalAvgPool(batch_axis=1))
    with pytest.raises(ValueError, match="batch_axis=0 given, but the network's layers take"):
        on_1(x, None, "nngp", batch_axis=0)


SPATIAL_SCRIPT = """
def run(nt, a):
    stax = nt.stax
    x, y = a["x"], a["y"]  # (H, N, W, C)
    init_fn, apply_fn, kernel_fn = stax.serial(
        stax.Conv(8, (3, 3), padding="SAME", dimension_numbers=("HNWC", "HWIO", "NHWC")),
        stax.Relu(),
        stax.AvgPool((2, 2), (1, 1), "SAME", batch_axis=0, channel_axis=3),
        stax.Conv(8, (2, 2), padding="SAME", dimension_numbers=("NHWC", "HWIO", "HWNC")),
        stax.LayerNorm(axis=(0, 1, 3), batch_axis=2, channel_axis=3),
        stax.GlobalSelfAttention(8, 4, 4, 2, batch_axis=2, channel_axis=3),
        stax.Relu(),
        stax.SumPool((2, 1), (1, 1), "VALID", batch_axis=2, channel_axis=3),
        stax.GlobalAvgPool(batch_axis=2, channel_axis=3),
        stax.Dense(1))
    out = {}
    k = kernel_fn(x, y, ("nngp", "ntk"))
    out["nngp"], out["ntk"] = k.nngp, k.ntk
    out["ntk_self"] = kernel_fn(x, None, "ntk")
    shape, params = init_fn(jax.random.PRNGKey(0), x.shape)
    out["shape"] = np.array(shape)
    out["apply_shape"] = np.array(apply_fn(params, x).shape)
    return out
"""


def _spatial_arrays():
    rng = np.random.default_rng(1)
    return {"x": rng.standard_normal((3, 4, 4, 2)), "y": rng.standard_normal((3, 3, 4, 2))}


@pytest.mark.slow  # about 20 s of compilations in each library
def test_spatial_layers_with_points_anywhere_agree_with_neural_tangents(x64, nt_script):
    """Convolutions whose dimension_numbers put N elsewhere (in and out), AvgPool/SumPool,
    LayerNorm over sites and channels, attention and global pooling, each told where the
    points are; NNGP and NTK against neural-tangents."""
    nt_script(SPATIAL_SCRIPT, _spatial_arrays(), RTOL)


def test_spatial_layers_with_points_anywhere_equal_points_first(x64):
    """Where the points are cannot change a kernel: the same network with the points on axis
    1 (in), axis 2 (after the second convolution) equals the points-first network on the
    transposed inputs, exactly."""
    a = _spatial_arrays()
    moved = stax.serial(
        stax.Conv(8, (3, 3), padding="SAME", dimension_numbers=("HNWC", "HWIO", "NHWC")),
        stax.Relu(),
        stax.AvgPool((2, 2), (1, 1), "SAME"),
        stax.Conv(8, (2, 2), padding="SAME", dimension_numbers=("NHWC", "HWIO", "HWNC")),
        stax.LayerNorm(axis=(0, 1, 3), batch_axis=2, channel_axis=3),
        stax.GlobalSelfAttention(8, 4, 4, 2, batch_axis=2, channel_axis=3),
        stax.GlobalAvgPool(batch_axis=2, channel_axis=3),
        stax.Dense(1),
    )[2]
    first = stax.serial(
        stax.Conv(8, (3, 3), padding="SAME"),
        stax.Relu(),
        stax.AvgPool((2, 2), (1, 1), "SAME"),
        stax.Conv(8, (2, 2), padding="SAME"),
        stax.LayerNorm(axis=(1, 2, 3)),
        stax.GlobalSelfAttention(8, 4, 4, 2),
        stax.GlobalAvgPool(),
        stax.Dense(1),
    )[2]
    x, y = a["x"], a["y"]
    got = moved(x, y, ("nngp", "ntk"))
    want = first(np.moveaxis(x, 1, 0), np.moveaxis(y, 1, 0), ("nngp", "ntk"))
    np.testing.assert_allclose(got.nngp, want.nngp, rtol=1e-13)
    np.testing.assert_allclose(got.ntk, want.ntk, rtol=1e-13)


GRAPH_SCRIPT = """
def run(nt, a):
    stax = nt.stax
    out = {}
    key = jax.random.PRNGKey(0)
    cases = {
        # (V, N, C): one vertex axis before the points
        "v_n_c": (a["x1"], a["y1"], a["p1"], a["q1"], 1, 2, 0),
        # (V1, C, N, V2): two vertex axes around the channels and points
        "v_c_n_v": (a["x2"], a["y2"], a["p2"], a["q2"], 2, 1, (0, 3)),
    }
    for name, (x, y, p, q, b, c, agg) in cases.items():
        for impl in ("DENSE", "SPARSE"):
            init_fn, apply_fn, kernel_fn = stax.serial(
                stax.Dense(8, 1.2, 0.1, batch_axis=b, channel_axis=c), stax.Relu(),
                stax.Aggregate(agg, batch_axis=b, channel_axis=c, implementation=impl),
                stax.Dense(8, batch_axis=b, channel_axis=c), stax.Erf(),
                stax.GlobalAvgPool(batch_axis=b, channel_axis=c),
                # pooled: (N, C) or (C, N), the two axes in the inputs' order
                stax.Dense(1, batch_axis=int(c < b), channel_axis=int(c > b)))
            if impl == "DENSE":
                px, py = p, q
            else:  # the same graphs as edge lists (every arc of weight 1)
                px, py = a[name + "_edges_x"], a[name + "_edges_y"]
            tag = f"{name}_{impl}"
            k = kernel_fn(x, y, ("nngp", "ntk"), pattern=(px, py))
            out[tag + "_nngp"], out[tag + "_ntk"] = k.nngp, k.ntk
            out[tag + "_self"] = kernel_fn(x, None, "ntk", pattern=(px, px))
            _, params = init_fn(key, x.shape)
            out[tag + "_apply"] = apply_fn(params, x, pattern=px)
    return out
"""


def _graph_arrays():
    """Random 0/1 graphs (no weights, so the dense and sparse patterns are the same graph)."""
    rng = np.random.default_rng(2)
    a = {
        "x1": rng.standard_normal((4, 3, 2)),  # (V, N, C)
        "y1": rng.standard_normal((4, 2, 2)),
        "x2": rng.standard_normal((2, 2, 3, 3)),  # (V1, C, N, V2)
        "y2": rng.standard_normal((2, 2, 2, 3)),
    }
    for name, key, shape in (("v_n_c", "1", (4,)), ("v_c_n_v", "2", (2, 3))):
        for side, n in (("x", 3), ("y", 2)):
            v = int(np.prod(shape))
            adj = (rng.random((n, v, v)) < 0.4).astype(float)
            dense = adj.reshape((n, *shape, *shape))
            a[("p" if side == "x" else "q") + key] = dense
            edges = np.full((n, v * v, len(shape), 2), -1, np.int32)  # padded edge lists
            for i in range(n):
                tails, heads = np.nonzero(adj[i])
                coords = np.stack(
                    [np.stack(np.unravel_index(t, shape)) for t in (tails, heads)], -1
                )  # (K, E, 2)
                edges[i, : len(tails)] = np.moveaxis(coords, 1, 0)
            a[f"{name}_edges_{side}"] = edges
    return a


@pytest.mark.slow  # about 20 s of compilations in each library
def test_aggregate_with_points_anywhere_agrees_with_neural_tangents(x64, nt_script):
    """Graph networks whose points are on axis 1 or 2 (one or two vertex axes, channels before
    or after the points), dense and sparse patterns: kernels and outputs against
    neural-tangents."""
    nt_script(GRAPH_SCRIPT, _graph_arrays(), RTOL)


def test_aggregate_with_points_anywhere_equals_points_first(x64):
    """The (V1, C, N, V2) graph network equals the points-first (N, V1, V2, C) one on the
    transposed inputs, exactly; apply_fn too."""
    a = _graph_arrays()
    x, y, p, q = a["x2"], a["y2"], a["p2"], a["q2"]

    def net(b, c, agg):
        return stax.serial(
            stax.Dense(8, batch_axis=b, channel_axis=c),
            stax.Relu(),
            stax.Aggregate(agg, batch_axis=b, channel_axis=c),
            stax.GlobalAvgPool(batch_axis=b, channel_axis=c),
            stax.Dense(1, batch_axis=int(c % 4 < b), channel_axis=int(c % 4 > b)),
        )

    moved, first = net(2, 1, (0, 3)), net(0, -1, (1, 2))
    t = (2, 0, 3, 1)  # (V1, C, N, V2) -> (N, V1, V2, C)
    got = moved[2](x, y, ("nngp", "ntk"), pattern=(p, q))
    want = first[2](x.transpose(t), y.transpose(t), ("nngp", "ntk"), pattern=(p, q))
    np.testing.assert_allclose(got.nngp, want.nngp, rtol=1e-14)
    np.testing.assert_allclose(got.ntk, want.ntk, rtol=1e-14)
    shape, params = moved[0](jax.random.PRNGKey(0), x.shape)
    assert shape == (1, 3) and moved[1](params, x, pattern=p).shape == (1, 3)  # (C, N)
    lay = stax.Aggregate((0, 3), batch_axis=2, channel_axis=1)[1]
    out = lay((), x, pattern=p)
    ref = stax.Aggregate((1, 2))[1]((), x.transpose(t), pattern=p)
    np.testing.assert_allclose(out.transpose(t), ref, rtol=1e-14)
