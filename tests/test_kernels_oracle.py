"""NNGP and NTK of `theory.kernels.stax` against neural-tangents 0.6.5, in float64.

One subprocess evaluates every architecture of `ARCHS` in the reference environment; each
architecture is then one test. Tolerance: 1e-6 relative (the issue's bar); agreement is
typically 1e-13, far inside it. RectifiedMonomial: neural-tangents returns NaN on
ordinary float64 inputs (its numerical differentiation at θ = 0; docs/conventions.md,
"Known defects of neural-tangents 0.6.5"), so those entries are compared where the oracle
is finite (degrees 0 and 3; also against its float32 path), degree 1 against its Relu, and
degree 2 (NaN everywhere) against quadrature in tests/test_dual.py; ours must be finite
everywhere.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from theory.kernels import stax

RTOL = 1e-6


def D(out=8, W=1.0, b=None, p="ntk", s=None):
    kw = {"out_dim": out, "W_std": W, "parameterization": p}
    if b is not None:
        kw["b_std"] = b
    if s is not None:
        kw["s"] = list(s)
    return ["Dense", kw]


def act(name, **kw):
    return [name, kw]


def deep(depth, activation, W=1.5, b=0.1, p="ntk"):
    spec = []
    for _ in range(depth):
        spec += [D(16, W, b, p), activation]
    return spec + [D(1, W, b, p)]


ARCHS = {
    "relu_depth1_ntk_nobias": [D(8, 1.0), act("Relu")],
    "relu_depth2_ntk_bias": deep(2, act("Relu")),
    "relu_depth3_ntk_bias": deep(3, act("Relu")),
    "relu_depth10_ntk": deep(10, act("Relu"), W=1.4, b=0.05),
    "relu_depth3_standard_bias": deep(3, act("Relu"), p="standard"),
    "relu_standard_b_none": [
        D(12, 1.3, None, "standard"),
        act("Relu"),
        D(1, 1.3, None, "standard"),
    ],
    "relu_standard_b_zero": [D(12, 1.3, 0.0, "standard"), act("Relu"), D(1, 1.3, 0.0, "standard")],
    "leaky_relu": deep(2, act("LeakyRelu", alpha=0.2)),
    "abrelu": deep(2, act("ABRelu", a=-0.4, b=1.3)),
    "abs": deep(2, act("Abs")),
    "erf_affine": deep(3, act("Erf", a=1.3, b=0.7, c=0.2)),
    "erf_standard": deep(2, act("Erf"), p="standard"),
    "gelu": deep(3, act("Gelu")),
    "sin": deep(2, act("Sin", a=1.2, b=0.8, c=0.3)),
    "cos": deep(2, act("Cos", a=0.9, b=1.1, c=-0.2)),
    "gaussian": deep(2, act("Gaussian", a=1.1, b=-0.7), W=1.0, b=0.1),
    "rbf": deep(2, act("Rbf", gamma=0.6)),
    "exp": deep(2, act("Exp", a=0.8, b=0.5), W=0.8, b=0.1),
    "sign": [D(8, 1.2, 0.1), act("Sign"), D(8, 1.1, 0.2), act("Relu"), D(1)],
    "monomial_2": deep(2, act("Monomial", degree=2), W=0.9, b=0.1),
    "monomial_3": deep(1, act("Monomial", degree=3)),
    "monomial_5": deep(1, act("Monomial", degree=5), W=0.8),
    "rectified_monomial_0": deep(1, act("RectifiedMonomial", degree=0)),
    "rectified_monomial_1": deep(2, act("RectifiedMonomial", degree=1)),
    "rectified_monomial_2": deep(2, act("RectifiedMonomial", degree=2), W=1.0),
    "rectified_monomial_3": deep(1, act("RectifiedMonomial", degree=3), W=1.0),
    "polynomial": deep(2, act("Polynomial", coef=[0.1, 0.9, -0.3, 0.2]), W=1.0),
    "hermite_3": [D(8, 1.0), act("Hermite", degree=3), D(1)],
    "elementwise_erf": deep(2, act("Elementwise", fn="erf", nngp_fn="erf_nngp")),
    "elementwise_numerical_tanh": deep(2, act("ElementwiseNumerical", fn="tanh", deg=25)),
    "resnet_fanin_sum": [
        D(8, 1.2, 0.1),
        act("FanOut", num=2),
        ["parallel", [["serial", [act("Relu"), D(8, 1.5, 0.1)]], act("Identity")]],
        act("FanInSum"),
        act("Erf"),
        D(1, 1.0, 0.1),
    ],
    "fanin_prod": [
        D(8, 1.2, 0.1),
        act("FanOut", num=3),
        ["parallel", [act("Relu"), act("Erf"), act("Sin")]],
        act("FanInProd"),
        D(1, 1.0, 0.1),
    ],
    "standard_width_changes": [
        D(32, 1.4, 0.1, "standard"),
        act("Relu"),
        D(7, 1.2, 0.2, "standard"),
        act("Gelu"),
        D(3, 0.9, None, "standard"),
    ],
    # Width multipliers s = (s_in, s_out): the standard NTK's n_in/s_in factor changes with
    # them (s_in of a layer = s_out of the one before; 1 at the input and the output).
    "standard_width_multipliers": [
        D(16, 1.4, 0.1, "standard", s=(1, 3)),
        act("Relu"),
        D(8, 1.2, 0.0, "standard", s=(3, 2)),
        act("Erf"),
        D(1, 0.9, 0.2, "standard", s=(2, 1)),
    ],
    # The NTK parameterization ignores s (neural-tangents: "only applicable when standard").
    "ntk_width_multipliers_ignored": [
        D(16, 1.4, 0.1, "ntk", s=(1, 3)),
        act("Relu"),
        D(1, 1.1, 0.2, "ntk", s=(3, 1)),
    ],
}

NAMED = {
    "erf": jax.scipy.special.erf,
    "tanh": jnp.tanh,
    "sin": jnp.sin,
    "erf_nngp": lambda c12, v1, v2: (
        jnp.arcsin(2 * c12 / jnp.sqrt((1 + 2 * v1) * (1 + 2 * v2))) * 2 / jnp.pi
    ),
}


def build(spec):
    """Our network from a spec (the same description the oracle builds from)."""

    def one(node):
        name, arg = node
        if name in ("serial", "parallel"):
            return getattr(stax, name)(*[one(c) for c in arg])
        arg = {k: (NAMED[v] if k in ("fn", "nngp_fn", "d_nngp_fn") else v) for k, v in arg.items()}
        return getattr(stax, name)(**arg)

    return stax.serial(*[one(n) for n in spec])


def inputs():
    rng = np.random.default_rng(2024)
    x1 = rng.standard_normal((9, 5))
    x2 = rng.standard_normal((6, 5))
    x2[0] = x1[3]  # a point shared by both batches
    return x1, x2


NOT_COMPILED = ("sign", "rectified_monomial")


@pytest.fixture(scope="module")
def reference(nt_oracle):
    x1, x2 = inputs()
    names = list(ARCHS)
    specs = [ARCHS[n] for n in names]
    # compiled (half the oracle's time), except where a dual is singular at the diagonal:
    # there XLA's fusion moves neural-tangents' values by up to 2e-5 (measured, Sign's NTK)
    jit = [int(not n.startswith(NOT_COMPILED)) for n in names]
    req = {"specs": specs, "tasks": ["kernels"], "x1": x1, "x64": 1, "jit": jit}
    sym = nt_oracle(req)
    cross = nt_oracle({**req, "x2": x2})
    out = {
        name: {
            "sym": (sym[f"nngp_{i}"], sym[f"ntk_{i}"]),
            "cross": (cross[f"nngp_{i}"], cross[f"ntk_{i}"]),
        }
        for i, name in enumerate(names)
    }
    return out


@pytest.fixture(scope="module")
def reference_f32(nt_oracle):
    """RectifiedMonomial is NaN in float64 in neural-tangents; its float32 path runs."""
    x1, x2 = inputs()
    rect = [n for n in ARCHS if n.startswith("rectified_monomial")]
    f32 = nt_oracle(
        {"specs": [ARCHS[n] for n in rect], "tasks": ["kernels"], "x1": x1, "x2": x2, "x64": 0}
    )
    return {name: (f32[f"nngp_{i}"], f32[f"ntk_{i}"]) for i, name in enumerate(rect)}


# float32 roundoff (6e-8) amplified by neural-tangents' autodiff through arccos near θ = 0
# and two layers: 1e-4 relative leaves two orders of magnitude over what we observe (~1e-6).
RTOL_F32_REFERENCE = 1e-4


# neural-tangents' float32 path is NaN everywhere for degrees 1 and 2 as well (measured);
# degree 1 is checked against its Relu below, degree 2 against quadrature in test_dual.py.
@pytest.mark.slow  # degrees 0 and 3 are checked against quadrature by default (test_dual.py)
@pytest.mark.parametrize("name", ["rectified_monomial_0", "rectified_monomial_3"])
def test_rectified_monomial_matches_neural_tangents_float32_path(name, reference_f32, x64):
    x1, x2 = inputs()
    k = build(ARCHS[name])[2](x1, x2)
    for ours, ref, what in zip((k.nngp, k.ntk), reference_f32[name], ("nngp", "ntk")):
        ref = np.asarray(ref, np.float64)
        ok = np.isfinite(ref)  # NaN where a pair has correlation ±1 (the shared point)
        assert ok.mean() >= 0.9, f"{name} {what}: float32 oracle mostly NaN"
        assert np.all(np.isfinite(np.asarray(ours)))
        err = np.max(np.abs(np.asarray(ours)[ok] - ref[ok]))
        assert err <= RTOL_F32_REFERENCE * np.max(np.abs(ref[ok])), (name, what, err)


def test_rectified_monomial_1_is_relu(reference, x64):
    """max(x, 0)¹ = ReLU: our RectifiedMonomial(1) against neural-tangents' Relu network of the
    same architecture (its own RectifiedMonomial(1) is NaN), float64, 1e-6."""
    x1, x2 = inputs()
    relu_spec = [act("Relu") if n == act("RectifiedMonomial", degree=1) else n
                 for n in ARCHS["rectified_monomial_1"]]  # fmt: skip
    assert relu_spec == ARCHS["relu_depth2_ntk_bias"]
    ours = build(ARCHS["rectified_monomial_1"])[2](x1, x2)
    ref_nngp, ref_ntk = reference["relu_depth2_ntk_bias"]["cross"]
    assert_close(ours.nngp, ref_nngp, "rm1 vs neural-tangents relu nngp")
    assert_close(ours.ntk, ref_ntk, "rm1 vs neural-tangents relu ntk")


def test_table_covers_every_layer_and_both_parameterizations():
    used = set()

    def walk(spec):
        for name, arg in spec:
            used.add(name)
            if name in ("serial", "parallel"):
                walk(arg)
            if name == "Dense":
                used.add("param:" + arg["parameterization"])
                used.add("bias:" + ("none" if "b_std" not in arg else "set"))
                if arg.get("b_std") == 0.0:
                    used.add("bias:zero:" + arg["parameterization"])
                if any(v != 1 for v in arg.get("s", (1, 1))):
                    used.add("s:" + arg["parameterization"])

    for spec in ARCHS.values():
        walk(spec)
    nt_layers = {
        "Dense", "Relu", "LeakyRelu", "ABRelu", "Abs", "Erf", "Gelu", "Sin", "Cos", "Gaussian",
        "Rbf", "Exp", "Sign", "Monomial", "RectifiedMonomial", "Polynomial", "Hermite",
        "Elementwise", "ElementwiseNumerical", "serial", "parallel", "FanOut", "FanInSum",
        "FanInProd", "Identity", "param:ntk", "param:standard", "bias:none", "bias:set",
        "bias:zero:standard", "s:standard", "s:ntk",
    }  # fmt: skip
    assert nt_layers <= used, nt_layers - used
    assert len(ARCHS) >= 20


def assert_close(ours, ref, what, allow_ref_nan=False, min_finite=0.3):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, what
    assert np.all(np.isfinite(ours)), f"{what}: ours has non-finite entries"
    mask = np.isfinite(ref) if allow_ref_nan else np.ones(ref.shape, bool)
    if not allow_ref_nan:
        assert np.all(np.isfinite(ref)), f"{what}: the oracle returned NaN"
    assert mask.mean() >= min_finite, f"{what}: too few finite oracle entries to compare"
    if not mask.any():
        return
    scale = np.max(np.abs(ref[mask]))
    err = np.max(np.abs(ours[mask] - ref[mask]))
    assert err <= RTOL * scale, f"{what}: max |diff| {err:.3e} > {RTOL:g} × {scale:.3e}"


# In the slow suite (CI runs it too): cases whose dual and code path a default case already
# exercises. Slow → the default case that covers it: relu depth 1, 2 → depth 3 and 10; b = 0 →
# b = None; monomial 3, 5 → monomial 2; rectified monomial 1 → 0, 2, 3; sin → cos; rbf →
# gaussian; exp → gaussian, erf_affine (the affine-argument duals); abrelu → leaky_relu. The
# oracle answers all cases in one request either way.
SLOW_ARCHS = {
    "relu_depth1_ntk_nobias", "relu_depth2_ntk_bias", "relu_standard_b_zero", "abrelu", "sin",
    "rbf", "monomial_3", "monomial_5", "rectified_monomial_1", "exp",
}  # fmt: skip


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_ARCHS else n for n in ARCHS]
)
def test_kernel_matches_neural_tangents(name, reference, x64):
    x1, x2 = inputs()
    kernel_fn = build(ARCHS[name])[2]
    nan_ok = name.startswith("rectified_monomial")
    for case, args in (("sym", (x1, None)), ("cross", (x1, x2))):
        k = kernel_fn(*args)
        assert k.nngp.dtype == jnp.float64
        ref_nngp, ref_ntk = reference[name][case]
        if nan_ok and not np.isfinite(ref_nngp).any():
            assert np.all(np.isfinite(np.asarray(k.nngp))) and np.all(np.isfinite(k.ntk))
            continue  # all-NaN oracle: covered by the float32 path and tests/test_dual.py
        assert_close(k.nngp, ref_nngp, f"{name} {case} nngp", nan_ok)
        assert_close(k.ntk, ref_ntk, f"{name} {case} ntk", nan_ok)
        if case == "sym":  # the diagonal, including the exact-correlation-1 path
            # neural-tangents' RectifiedMonomial is NaN on the whole diagonal (θ = 0); ours is
            # checked there by the cov1 identity below and by tests/test_dual.py.
            assert_close(
                np.diag(k.nngp), np.diag(ref_nngp), f"{name} diag nngp", nan_ok, min_finite=0.0
            )
            np.testing.assert_allclose(np.diag(k.nngp), k.cov1, rtol=1e-12, atol=1e-14)
