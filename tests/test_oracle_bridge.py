"""The neural-tangents bridge returns the ReLU NNGP of the arc-cosine closed form."""

import numpy as np


def arccos_relu_nngp(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One Dense(W_std=1, no bias) + ReLU layer: Cho & Saul (2009) arc-cosine kernel, degree 1.

    K(x, y) = |x||y|/(2π d) · (sin θ + (π − θ) cos θ),  cos θ = x·y / (|x||y|).
    """
    d = x.shape[1]
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    cos = np.clip(x @ y.T / np.outer(nx, ny), -1.0, 1.0)
    theta = np.arccos(cos)
    return np.outer(nx, ny) / (2 * np.pi * d) * (np.sin(theta) + (np.pi - theta) * cos)


def test_oracle_returns_relu_nngp_of_arccos_closed_form(nt_oracle):
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((6, 4)), rng.standard_normal((3, 4))
    spec = [["Dense", {"out_dim": 8, "W_std": 1.0}], ["Relu", {}]]
    out = nt_oracle({"spec": spec, "tasks": ["kernel"], "x1": x1, "x2": x2, "x64": 1})
    assert out["nngp"].shape == (6, 3)
    assert out["nngp"].dtype == np.float64
    # float64 closed form vs float64 arctan2 route: agreement to roundoff.
    np.testing.assert_allclose(out["nngp"], arccos_relu_nngp(x1, x2), rtol=1e-12, atol=1e-14)
    # NTK of Dense-Relu in NTK parameterization: Θ = K_dense · E[φ'φ'] = K_dense (π − θ)/(2π).
    k0 = x1 @ x2.T / 4
    cos = np.clip(k0 / np.sqrt(np.outer(np.diag(x1 @ x1.T), np.diag(x2 @ x2.T)) / 16), -1, 1)
    np.testing.assert_allclose(
        out["ntk"], k0 * (np.pi - np.arccos(cos)) / (2 * np.pi), rtol=1e-12, atol=1e-14
    )


def test_oracle_reports_errors(nt_oracle):
    import pytest

    with pytest.raises(RuntimeError, match="oracle failed"):
        nt_oracle({"spec": [["NoSuchLayer", {}]], "tasks": ["kernel"], "x1": np.ones((2, 2))})
