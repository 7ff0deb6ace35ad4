"""`stax.Aggregate` (graph networks): kernels against an exact float64 reference, the finite
network, call-time ``pattern`` plumbing and errors.

The kernels are checked against neural-tangents 0.6.5 itself (random graphs through its
``kernel_fn(..., pattern=...)``, `test_random_graphs_match_neural_tangents`) and against the
exact formula computed here from scratch in numpy on small inputs: every layer as a linear
map or closed form over the flattened sites (V = Π X_d), on the concatenation [x1; x2] so
that the self (x2=None) and cross kernels come from one reference:

- input kernel K[i, j, s, s'] = Σ_c x_i[s, c] x_j[s', c] / C, NTK 0 (neural-tangents' convention);
- Dense per site: K ← W² K + b², Θ ← K + W² Θ;
- Conv (SAME, stride 1): K ← W²/|f| Σ_t T_t K T_tᵀ + b², Θ ← K + W²/|f| Σ_t T_t Θ T_tᵀ with
  T_t the zero-padded shift by offset t (Novak et al. 2019);
- ReLU (Cho & Saul 2009): K ← √(q q')/(2π) (sin θ + (π − θ) cos θ), Θ ← Θ (π − θ)/(2π),
  cos θ = K/√(q q'), with q, q' the variances of the two (point, site) pairs, and cos θ = 1
  exactly where a (point, site) is paired with itself;
- Aggregate (Du et al. 2019, GNTK): K[i, j] ← P_iᵀ K[i, j] P_j over the flattened sites, P_i
  the pattern of point i extended by the identity on non-aggregated axes;
- GlobalAvgPool: the mean over all pairs of sites; Flatten: the mean over the site diagonal.

Tolerance: 1e-10 relative to the largest entry. Both sides are float64 evaluations of the
same formulas in different orders (measured agreement ~1e-15); 1e-10 leaves room for the
arccos' conditioning near correlation 1 without hiding a wrong formula (any mistake in P₁ᵀ K P₂
changes entries at O(1)). In addition, a neural-tangents check that needs no pattern in the
oracle: for networks that act per site before an Aggregate whose patterns are per-point
permutation matrices, the kernel equals neural-tangents' kernel of the inputs with their
sites permuted (slow: one oracle process). A one-off comparison with neural-tangents 0.6.5
given the patterns directly (1-D, 2-D all axes, 2-D one axis; self and cross) agreed to
3.4e-16 relative (see the report of issue 15).
"""

import itertools
import string

import jax
import numpy as np
import pytest

from theory.kernels import batch, stax

RTOL = 1e-10


# ------------------------------------------------------------------ numpy reference


def _input_kernel(x):
    n, c = x.shape[0], x.shape[-1]
    f = x.reshape(n, -1, c)
    k = np.einsum("isc,jtc->ijst", f, f) / c
    return k, np.zeros_like(k)


def _dense(k, t, w, b):
    k = w**2 * k + b**2
    return k, k + w**2 * t


def _shifts(sites, filt):
    """T_t (V×V) for every filter offset t, SAME padding (low pad (f−1)//2, as lax)."""
    v = int(np.prod(sites))
    out = []
    for t in itertools.product(*[range(f) for f in filt]):
        m = np.zeros((v, v))
        for o in itertools.product(*[range(s) for s in sites]):
            src = [oi + ti - (f - 1) // 2 for oi, ti, f in zip(o, t, filt)]
            if all(0 <= si < s for si, s in zip(src, sites)):
                m[np.ravel_multi_index(o, sites), np.ravel_multi_index(src, sites)] = 1.0
        out.append(m)
    return out


def _conv(k, t, sites, filt, w, b):
    ts = _shifts(sites, filt)

    def lin(a):
        return w**2 * sum(np.einsum("st,ijtu,vu->ijsv", m, a, m) for m in ts) / len(ts)

    k2 = lin(k) + b**2
    return k2, k2 + lin(t)


def _relu(k, t):
    n, v = k.shape[0], k.shape[2]
    q = np.einsum("iiss->is", k)  # variance of each (point, site)
    norm = np.sqrt(q[:, None, :, None] * q[None, :, None, :])
    c = np.clip(k / norm, -1.0, 1.0)
    same = np.eye(n)[:, :, None, None] * np.eye(v)[None, None]
    c = np.where(same > 0, 1.0, c)
    theta = np.arccos(c)
    k2 = norm / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * c)
    return k2, t * (np.pi - theta) / (2 * np.pi)


def _full_pattern(p, sites, agg):
    """(n, V, V): pattern p (n, *A, *A) on the site axes ``agg``, identity on the others."""
    nd = len(sites)
    letters = iter(string.ascii_letters)
    n_ix = next(letters)
    s_in = [next(letters) for _ in range(nd)]
    s_out = [next(letters) for _ in range(nd)]
    rest = [d for d in range(nd) if d not in agg]
    ops, specs = [p], [n_ix + "".join(s_in[d] for d in agg) + "".join(s_out[d] for d in agg)]
    for d in rest:
        ops.append(np.eye(sites[d]))
        specs.append(s_in[d] + s_out[d])
    out = f"{n_ix}{''.join(s_in)}{''.join(s_out)}"
    full = np.einsum(",".join(specs) + "->" + out, *ops)
    v = int(np.prod(sites))
    return full.reshape(p.shape[0], v, v)


def _aggregate(k, t, pf):
    def lin(a):
        return np.einsum("isu,ijst,jtv->ijuv", pf, a, pf)

    return lin(k), lin(t)


def _reference(layers, x, patterns):
    """Final (N, N) NNGP and NTK of ``layers`` (tuples, see ARCHS) on points x (N, *S, C)."""
    sites = x.shape[1:-1]
    k, t = _input_kernel(x)
    for layer in layers:
        kind, *arg = layer
        if kind == "dense":
            k, t = _dense(k, t, *arg)
        elif kind == "conv":
            k, t = _conv(k, t, sites, *arg)
        elif kind == "relu":
            k, t = _relu(k, t)
        elif kind == "agg":
            k, t = _aggregate(k, t, _full_pattern(patterns, sites, arg[0]))
        elif kind == "branch_sum":  # FanOut(2) → [Dense → Aggregate, Dense] → FanInSum
            (w, b) = arg
            kd, td = _dense(k, t, w, b)
            ka, ta = _aggregate(kd, td, _full_pattern(patterns, sites, tuple(range(len(sites)))))
            k, t = kd + ka, td + ta
        elif kind == "gap":
            k, t = k.mean(axis=(2, 3)), t.mean(axis=(2, 3))
        elif kind == "flatten":
            k, t = np.einsum("ijss->ij", k) / k.shape[2], np.einsum("ijss->ij", t) / t.shape[2]
        else:
            raise AssertionError(kind)
    return k, t


def _ours(layers, aggregate_axis):
    """The same network in stax."""
    out = []
    for kind, *arg in layers:
        if kind == "dense":
            out.append(stax.Dense(5, W_std=arg[0], b_std=arg[1]))
        elif kind == "conv":
            out.append(stax.Conv(5, arg[0], padding="SAME", W_std=arg[1], b_std=arg[2]))
        elif kind == "relu":
            out.append(stax.Relu())
        elif kind == "agg":
            out.append(stax.Aggregate(aggregate_axis))
        elif kind == "branch_sum":
            w, b = arg
            out += [
                stax.FanOut(2),
                stax.parallel(
                    stax.serial(stax.Dense(5, W_std=w, b_std=b), stax.Aggregate(aggregate_axis)),
                    stax.Dense(5, W_std=w, b_std=b),
                ),
                stax.FanInSum(),
            ]
        elif kind == "gap":
            out.append(stax.GlobalAvgPool())
        elif kind == "flatten":
            out.append(stax.Flatten())
    return stax.serial(*out)


HEAD = [("dense", 0.9, 0.05), ("relu",)]
OUT = ("dense", 1, 0)
# name: (sites, channels, aggregate_axis (stax), aggregated site positions, layers)
ARCHS = {
    "graph1d_dense_gap": (
        (5,),
        4,
        None,
        (0,),
        [("dense", 1.3, 0.2), ("relu",), ("agg", (0,)), *HEAD, ("gap",), ("dense", 1.1, 0.3)],
    ),
    "graph1d_conv_flatten": (
        (5,),
        3,
        1,
        (0,),
        [("conv", (3,), 1.2, 0.1), ("relu",), ("agg", (0,)), *HEAD, ("flatten",), OUT],
    ),
    "graph2d_all_axes_gap": (
        (4, 3),
        2,
        None,
        (0, 1),
        [("conv", (2, 2), 1.2, 0.1), ("relu",), ("agg", (0, 1)), *HEAD, ("gap",), OUT],
    ),
    "graph2d_last_axis_flatten": (
        (4, 3),
        2,
        -2,
        (1,),
        [("conv", (2, 2), 1.2, 0.1), ("relu",), ("agg", (1,)), *HEAD, ("flatten",), OUT],
    ),
    "graph1d_parallel_branches": (
        (5,),
        4,
        None,
        (0,),
        [("dense", 1.3, 0.2), ("relu",), ("branch_sum", 1.1, 0.1), ("relu",), ("gap",)],
    ),
}

N1, N2 = 3, 2


def _data(sites, channels, agg, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N1 + N2, *sites, channels))
    a = tuple(sites[d] for d in agg)
    # random weighted directed graphs (about 60% of arcs present), different per point
    p = rng.uniform(0.0, 1.0, (N1 + N2, *a, *a)) * (rng.uniform(size=(N1 + N2, *a, *a)) < 0.6)
    return x, p


# 1-D and 2-D aggregate axes by default (~10 s each: two compilations); the rest is slow
DEFAULT = ("graph1d_dense_gap", "graph2d_all_axes_gap")
# Dense → Aggregate → ReLU: the cheapest network whose kernel depends on the pattern
TINY = ((5,), 3, None, (0,), [("dense", 1.3, 0.2), ("agg", (0,)), ("relu",), ("gap",)])


@pytest.mark.parametrize(
    "name", [n if n in DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in ARCHS]
)
def test_kernel_matches_exact_formula(name, x64):
    sites, channels, axis, agg, layers = ARCHS[name]
    x, p = _data(sites, channels, agg, seed=len(name))
    k_ref, t_ref = _reference(layers, x, p)
    kf = _ours(layers, axis)[2]
    x1, x2, p1, p2 = x[:N1], x[N1:], p[:N1], p[N1:]
    cross = kf(x1, x2, ("nngp", "ntk"), pattern=(p1, p2))
    self_ = kf(x1, None, ("nngp", "ntk"), pattern=(p1, p1))
    for got, want, what in [
        (cross.nngp, k_ref[:N1, N1:], "cross nngp"),
        (cross.ntk, t_ref[:N1, N1:], "cross ntk"),
        (self_.nngp, k_ref[:N1, :N1], "self nngp"),
        (self_.ntk, t_ref[:N1, :N1], "self ntk"),
    ]:
        got = np.asarray(got)
        assert got.dtype == np.float64
        err = np.max(np.abs(got - want)) / np.max(np.abs(want))
        assert err < RTOL, f"{name} {what}: relative error {err:.1e}"
    # the pattern matters far beyond the tolerance: with identity patterns the kernel differs
    a = p.shape[1 : 1 + len(agg)]
    eye = np.broadcast_to(np.eye(int(np.prod(a))).reshape(a + a), p.shape)
    k_eye = _reference(layers, x, eye)[0]
    assert np.max(np.abs(k_eye - k_ref)) > 1e-3 * np.max(np.abs(k_ref))


def test_pattern2_may_be_omitted_for_a_self_kernel(x64):
    sites, channels, axis, agg, layers = TINY
    x, p = _data(sites, channels, agg, seed=1)
    kf = _ours(layers, axis)[2]
    a = kf(x, None, "ntk", pattern=(p, p))
    b = kf(x, None, "ntk", pattern=(p, None))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(np.asarray(a), _reference(layers, x, p)[1], rtol=RTOL, atol=0)


def test_new_pattern_values_reuse_the_compilation(x64):
    """``pattern`` is a traced argument: other values, same shape, no recompilation, and the
    result follows the values (not a cached first pattern)."""
    sites, channels, axis, agg, layers = TINY
    x, p = _data(sites, channels, agg, seed=2)
    _, q = _data(sites, channels, agg, seed=3)
    kf = _ours(layers, axis)[2]
    a = np.asarray(kf(x, None, "nngp", pattern=(p, p)))
    b = np.asarray(kf(x, None, "nngp", pattern=(q, q)))
    assert kf._jitted._cache_size() == 1
    np.testing.assert_allclose(a, _reference(layers, x, p)[0], rtol=RTOL, atol=0)
    np.testing.assert_allclose(b, _reference(layers, x, q)[0], rtol=RTOL, atol=0)


@pytest.mark.slow  # 15 s; tiling itself is checked by default in test_stax.py and
# test_spatial_tiling.py
def test_patterns_are_tiled_with_the_points(x64, monkeypatch):
    """Per-point patterns are sliced into tiles with their points: automatic tiles (forced
    small; self and cross), `batch` on 1 device (cross) and on 4 (self), equal the whole
    kernel to 1e-12 relative (each tile builds its own input kernel: float64 roundoff); a
    pattern that is not per-point is refused by batch, naming the keywords."""
    from theory.kernels import batching

    rng = np.random.default_rng(3)
    kf = stax.serial(
        stax.Conv(2, (2,), padding="SAME", W_std=1.2, b_std=0.1), stax.Relu(),
        stax.Aggregate(), stax.Dense(2, 0.9, 0.05), stax.Relu(), stax.GlobalAvgPool(),
        stax.Dense(1),
    )[2]  # fmt: skip
    x1, x2 = rng.standard_normal((7, 5, 2)), rng.standard_normal((5, 5, 2))
    p = rng.uniform(0, 1, (12, 5, 5)) * (rng.uniform(size=(12, 5, 5)) < 0.6)
    p1, p2 = p[:7], p[7:]
    cases = {"cross": ((x1, x2), (p1, p2)), "self": ((x1, None), (p1, None))}
    whole = {c: kf(*xs, ("nngp", "ntk"), pattern=pat) for c, (xs, pat) in cases.items()}
    assert kf._tile(x1, None, {"pattern": (p1, None)}) is None  # small: one piece

    def same(got, want, what):
        for g, w, name in zip(got, want, ("nngp", "ntk")):
            np.testing.assert_allclose(
                np.asarray(g), np.asarray(w), rtol=1e-12, atol=1e-12 * np.abs(w).max(),
                err_msg=f"{what} {name}",
            )  # fmt: skip

    for devices, c in ((jax.devices()[:1], "cross"), (jax.devices(), "self")):
        xs, pat = cases[c]
        got = batch(kf, 3, devices)(*xs, ("nngp", "ntk"), pattern=pat)
        same(got, whole[c], f"batch 3 on {len(devices)} devices, {c}")
    monkeypatch.setattr(batching, "SPATIAL_TILE_BYTES", 4 * 25 * 8)  # 2×2 tiles of 5×5 sites
    kf2 = stax.serial(
        stax.Conv(2, (2,), padding="SAME", W_std=1.2, b_std=0.1), stax.Relu(),
        stax.Aggregate(), stax.Dense(2, 0.9, 0.05), stax.Relu(), stax.GlobalAvgPool(),
        stax.Dense(1),
    )[2]  # fmt: skip
    assert kf2._tile(x1, None, {"pattern": (p1, None)}) == 2
    for c, (xs, pat) in cases.items():
        same(kf2(*xs, ("nngp", "ntk"), pattern=pat), whole[c], f"automatic tiles, {c}")
    with pytest.raises(ValueError, match=r"batch\(.*\['pattern'\] must be per-point pairs"):
        batch(kf, 3)(x1, None, "nngp", pattern=(p1[:3], None))


# -------------------------------------------------------------------- finite network


def _apply_reference(x, p, agg):
    """out[n, …w…] = Σ_v p[n, v, w] x[n, …v…], by explicit loops over vertices."""
    sites = x.shape[1:-1]
    a = [sites[d] for d in agg]
    out = np.zeros_like(x)
    for n in range(x.shape[0]):
        for s in itertools.product(*[range(k) for k in sites]):
            w = tuple(s[d] for d in agg)
            for v in itertools.product(*[range(k) for k in a]):
                src = list(s)
                for d, vd in zip(agg, v):
                    src[d] = vd
                out[(n, *s)] += p[(n, *v, *w)] * x[(n, *src)]
    return out


@pytest.mark.parametrize(
    "sites, axis, agg",
    [((5,), None, (0,)), ((4, 3), None, (0, 1)), ((4, 3), 2, (1,)), ((4, 3), (-3,), (0,))],
)
def test_apply_fn_sums_predecessors(sites, axis, agg, x64):
    x, p = _data(sites, 3, agg, seed=4)
    init_fn, apply_fn, _ = stax.Aggregate(axis)
    shape, params = init_fn(jax.random.PRNGKey(0), x.shape)
    out = np.asarray(apply_fn(params, x, pattern=p))
    assert shape == x.shape and out.shape == x.shape
    np.testing.assert_allclose(out, _apply_reference(x, p, agg), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(apply_fn(params, x)), x)  # no pattern: identity


def test_sparse_edge_list_matches_dense(x64):
    """SPARSE (tail, head) edges of weight 1, repeats adding up, negative = padding."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 3, 2))
    # edges[n, e, k, 0 / 1]: the tail's / head's coordinate on site axis k
    edges = np.stack([rng.integers(0, 4, (2, 9, 2)), rng.integers(0, 3, (2, 9, 2))], axis=2)
    edges[0, 1] = edges[0, 0]  # a repeated edge: weight 2
    edges[1, -2:] = -1  # padding edges of the second graph
    dense = np.zeros((2, 4, 3, 4, 3))
    for n in range(2):
        for e in edges[n]:
            if (e >= 0).all():
                dense[n, e[0, 0], e[1, 0], e[0, 1], e[1, 1]] += 1
    _, ap_s, _ = stax.Aggregate(implementation="SPARSE")
    _, ap_d, _ = stax.Aggregate()
    np.testing.assert_allclose(
        np.asarray(ap_s((), x, pattern=edges)), np.asarray(ap_d((), x, pattern=dense)), atol=1e-12
    )
    net_s, net_d = [
        stax.serial(stax.Dense(3), agg, stax.Relu(), stax.GlobalAvgPool())
        for agg in (stax.Aggregate(implementation="SPARSE"), stax.Aggregate())
    ]
    a = net_s[2](x, None, "ntk", pattern=(edges, edges))
    b = net_d[2](x, None, "ntk", pattern=(dense, dense))
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)


def test_network_apply_forwards_pattern(x64):
    """serial's apply_fn hands ``pattern`` to the Aggregate layer (and ignores it elsewhere)."""
    x, p = _data((5,), 4, (0,), seed=6)
    dense = stax.Dense(3, b_std=0.5)
    init_fn, apply_fn, _ = stax.serial(dense, stax.Aggregate(), stax.Relu())
    shape, params = init_fn(jax.random.PRNGKey(1), x.shape)
    out = apply_fn(params, x, pattern=p)
    assert out.shape == shape == (*x.shape[:-1], 3)
    h = np.asarray(dense[1](params[0], x))
    np.testing.assert_allclose(
        np.asarray(out), np.maximum(_apply_reference(h, p, (0,)), 0), rtol=1e-12, atol=1e-12
    )


# ------------------------------------------------------------------------------ errors


def test_errors_name_the_argument(x64):
    x, p = _data((5,), 2, (0,), seed=7)
    _, _, kf = stax.serial(stax.Dense(3), stax.Aggregate(), stax.GlobalAvgPool())
    with pytest.raises(ValueError, match=r"Aggregate.*pattern.*\(5, 5, 5\).*\(5, 4, 4\)"):
        stax.Aggregate()[1]((), x, pattern=p[:, :4, :4])
    with pytest.raises(ValueError, match=r"Aggregate.*pattern\[1\].*\(2, 5, 5\)"):
        kf(x[:3], x[3:], "nngp", pattern=(p[:3], p[:3]))  # pattern2 has x1's batch size
    with pytest.raises(ValueError, match=r"pattern\[0\].*\(3, 5, 5\)"):
        kf(x[:3], x[3:], "nngp", pattern=(p[:3, :4, :4], p[3:]))
    with pytest.raises(TypeError, match=r"pattern must be a pair"):
        kf(x, None, "nngp", pattern=p)
    with pytest.raises(ValueError, match=r"pattern2 None"):
        kf(x[:3], x[3:], "nngp", pattern=(p[:3], None))
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['patern'\]"):
        kf(x, None, "nngp", patern=(p, p))
    # a network without a graph drops a pattern and a dropout key (neural-tangents passes
    # them to every kernel function of a model) but refuses any other keyword
    fc = stax.serial(stax.Dense(1), stax.Relu())[2]
    np.testing.assert_array_equal(
        fc(x[:, :, 0], None, "nngp", pattern=(p, p), rng=jax.random.PRNGKey(0)),
        fc(x[:, :, 0], None, "nngp"),
    )
    with pytest.raises(TypeError, match=r"\['mask'\].*no layer"):
        fc(x[:, :, 0], None, "nngp", mask=(p, p))
    with pytest.raises(ValueError, match=r"aggregate_axis 0 must name distinct site axes"):
        stax.Aggregate(0)[2](x, None, "nngp", pattern=(p, p))
    with pytest.raises(ValueError, match=r"aggregate_axis 4 is out of range"):
        stax.Aggregate(4)[1]((), x, pattern=p)
    with pytest.raises(ValueError, match="implementation"):
        stax.Aggregate(implementation="COO")
    with pytest.raises(ValueError, match="channel_axis=0 is the batch axis"):
        stax.Aggregate(channel_axis=0)
    _, _, sparse_kf = stax.Aggregate(implementation="SPARSE")
    with pytest.raises(ValueError, match=r"pattern\[0\] must be an integer edge list"):
        sparse_kf(x, None, "nngp", pattern=(np.zeros((5, 3, 3), np.int32),) * 2)


# ------------------------------------------------------ neural-tangents (no pattern)

PERM_SITES, PERM_C = (4, 3), 2
PERM_SPECS = [
    # the same network without the Aggregate (neural-tangents 0.6.5's kernel_fn of a network
    # with Aggregate but no pattern fails: it unpacks pattern=None), on permuted inputs
    [["Dense", {"out_dim": 1, "W_std": 1.3, "b_std": 0.2}], ["Relu", {}],
     ["Dense", {"out_dim": 1, "W_std": 0.9, "b_std": 0.05}], ["Relu", {}], ["Flatten", {}],
     ["Dense", {"out_dim": 1, "W_std": 1.1, "b_std": 0.3}]],
]  # fmt: skip


@pytest.mark.slow
def test_permutation_patterns_match_neural_tangents(nt_oracle, x64):
    """A permutation pattern P[n, v, π_n(v)] = 1 moves vertex v to π_n(v). Layers before it
    act per site, so the kernel equals neural-tangents' kernel of the inputs with their sites
    permuted per point, x'_n[π_n(v)] = x_n[v]; Flatten pairs site w of one point with site w
    of the other, so different permutations per point change the kernel."""
    rng = np.random.default_rng(8)
    n, v = 5, int(np.prod(PERM_SITES))
    x = rng.standard_normal((n, *PERM_SITES, PERM_C))
    perms = [rng.permutation(v) for _ in range(n)]
    p = np.zeros((n, v, v))
    xp = np.zeros_like(x).reshape(n, v, PERM_C)
    for i, pi in enumerate(perms):
        p[i, np.arange(v), pi] = 1.0
        xp[i, pi] = x[i].reshape(v, PERM_C)
    p = p.reshape(n, *PERM_SITES, *PERM_SITES)
    xp = xp.reshape(x.shape)
    req = {"specs": PERM_SPECS, "tasks": ["kernels"], "x64": 1, "x1": xp}
    ref = nt_oracle(req)  # 5 × 5
    kf = stax.serial(
        stax.Dense(1, 1.3, 0.2), stax.Relu(), stax.Aggregate(), stax.Dense(1, 0.9, 0.05),
        stax.Relu(), stax.Flatten(), stax.Dense(1, 1.1, 0.3),
    )[2]  # fmt: skip
    cross = kf(x[:3], x[3:], ("nngp", "ntk"), pattern=(p[:3], p[3:]))
    self_ = kf(x[:3], None, ("nngp", "ntk"), pattern=(p[:3], p[:3]))
    for got, want in [
        (cross.nngp, ref["nngp_0"][:3, 3:]),
        (cross.ntk, ref["ntk_0"][:3, 3:]),
        (self_.nngp, ref["nngp_0"][:3, :3]),
        (self_.ntk, ref["ntk_0"][:3, :3]),
    ]:
        np.testing.assert_allclose(np.asarray(got), want, rtol=RTOL, atol=0)
    unpermuted = kf(x[:3], x[3:], "nngp")
    assert np.max(np.abs(np.asarray(unpermuted) - ref["nngp_0"][:3, 3:])) > 1e-3


GRAPH_SPECS = [
    [["Dense", {"out_dim": 1, "W_std": 1.3, "b_std": 0.2}], ["Relu", {}],
     ["Aggregate", {}], ["Dense", {"out_dim": 1, "W_std": 0.9, "b_std": 0.05}], ["Relu", {}],
     ["GlobalAvgPool", {}], ["Dense", {"out_dim": 1, "W_std": 1.1, "b_std": 0.3}]],
    [["Conv", {"out_chan": 1, "filter_shape": [2, 2], "padding": "SAME", "W_std": 1.2,
               "b_std": 0.1}], ["Relu", {}], ["Aggregate", {"aggregate_axis": [2]}],
     ["Dense", {"out_dim": 1, "W_std": 0.9, "b_std": 0.05}], ["Relu", {}], ["Flatten", {}],
     ["Dense", {"out_dim": 1}]],
]  # fmt: skip


def test_random_graphs_match_neural_tangents(nt_oracle, x64):
    """Random weighted directed graphs (a different one per point) through neural-tangents'
    own kernel_fn(..., pattern=(p1, p2)): every site axis aggregated, and only the second of
    two site axes (``aggregate_axis`` counts the input array's axes, batch first, as in
    neural-tangents); NNGP and NTK, cross, 1e-6 relative (agreement is ~1e-15)."""
    rng = np.random.default_rng(9)
    sites, c = (4, 3), 2
    x1, x2 = rng.standard_normal((3, *sites, c)), rng.standard_normal((2, *sites, c))
    patterns = []
    for axes in ((0, 1), (1,)):
        a = tuple(sites[d] for d in axes)
        p = rng.uniform(0, 1, (5, *a, *a)) * (rng.uniform(size=(5, *a, *a)) < 0.6)
        patterns.append((p[:3], p[3:]))
    req = {"specs": GRAPH_SPECS, "tasks": ["kernels"], "x64": 1, "jit": 1, "x1": x1, "x2": x2}
    for i, (p1, p2) in enumerate(patterns):
        req[f"pattern1_{i}"], req[f"pattern2_{i}"] = p1, p2
    ref = nt_oracle(req)
    ours = [
        stax.serial(stax.Dense(1, 1.3, 0.2), stax.Relu(), stax.Aggregate(),
                    stax.Dense(1, 0.9, 0.05), stax.Relu(), stax.GlobalAvgPool(),
                    stax.Dense(1, 1.1, 0.3))[2],
        stax.serial(stax.Conv(1, (2, 2), padding="SAME", W_std=1.2, b_std=0.1), stax.Relu(),
                    stax.Aggregate(aggregate_axis=(2,)), stax.Dense(1, 0.9, 0.05), stax.Relu(),
                    stax.Flatten(), stax.Dense(1))[2],
    ]  # fmt: skip
    for i, kf in enumerate(ours):
        k = kf(x1, x2, ("nngp", "ntk"), pattern=patterns[i])
        for got, name in ((k.nngp, "nngp"), (k.ntk, "ntk")):
            want = ref[f"{name}_{i}"]
            np.testing.assert_allclose(
                np.asarray(got), want, rtol=RTOL, atol=RTOL * np.abs(want).max(),
                err_msg=f"spec {i} {name}",
            )  # fmt: skip
