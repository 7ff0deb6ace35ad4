"""Property tests of input validation (hypothesis): generated bad inputs raise ValueError or
TypeError naming the argument; generated good inputs give finite, symmetric, PSD kernels.

Kept fast and reproducible: few examples, ``derandomize=True`` (the same examples on every
run, as CI needs), no deadline (the first call of a shape compiles).
"""

import jax
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from theory.kernels import batch, empirical_ntk, monte_carlo_kernel, predict, stax

FAST = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

_INIT, _APPLY, _KERNEL = stax.serial(
    stax.Dense(4, W_std=1.3, b_std=0.1), stax.Relu(), stax.Dense(1)
)
_, _PARAMS = _INIT(jax.random.PRNGKey(0), (1, 3))

# Every public kernel function, as f(x1, x2) on inputs with 3 features.
KERNEL_FUNCTIONS = {
    "kernel_fn": lambda x1, x2: _KERNEL(x1, x2),
    "batch": lambda x1, x2: batch(_KERNEL, 2)(x1, x2),
    "empirical_ntk": lambda x1, x2: empirical_ntk(_APPLY, _PARAMS, x1, x2),
    "monte_carlo_kernel": lambda x1, x2: monte_carlo_kernel(
        _INIT, _APPLY, jax.random.PRNGKey(0), x1, x2, n_samples=2
    ),
}
FUNCTIONS = st.sampled_from(sorted(KERNEL_FUNCTIONS))
# every function takes inputs of any shape (n_points, ...): finite networks as they are, and a
# Dense network's kernel acts on the channels of NHWC inputs (neural-tangents' rule)
ANY_SHAPE = {"kernel_fn", "batch", "empirical_ntk", "monte_carlo_kernel"}

finite_floats = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=64)


def matrices(n, d=None):
    """Finite float64 matrices with a row count from ``n`` and 3 (or ``d``) features."""
    return st.tuples(n, st.just(3) if d is None else d).flatmap(
        lambda s: hnp.arrays(np.float64, s, elements=finite_floats)
    )


@FAST
@given(
    fn=FUNCTIONS,
    which=st.sampled_from(["x1", "x2"]),
    x=matrices(n=st.integers(1, 4)),
    data=st.data(),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_nan_or_inf_anywhere_is_refused_naming_the_argument(fn, which, x, data, bad):
    i = data.draw(st.integers(0, x.shape[0] - 1), label="row")
    j = data.draw(st.integers(0, x.shape[1] - 1), label="column")
    y = x.copy()
    y[i, j] = bad
    args = (y, x) if which == "x1" else (x, y)
    with pytest.raises(ValueError, match=f"{which} contains NaN or inf"):
        KERNEL_FUNCTIONS[fn](*args)


@FAST
@given(
    fn=FUNCTIONS,
    shape=st.one_of(
        hnp.array_shapes(min_dims=0, max_dims=1, min_side=1, max_side=4),
        hnp.array_shapes(min_dims=3, max_dims=4, min_side=1, max_side=3),
        st.tuples(st.just(0), st.integers(1, 3)),
        st.tuples(st.integers(1, 3), st.just(0)),
    ),
)
def test_wrong_shapes_are_refused_naming_the_argument(fn, shape):
    if len(shape) == 2 and shape[0] == 0:
        match = "x1 must have at least one point"
    elif len(shape) == 2:
        match = "x1 must have at least one feature"
    elif fn in ANY_SHAPE:  # finite networks take any (n_points, ...); fewer than 2 axes fail
        if len(shape) >= 2:
            return
        match = r"x1 must be an array of shape \(n_points, \.\.\.\) with at least 2 axes"
    else:
        match = r"x1 must be a 2-D array"
    with pytest.raises(ValueError, match=match):
        KERNEL_FUNCTIONS[fn](np.ones(shape), None)


@FAST
@given(fn=FUNCTIONS, d2=st.integers(1, 6).filter(lambda d: d != 3))
def test_mismatched_feature_dimensions_are_refused(fn, d2):
    with pytest.raises(ValueError, match="x1 and x2 must have the same feature dimension"):
        KERNEL_FUNCTIONS[fn](np.ones((2, 3)), np.ones((2, d2)))


@FAST
@given(
    fn=FUNCTIONS,
    which=st.sampled_from(["x1", "x2"]),
    dtype=st.sampled_from(
        [np.float16, ml_dtypes.bfloat16, np.complex64, np.complex128, np.str_, np.object_]
    ),
)
def test_unsupported_dtypes_are_refused_naming_the_argument(fn, which, dtype):
    good = np.ones((2, 3))
    bad = np.ones((2, 3)).astype(dtype)
    args = (bad, good) if which == "x1" else (good, bad)
    with pytest.raises(TypeError, match=which):
        KERNEL_FUNCTIONS[fn](*args)


@FAST
@given(
    arg=st.sampled_from(["W_std", "b_std"]),
    value=st.one_of(
        st.floats(max_value=-1e-300, allow_infinity=True),
        st.just(np.nan),
        st.just(np.inf),
    ),
)
def test_negative_nan_or_infinite_stds_are_refused(arg, value):
    with pytest.raises(ValueError, match=f"{arg} must be a finite number >= 0"):
        stax.Dense(4, **{arg: value})


@FAST
@given(
    get=st.one_of(
        st.text(max_size=6).filter(lambda s: s not in ("nngp", "ntk")),
        st.lists(st.sampled_from(["nngp", "ntk", "cov1", "ntk ", ""]), max_size=3).filter(
            lambda g: not g or not set(g) <= {"nngp", "ntk"}
        ),
    ),
    fn=st.sampled_from(["kernel_fn", "batch", "monte_carlo_kernel"]),
)
def test_bad_get_is_refused(get, fn):
    get = tuple(get) if isinstance(get, list) else get
    call = {
        "kernel_fn": lambda: _KERNEL(np.ones((2, 3)), get=get),
        "batch": lambda: batch(_KERNEL, 2)(np.ones((2, 3)), get=get),
        "monte_carlo_kernel": lambda: monte_carlo_kernel(
            _INIT, _APPLY, jax.random.PRNGKey(0), np.ones((2, 3)), get=get
        ),
    }[fn]
    with pytest.raises(ValueError, match="get must be"):
        call()


@FAST
@given(
    k=hnp.arrays(
        np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), elements=finite_floats
    )
)
def test_predict_refuses_non_square_kernels_naming_them(k):
    if k.ndim == 2 and k.shape[0] == k.shape[1]:
        k = np.ones((k.shape[0], k.shape[0] + 1))
    with pytest.raises(ValueError, match=r"k_train_train must have shape \(\d+, \d+\)"):
        predict.gradient_descent_mse(k, np.ones((k.shape[0], 1)))


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    x=matrices(n=st.integers(1, 6), d=st.integers(1, 4)),
    depth=st.integers(1, 3),
    act=st.sampled_from([stax.Relu, stax.Erf, stax.Gelu, stax.Abs]),
    W_std=st.floats(0.5, 2.0),
    b_std=st.floats(0.0, 1.0),
)
def test_good_inputs_give_finite_symmetric_psd_kernels(x, depth, act, W_std, b_std):
    """Tolerances: symmetry to 1e-12 relative and λ_min ≥ −1e-10·λ_max, float64 roundoff
    through a few layers (the kernels are computed with x2 = None, mirrored tiles)."""
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(8, W_std=W_std, b_std=b_std), act()]
    _, _, kernel_fn = stax.serial(*layers, stax.Dense(1, W_std=W_std, b_std=b_std))
    with jax.enable_x64(True):
        k = kernel_fn(x)
        for name in ("nngp", "ntk"):
            m = np.asarray(getattr(k, name))
            assert m.dtype == np.float64 and m.shape == (x.shape[0],) * 2
            assert np.all(np.isfinite(m)), name
            scale = max(np.max(np.abs(m)), 1e-300)
            assert np.max(np.abs(m - m.T)) <= 1e-12 * scale, name
            assert np.linalg.eigvalsh(m)[0] >= -1e-10 * scale, name
