"""Shared test set-up: 4 host CPU devices, an x64 fixture, the neural-tangents oracle, and a
Gaussian-expectation quadrature (`gauss_expectation`) for checking duals.

``XLA_FLAGS`` must be set before JAX is first imported, hence at the top of this file.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("THEORY_NO_PROGRESS", "1")

import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
REF_PYTHON = REPO / ".venv-ref" / "bin" / "python"
ORACLE = REPO / "reference" / "nt_oracle.py"


@pytest.fixture
def x64():
    """Run the test with float64 enabled, restoring the previous setting afterwards."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


def run_oracle(request: dict, timeout: float = 600) -> dict[str, np.ndarray]:
    """Send ``request`` to neural-tangents 0.6.5 in ``.venv-ref`` and return its arrays.

    ``spec`` and ``tasks`` may be given as Python lists; they are sent as JSON.
    """
    if not REF_PYTHON.exists():
        raise RuntimeError(f"{REF_PYTHON} is missing: run `make reference` (make test does)")
    req = dict(request)
    for key in ("spec", "specs", "tasks"):
        if key in req and not isinstance(req[key], str):
            req[key] = json.dumps(req[key])
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "request.npz", Path(d) / "result.npz"
        np.savez(src, **req)
        proc = subprocess.run(
            [str(REF_PYTHON), str(ORACLE), str(src), str(dst)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"neural-tangents oracle failed:\n{proc.stderr[-4000:]}")
        with np.load(dst) as z:
            return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def nt_oracle():
    """A callable ``request -> arrays`` backed by neural-tangents (see reference/nt_oracle.py)."""
    return run_oracle


# Gaussian expectations by quadrature, the reference for every dual (tests/test_dual.py,
# tests/test_stax.py): Gauss–Legendre on [−12, 12] (truncation e^{−72}), split where the
# integrand has its kink or jump so that each piece is smooth and the rule converges
# geometrically; it agrees with every closed form in theory.kernels.dual to 1e-13 (measured).
LIMIT, _NODES = 12.0, 200
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_NODES)


def legendre(a, b):
    """Gauss–Legendre nodes and weights on [a, b] (arrays of equal shape; a trailing axis)."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    half = (b - a)[..., None] / 2
    return (a[..., None] + b[..., None]) / 2 + half * _GL_X, half * _GL_W


def normal_pdf(x):
    return np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)


def gauss_expectation(f, g, q11, q22, q12):
    """E[f(z₁) g(z₂)] for the centred Gaussian pair of covariance [[q11, q12], [q12, q22]].

    f and g may have a kink or a jump at 0 only (all the activations here): the u-integral
    is split at u = 0 and, for each u, the v-integral at the v where z₂ = 0."""
    s1, s2 = math.sqrt(q11), math.sqrt(q22)
    rho = q12 / (s1 * s2)
    c = math.sqrt(1 - rho * rho)
    u, wu = legendre([-LIMIT, 0.0], [0.0, LIMIT])
    u, wu = u.ravel(), (wu * normal_pdf(u)).ravel()
    cut = np.clip(-rho * u / c, -LIMIT, LIMIT)
    lo, hi = np.full_like(u, -LIMIT), np.full_like(u, LIMIT)
    v, wv = legendre(np.stack([lo, cut]), np.stack([cut, hi]))  # (2 pieces, U, nodes)
    inner = np.sum(wv * normal_pdf(v) * g(s2 * (rho * u[None, :, None] + c * v)), axis=(0, 2))
    return float(np.sum(wu * f(s1 * u) * inner))


def quad_check(fn, value, q11, q22, q12, rtol, what):
    """|closed form − quadrature| ≤ rtol · √(E fn(z₁)² E fn(z₂)²)."""
    want = gauss_expectation(fn, fn, q11, q22, q12)
    scale = math.sqrt(
        gauss_expectation(lambda z: fn(z) ** 2, np.ones_like, q11, q22, q12)
        * gauss_expectation(np.ones_like, lambda z: fn(z) ** 2, q11, q22, q12)
    )
    assert abs(value - want) <= rtol * scale, (
        f"{what}: closed form {value:.15g} vs quadrature {want:.15g} "
        f"(|diff|/scale {abs(value - want) / scale:.1e} > {rtol:g})"
    )
