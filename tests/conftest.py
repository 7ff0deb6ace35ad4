"""Shared test set-up: 4 host CPU devices, an x64 fixture, and the neural-tangents oracle.

``XLA_FLAGS`` must be set before JAX is first imported, hence at the top of this file.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("THEORY_NO_PROGRESS", "1")

import json  # noqa: E402
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
