"""neural-tangents' `Gabor`, `Sigmoid_like` and `ExpNormalized`: against neural-tangents (one
script, both libraries, float64) and against their definitions.

Tolerance for the script 1e-10 of the largest entry: the same closed forms evaluated in
different orders (ours: e^{g±−1/2}, neural-tangents: e^{−num/2D}·e^{2q12/D}), roundoff only.
The Gabor dual itself is checked against 2-D quadrature in tests/test_dual.py.
"""

import math

import numpy as np
import pytest
from conftest import gauss_expectation

from theory.kernels import stax

RTOL = 1e-10

SCRIPT = """
def run(nt, a):
    stax = nt.stax
    out = {}
    nets = {
        "gabor": [stax.Dense(6, 1.4, 0.2), stax.Gabor(), stax.Dense(3, 1.1, 0.1), stax.Gabor()],
        "sigmoid_like": [stax.Dense(6, 1.3, 0.3), stax.Sigmoid_like()],
        "exp_normalized": [stax.Dense(6, 1.2, 0.1), stax.ExpNormalized(0.7, -0.5)],
        "exp_normalized_clip": [stax.Dense(6, 1.2), stax.Relu(), stax.Dense(4),
                                stax.ExpNormalized(1.3, -1.0, do_clip=True)],
    }
    for name, layers in nets.items():
        *_, kernel_fn = stax.serial(*layers, stax.Dense(1, 0.9, 0.1))
        for same in (0, 1):
            k = kernel_fn(a["x1"], None if same else a["x2"])
            out[f"{name}_{same}_nngp"], out[f"{name}_{same}_ntk"] = k.nngp, k.ntk
            out[f"{name}_{same}_cov1"] = k.cov1
    return out
"""


def _arrays():
    rng = np.random.default_rng(23)
    return {"x1": rng.standard_normal((4, 3)), "x2": rng.standard_normal((3, 3))}


def test_activations_agree_with_neural_tangents(x64, nt_script):
    nt_script(SCRIPT, _arrays(), RTOL)


def test_sigmoid_like_is_the_erf_approximation_of_the_sigmoid(x64):
    """Its kernel is E[φ(z₁)φ(z₂)] of φ(x) = ½ erf(x/2.402…) + ½, by quadrature (1e-10), and
    φ is within 0.02 of the logistic sigmoid on [−5, 5]."""
    from scipy.special import erf

    phi = lambda x: 0.5 * erf(x / 2.4020563531719796) + 0.5  # noqa: E731
    x = np.array([[1.0, 0.5], [0.2, -1.0]])
    k = stax.serial(stax.Dense(1), stax.Sigmoid_like())[2](x, None, "nngp")
    q = x @ x.T / 2
    for i, j in ((0, 0), (0, 1), (1, 1)):
        want = gauss_expectation(phi, phi, q[i, i], q[j, j], q[i, j])
        assert float(k[i, j]) == pytest.approx(want, rel=1e-10)
    t = np.linspace(-5, 5, 101)
    assert np.max(np.abs(phi(t) - 1 / (1 + np.exp(-t)))) < 0.02


def test_exp_normalized_is_its_formula(x64):
    """K ← √(K11 K22) exp(γ(ρ + shift)) and Θ ← γ Θ exp(γ(ρ + shift)) on a Dense layer's
    kernel, written out; ``apply_fn`` refuses (it has no finite network)."""
    gamma, shift = 0.7, -0.5
    x = np.array([[1.0, 0.5, -0.2], [0.3, -1.0, 0.4], [0.0, 2.0, 1.0]])
    dense = stax.Dense(5, 1.2, 0.1)
    base = dense[2](x, None)
    k = stax.serial(dense, stax.ExpNormalized(gamma, shift))[2](x, None)
    q = np.asarray(base.nngp)
    d = np.sqrt(np.diag(q))
    e = np.exp(gamma * (q / np.outer(d, d) + shift))
    np.testing.assert_allclose(k.nngp, np.outer(d, d) * e, rtol=1e-13)
    np.testing.assert_allclose(k.ntk, gamma * np.asarray(base.ntk) * e, rtol=1e-13)
    assert float(k.cov1[0]) == pytest.approx(q[0, 0] * math.exp(gamma * (1 + shift)), rel=1e-13)
    init_fn, apply_fn, _ = stax.ExpNormalized()
    with pytest.raises(NotImplementedError, match="finite"):
        apply_fn((), x)
    with pytest.raises(ValueError, match="gamma"):
        stax.ExpNormalized(gamma=float("nan"))
