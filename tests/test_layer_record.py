"""The typed layer record: every stax layer is a `Layer` (a named triple) whose fields are
what serial, parallel, batch and the structured empirical NTK read."""

import inspect

import jax
import numpy as np
import pytest

from theory.kernels import batch, empirical_ntk, stax
from theory.kernels.empirical import resolve_implementation


def _builders():
    """Every public layer builder of stax that takes no required arguments, called."""
    required = {
        "Dense": (3,), "Conv": (3, (2, 2)), "ConvTranspose": (3, (2, 2)), "ConvLocal": (3, (2, 2)),
        "AvgPool": ((2, 2),), "SumPool": ((2, 2),), "MaxPool": ((2, 2),), "FanOut": (2,),
        "GlobalSelfAttention": (4, 4, 2, 1), "Dropout": (0.5,), "Monomial": (2,),
        "RectifiedMonomial": (2,), "Polynomial": ([0.0, 1.0],), "Hermite": (2,),
        "LeakyRelu": (0.1,), "ABRelu": (-0.5, 1.0), "Index": (stax.Slice[:, 1:],),
        "ImageResize": ((-1, 2, 2, -1), "linear"),
    }  # fmt: skip
    out = {}
    for name in stax.__all__:
        obj = getattr(stax, name)
        if not (inspect.isfunction(obj) and name[0].isupper()):
            continue
        if name == "ElementwiseNumerical":
            out[name] = obj(jax.numpy.tanh, deg=5)
            continue
        if name == "Elementwise":
            out[name] = obj(fn=jax.numpy.tanh)
            continue
        out[name] = obj(*required.get(name, ()))
    return out


def test_every_layer_is_a_typed_record():
    layers = _builders()
    public = [n for n in stax.__all__ if n[0].isupper() and inspect.isfunction(getattr(stax, n))]
    assert sorted(layers) == sorted(public) and len(public) >= 39  # every layer, not a sample
    layers["serial"] = stax.serial(stax.Dense(2), stax.Relu())
    layers["parallel"] = stax.parallel(stax.Dense(2), stax.Relu())
    for name, layer in layers.items():
        assert isinstance(layer, stax.Layer), name
        init_fn, apply_fn, kernel_fn = layer  # neural-tangents' unpacking still works
        assert isinstance(apply_fn, stax.ApplyFn) and isinstance(kernel_fn, stax.KernelFn), name
        assert layer.requires is kernel_fn.diagonal and layer.rule is apply_fn.rule, name
        assert callable(init_fn), name


def test_rules_describe_the_linear_structure():
    dense = stax.Dense(5, W_std=1.3, b_std=0.2, parameterization="standard", s=(2, 3))
    assert dense.rule == stax.DenseRule(1.3, 0.2, "standard", (2, 3))
    relu = stax.Relu()
    assert isinstance(relu.rule, stax.ElementwiseRule)
    np.testing.assert_array_equal(relu.rule.fn(np.array([-1.0, 2.0])), [0.0, 2.0])
    assert isinstance(stax.Identity().rule, stax.IdentityRule)
    assert stax.Conv(3, (2, 2)).rule is None  # no structured rule: the Jacobian route
    net = stax.serial(stax.Dense(4), stax.Erf(), stax.Dense(1))
    assert isinstance(net.rule, stax.SerialRule) and len(net.rule.children) == 3
    assert net.rule.children[0] == stax.DenseRule(1.0, None, "ntk", (1, 1))
    assert stax.rule_of(net.apply_fn) is net.rule
    assert stax.rule_of(lambda p, x: x) is None
    # what the rules are for: the structured empirical NTK takes serial Dense/activation chains
    _, params = net.init_fn(jax.random.key(0), (2, 3))
    assert resolve_implementation(net.apply_fn, params, "auto") == "structured"
    conv = stax.serial(stax.Conv(2, (2,)), stax.Relu(), stax.Flatten(), stax.Dense(1))
    _, params = conv.init_fn(jax.random.key(0), (2, 5, 1))
    assert resolve_implementation(conv.apply_fn, params, "auto", input_ndim=3) == "jacobian"


def test_requirements_are_read_from_the_record():
    assert stax.Flatten().requires == stax.Diagonal(stax.YES, stax.YES)
    assert stax.GlobalAvgPool().requires == stax.Diagonal(stax.MAYBE, stax.YES)
    assert bool(stax.serial(stax.Conv(2, (3, 3)), stax.Relu(), stax.Flatten()).requires)
    assert not bool(stax.serial(stax.Conv(2, (3, 3)), stax.Relu(), stax.GlobalAvgPool()).requires)


def test_a_users_own_apply_fn_is_accepted_without_a_rule():
    """A triple whose kernel_fn is ours but whose apply_fn is the user's: serial wraps it with
    no rule, so the empirical NTK takes the Jacobian route and still equals the analytic
    structure's result on the same function."""
    init_fn, apply_fn, kernel_fn = stax.Dense(3)
    mine = (init_fn, lambda p, x, **kw: apply_fn(p, x), kernel_fn)
    net = stax.serial(mine, stax.Relu(), stax.Dense(1))
    ref = stax.serial(stax.Dense(3), stax.Relu(), stax.Dense(1))
    assert net.rule.children[0] is None
    x = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    _, params = ref.init_fn(jax.random.key(1), x.shape)
    assert resolve_implementation(net.apply_fn, params, "auto") == "jacobian"
    got = empirical_ntk(net.apply_fn, params, x)
    want = empirical_ntk(ref.apply_fn, params, x, implementation="structured")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_what_is_not_a_layer_is_refused_naming_the_argument():
    with pytest.raises(TypeError, match=r"serial: argument 1 is not a stax layer"):
        stax.serial(stax.Dense(2), (lambda k, s: (s, ()), lambda p, x: x))
    with pytest.raises(TypeError, match=r"parallel: argument 0 is not a stax layer.*function"):
        stax.parallel(lambda p, x: x)
    with pytest.raises(TypeError, match=r"serial: argument 0 .*kernel_fn from theory"):
        stax.serial((lambda k, s: (s, ()), lambda p, x: x, lambda x1, x2=None: x1))
    with pytest.raises(TypeError, match="batch needs a kernel function"):
        batch(42, 4)
