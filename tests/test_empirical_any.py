"""The empirical NTK of functions not written with stax: every implementation ("jacobian",
"ntvp", "structured", "auto") against neural-tangents 0.6.5's ``empirical_ntk_fn``
(implementations 1 and 2, and 3 where it runs) on the same function text and weights.

Each model is Python text executed on both sides (here, and by reference/nt_empirical.py in the
reference environment), so both libraries differentiate one function. Tolerance: 1e-5 of the
kernel's largest entry in float32 (the issue's bar; float32 roundoff through these shallow
networks is ~1e-7 relative per operation, measured differences below 2e-6).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from theory.kernels.empirical import costs, empirical_ntk

MLP = """
def template():
    return {"hidden": [(np.zeros((6, 32)), np.zeros(32)), (np.zeros((32, 32)), np.zeros(32))],
            "out": {"w": np.zeros((32, 3)), "b": np.zeros(3)}}

def apply_fn(params, x):
    h = x
    for w, b in params["hidden"]:
        h = jnp.tanh(h @ w / np.sqrt(w.shape[0]) + b)
    return h @ params["out"]["w"] / np.sqrt(32.0) + params["out"]["b"]
"""

CNN = """
def template():
    return {"k1": np.zeros((3, 3, 2, 4)), "b1": np.zeros(4), "k2": np.zeros((2, 2, 4, 5)),
            "w": np.zeros((45, 2)), "b": np.zeros(2)}

def apply_fn(params, x):  # x: (n, 6, 6, 2), NHWC
    dn = ("NHWC", "HWIO", "NHWC")
    h = lax.conv_general_dilated(x, params["k1"], (1, 1), "SAME", dimension_numbers=dn)
    h = jax.nn.relu(h / np.sqrt(18.0) + params["b1"])
    h = lax.conv_general_dilated(h, params["k2"], (2, 2), "VALID", dimension_numbers=dn)
    h = jnp.tanh(h / 4.0).reshape(h.shape[0], -1)
    return h @ params["w"] / np.sqrt(45.0) + params["b"]
"""

SHARED = """
def template():
    return {"w": np.zeros((5, 5)), "v": np.zeros((5, 2))}

def apply_fn(params, x):  # one weight matrix used by two layers
    w = params["w"] / np.sqrt(5.0)
    h = jnp.tanh(x @ w)
    h = jnp.sin(h @ w + 0.5)
    return h @ params["v"]
"""

TOKENS = """
def template():
    return {"w1": np.zeros((4, 8)), "w2": np.zeros((8, 3)), "b": np.zeros(3)}

def apply_fn(params, x):  # x: (n, T, 4); a dense layer per position; output (n, T, 3)
    h = jnp.tanh(jnp.einsum("ntd,de->nte", x, params["w1"]) / 2.0)
    return jnp.einsum("nte,ek->ntk", h, params["w2"]) / np.sqrt(8.0) + params["b"]
"""

MODELS = {
    "mlp": (MLP, (6,)),
    "cnn": (CNN, (6, 6, 2)),
    "shared": (SHARED, (5,)),
    "tokens": (TOKENS, (5, 4)),
}


def build(source: str):
    scope = {"jax": jax, "jnp": jnp, "lax": lax, "np": np}
    exec(source, scope)  # noqa: S102 - the model texts above
    return scope["apply_fn"], scope["template"]


def draw_params(template, seed: int):
    leaves, treedef = jax.tree_util.tree_flatten(template())
    rng = np.random.default_rng(seed)
    drawn = [rng.standard_normal(np.shape(a)).astype(np.float32) for a in leaves]
    return jax.tree_util.tree_unflatten(treedef, drawn), drawn


def ask(nt_oracle, source, leaves, x1, x2, trace_axes=(-1,), diagonal_axes=()):
    req = {
        "script": "nt_empirical.py",
        "source": source,
        "x1": x1,
        "x64": 0,
        "implementations": json.dumps([1, 2, 3]),
        "trace_axes": json.dumps(list(trace_axes)),
        "diagonal_axes": json.dumps(list(diagonal_axes)),
        "vmap_axes": "null",
        **{f"params_{i}": a for i, a in enumerate(leaves)},
    }
    if x2 is not None:
        req["x2"] = x2
    return nt_oracle(req)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# slow: output-axes layouts that test_float64_against_brute_force_jacobians also covers
_SLOW = pytest.mark.slow
CASES = [
    ("mlp", (-1,), ()),
    pytest.param("mlp", (), (), marks=_SLOW),
    ("cnn", (-1,), ()),
    ("shared", (-1,), ()),
    ("tokens", (-1,), ()),
    ("tokens", (-1,), (1,)),
    pytest.param("tokens", (), (1,), marks=_SLOW),
]


@pytest.mark.parametrize(("model", "trace_axes", "diagonal_axes"), CASES)
def test_every_implementation_equals_neural_tangents(nt_oracle, model, trace_axes, diagonal_axes):
    source, point = MODELS[model]
    apply_fn, template = build(source)
    params, leaves = draw_params(template, 0)
    rng = np.random.default_rng(1)
    x1 = rng.standard_normal((5, *point)).astype(np.float32)
    x2 = rng.standard_normal((3, *point)).astype(np.float32)
    ref = ask(nt_oracle, source, leaves, x1, x2, trace_axes, diagonal_axes)
    for i in (1, 2):  # neural-tangents' Jacobian contraction and NTK-vector products run
        assert f"ntk_{i}" in ref, str(ref.get(f"error_{i}"))
    assert rel(ref["ntk_1"], ref["ntk_2"]) < 1e-5
    for impl in ("jacobian", "ntvp", "structured", "auto"):
        got = empirical_ntk(
            apply_fn, params, x1, x2, impl, trace_axes=trace_axes, diagonal_axes=diagonal_axes
        )
        assert got.shape == ref["ntk_1"].shape, (impl, got.shape)
        for i in (1, 2, 3):
            if f"ntk_{i}" in ref:  # 3 (structured derivatives) raises on the reference's jax
                assert rel(got, ref[f"ntk_{i}"]) < 1e-5, (impl, i, rel(got, ref[f"ntk_{i}"]))


def test_structured_uses_are_found_and_blocks_agree():
    """The jaxpr reading: the MLP's three weight matrices are structured uses (biases and
    nothing else take the Jacobian route); the shared weight is not (two uses); the CNN's
    dense read-out is, its filters are not. Blocked computation (batch_size 2 of 5 and 3
    points) equals the unblocked one to float32 roundoff, for every implementation."""
    from theory.kernels import empirical

    for model, n_uses in (("mlp", 3), ("shared", 1), ("cnn", 1), ("tokens", 2)):
        source, point = MODELS[model]
        apply_fn, template = build(source)
        params, _ = draw_params(template, 2)
        x = jnp.asarray(np.random.default_rng(3).standard_normal((5, *point)), jnp.float32)
        plan = empirical._plan(apply_fn, params, x, True)
        assert len(plan.uses) == n_uses, (model, plan.uses)
        if model not in ("cnn", "tokens"):  # blocking: one spatial, one sequence model
            continue
        for impl in ("jacobian", "ntvp", "structured"):
            whole = empirical_ntk(apply_fn, params, x, x[:3], impl)
            blocked = empirical_ntk(apply_fn, params, x, x[:3], impl, batch_size=2)
            assert rel(blocked, whole) < 1e-6, (model, impl)


AXES = [
    ((-1,), ()),
    ((-1,), (1,)),
    pytest.param((), (1,), marks=_SLOW),
    pytest.param((1, 2), (), marks=_SLOW),
    pytest.param((), (), marks=_SLOW),
]


@pytest.mark.parametrize(("trace_axes", "diagonal_axes"), AXES)
def test_float64_against_brute_force_jacobians(x64, trace_axes, diagonal_axes):
    """Independent of both libraries: Θ̂ from jax.jacrev of each point's output, flattened and
    multiplied, in float64 (1e-12 relative), for each output-axes choice on the token model
    (output (n, T, k): pairs over T and a trace over k; a diagonal over T; both traced;
    nothing reduced)."""
    apply_fn, template = build(TOKENS)
    params, _ = draw_params(template, 4)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
    rng = np.random.default_rng(5)
    x1, x2 = rng.standard_normal((3, 5, 4)), rng.standard_normal((2, 5, 4))

    def flat_jac(x):  # (T·k, P)
        j = jax.jacrev(lambda p: apply_fn(p, x[None])[0])(params)
        return jnp.concatenate([a.reshape(15, -1) for a in jax.tree_util.tree_leaves(j)], 1)

    full = np.stack([[flat_jac(a) @ flat_jac(b).T for b in x2] for a in x1])
    full = full.reshape(3, 2, 5, 3, 5, 3)  # (n1, n2, t, k, t', k')
    wants = {
        ((-1,), ()): np.einsum("nmtkuk->nmtu", full) / 3,  # pairs over T, trace over k
        ((-1,), (1,)): np.einsum("nmtktk->nmt", full) / 3,
        ((), (1,)): np.einsum("nmtktl->nmtkl", full),
        ((1, 2), ()): np.einsum("nmtktk->nm", full) / 15,
        ((), ()): np.einsum("nmtkul->nmtukl", full),
    }
    ta, da = trace_axes, diagonal_axes
    want = wants[(ta, da)]
    for impl in ("jacobian", "ntvp", "structured"):
        got = empirical_ntk(apply_fn, params, x1, x2, impl, trace_axes=ta, diagonal_axes=da)
        assert got.shape == want.shape, (ta, da, impl, got.shape)
        assert rel(got, want) < 1e-12, (ta, da, impl)


def test_equinox_model(x64):
    """An equinox MLP (a pytree of arrays and non-array leaves: activation functions, sizes),
    split with eqx.partition: every implementation equals brute-force Jacobians in float64,
    and the structured route finds its three weight matrices. The whole model passed as params
    is refused with the path of its first non-array leaf."""
    eqx = pytest.importorskip("equinox")
    model = eqx.nn.MLP(4, 3, 16, 2, activation=jnp.tanh, key=jax.random.key(0))
    model = jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, jnp.float64) if eqx.is_array(a) else a, model
    )
    params, static = eqx.partition(model, eqx.is_array)

    def apply_fn(p, x):
        return jax.vmap(eqx.combine(p, static))(x)

    x = np.random.default_rng(6).standard_normal((6, 4))
    leaves = jax.tree_util.tree_leaves(params)

    def flat_jac(xi):
        j = jax.jacrev(lambda p: apply_fn(p, xi[None])[0])(params)
        return jnp.concatenate([a.reshape(3, -1) for a in jax.tree_util.tree_leaves(j)], 1)

    js = [flat_jac(a) for a in x]
    want = np.array([[np.trace(a @ b.T) / 3 for b in js] for a in js])
    for impl in ("jacobian", "ntvp", "structured", "auto"):
        assert rel(empirical_ntk(apply_fn, params, x, None, impl), want) < 1e-12, impl
    from theory.kernels import empirical

    plan = empirical._plan(apply_fn, params, jnp.asarray(x), True)
    assert len(plan.uses) == 3 and len(leaves) == 6
    with pytest.raises(TypeError, match=r"params.*not an array"):
        empirical_ntk(lambda m, x: jax.vmap(m)(x), model, x)


def test_bad_inputs_name_themselves():
    apply_fn, template = build(MLP)
    params, _ = draw_params(template, 0)
    x = np.zeros((2, 6), np.float32)
    with pytest.raises(TypeError, match=r"x1 has dtype int"):
        empirical_ntk(apply_fn, params, np.zeros((2, 6), np.int32))
    with pytest.raises(TypeError, match=r"x2 has dtype bool"):
        empirical_ntk(apply_fn, params, x, np.zeros((2, 6), bool))
    bad = {**params, "name": "mlp"}
    with pytest.raises(TypeError, match=r"params\['name'\] is a str, not an array"):
        empirical_ntk(lambda p, x: apply_fn({k: p[k] for k in ("hidden", "out")}, x), bad, x)
    with pytest.raises(ValueError, match="implementation must be one of"):
        empirical_ntk(apply_fn, params, x, implementation=4)
    with pytest.raises(ValueError, match="trace_axes: axis 0 is the point axis"):
        empirical_ntk(apply_fn, params, x, trace_axes=(0,))
    with pytest.raises(ValueError, match="trace_axes and diagonal_axes share"):
        empirical_ntk(apply_fn, params, x, trace_axes=(1,), diagonal_axes=(-1,))
    with pytest.raises(ValueError, match="out of range"):
        empirical_ntk(apply_fn, params, x, trace_axes=(2,))


def test_cost_model_prefers_structured_for_wide_dense_layers():
    """The cost model of "auto" (operations from the jaxpr's shapes): for a width-512 MLP the
    structured route needs far fewer operations than Jacobian contraction (the (a·a')(δ·δ')
    factorization: n_in + k·n_out per pair instead of k·n_in·n_out per weight matrix), and
    "auto" takes it."""
    apply_fn, _ = build(MLP)

    def wide(p, x):
        h = jnp.tanh(x @ p["w1"])
        h = jnp.tanh(h @ p["w2"])
        return h @ p["w3"]

    rng = np.random.default_rng(0)
    p = {
        "w1": rng.standard_normal((16, 512)).astype(np.float32),
        "w2": rng.standard_normal((512, 512)).astype(np.float32) / 20,
        "w3": rng.standard_normal((512, 10)).astype(np.float32) / 20,
    }
    x = jnp.asarray(rng.standard_normal((50, 16)), jnp.float32)
    c = {k.implementation: k for k in costs(wide, p, x, None)}
    # measured: 16.5× fewer operations (the shared reverse passes, N·k·3F, dominate what is
    # left) and 240× less memory (no 512 × 512 Jacobian blocks per point and output)
    assert c["structured"].flops * 10 < c["jacobian"].flops
    assert c["structured"].bytes * 100 < c["jacobian"].bytes
    from theory.kernels import empirical

    assert empirical.choose(wide, p, x, None, (-1,), ()) == "structured"


def test_jitted_helpers_are_inlined_and_loops_stay_whole(x64):
    """A weight used inside a jitted helper is still found as a structured use (the helper's
    body is inlined when the jaxpr is read); a weight used inside `lax.scan` takes the
    Jacobian route and the scan stays one step (its 50 iterations are not unrolled). Both
    models' kernels equal brute-force float64 Jacobians to 1e-12 by every implementation;
    float32 inputs with float64 parameters work too (the output's dtype drives the basis)."""
    from theory.kernels import empirical

    @jax.jit
    def dense(w, h):
        return jnp.tanh(h @ w)

    def jitted(p, x):
        return dense(p["w"], x) @ p["v"]

    def scanned(p, x):
        def step(h, _):
            return jnp.tanh(h @ p["w"]), None

        h, _ = lax.scan(step, x, None, length=50)
        return h @ p["v"]

    rng = np.random.default_rng(7)
    p = {"w": rng.standard_normal((4, 4)) / 2, "v": rng.standard_normal((4, 2))}
    x = rng.standard_normal((3, 4))
    for f, n_uses, max_steps in ((jitted, 2, 10), (scanned, 1, 10)):
        plan = empirical._plan(f, p, jnp.asarray(x), True)
        assert len(plan.uses) == n_uses and len(plan.steps) <= max_steps, (f, plan.steps)

        def flat_jac(xi, f=f):
            j = jax.jacrev(lambda q: f(q, xi[None])[0])(p)
            return jnp.concatenate([a.reshape(2, -1) for a in jax.tree_util.tree_leaves(j)], 1)

        js = [flat_jac(a) for a in x]
        want = np.array([[np.trace(a @ b.T) / 2 for b in js] for a in js])
        for impl in ("jacobian", "ntvp", "structured"):
            assert rel(empirical_ntk(f, p, x, None, impl), want) < 1e-12, (f, impl)
    got = empirical_ntk(jitted, p, x.astype(np.float32), None, "ntvp")
    assert got.dtype == jnp.float64 and rel(got, empirical_ntk(jitted, p, x, None)) < 1e-6
    with pytest.raises(ValueError, match="params has no arrays"):
        empirical_ntk(lambda q, y: y, {}, x)
