"""Shared test set-up: 4 host CPU devices, an x64 fixture, the neural-tangents oracle, and a
Gaussian-expectation quadrature (`gauss_expectation`) for checking duals.

``XLA_FLAGS`` must be set before JAX is first imported, hence at the top of this file.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("THEORY_NO_PROGRESS", "1")

import ast  # noqa: E402
import functools  # noqa: E402
import hashlib  # noqa: E402
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

# Test files in decreasing order of cost, so that `pytest -n 2 --dist loadfile
# --no-loadscope-reorder` (the Makefile's command) hands the longest files out first and the
# two workers finish together (longest-processing-time-first scheduling). Without it xdist
# orders files by their number of tests, and a file of three long theorem checks ran last,
# alone, for 32 s of a 10 min 45 s run. Seconds: a fresh-clone run of the default suite on 2
# cores (stop 23; test_empirical_any.py stop 24; `--durations=0`, less the tests since moved
# to slow); a file not listed costs under 5 s and keeps its place after these. Stale values
# cost balance, never correctness.
FILE_SECONDS = {
    "test_singular_classifiers.py": 85, "test_empirical.py": 66, "test_stax.py": 74,
    "test_attention.py": 56, "test_criticality.py": 54, "test_kernels_oracle.py": 53,
    "test_attention_features.py": 51, "test_spatial_oracle.py": 45, "test_channel_axis.py": 45,
    "theorems/test_jacot2018_ntk.py": 44, "test_conv_variants_oracle.py": 43,
    "test_normalization_oracle.py": 41, "test_readme.py": 40, "test_empirical_any.py": 40,
    "test_attention_kernel_oracle.py": 38, "test_singular_kernels.py": 36, "test_disk.py": 35,
    "test_information.py": 31, "test_numerics.py": 31, "test_aggregate_oracle.py": 29,
    "test_dual.py": 35, "test_image_resize.py": 30, "test_validation_properties.py": 16,
    "test_complexity.py": 16,
    "test_spatial_tiling.py": 13, "test_predict.py": 11,
    "test_empirical_fn_nt.py": 22, "test_index_nt.py": 10, "test_batch_axis_nt.py": 12,
    "test_masking.py": 25,
    "test_predict_nt.py": 8, "test_requirements_nt.py": 15,
    "test_activations_nt.py": 8, "test_branching_nt.py": 6,
    "theorems/test_radhakrishnan2023.py": 10, "test_experiment_ntk.py": 9, "test_common.py": 9,
}  # fmt: skip


def pytest_collection_modifyitems(config, items):
    """Longest files first (see FILE_SECONDS); the order inside a file is kept."""
    tests = REPO / "tests"

    def cost(item):
        path = Path(str(item.path)).resolve()
        rel = path.relative_to(tests).as_posix() if path.is_relative_to(tests) else ""
        return -FILE_SECONDS.get(rel, 0)

    items[:] = sorted(items, key=cost)  # stable: files of equal cost keep collection order


@pytest.fixture
def x64():
    """Run the test with float64 enabled, restoring the previous setting afterwards."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


# Recorded oracle answers. neural-tangents is slow (its op-by-op kernels and a fresh JAX per
# process: 215 s of the default suite's CPU time, measured), and its answers are a pure
# function of the request, so each answer is kept under tests/oracle_cache/, named by a hash
# of the request's arrays, the oracle script's code and the pinned reference environment
# (reference/requirements.txt): changing any of them changes the name, and the live oracle
# answers instead. THEORY_ORACLE selects the mode: "cached" (default: recorded answer, else
# live), "live" (never read the cache), "record" (live, and write the answer and its request;
# `make oracle-cache` rebuilds the directory). The slow suite's
# tests/test_oracle_cache.py re-asks neural-tangents every recorded request and requires the
# same answer, so a recorded answer is checked against the live library on every CI run.
ORACLE_CACHE = REPO / "tests" / "oracle_cache"
ORACLE_MODES = ("cached", "live", "record")


def _encode(request: dict) -> dict:
    req = dict(request)
    for key in ("spec", "specs", "tasks", "jit"):
        if key in req and not isinstance(req[key], (str, np.ndarray)):
            req[key] = json.dumps(req[key])
    return {k: np.asarray(v) for k, v in req.items()}


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read into memory."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _script(request: dict) -> Path:
    """The oracle script a request is for: ``request["script"]`` (a file name in reference/),
    else reference/nt_oracle.py."""
    name = request.get("script")
    return ORACLE if name is None else REPO / "reference" / str(np.asarray(name))


@functools.cache
def _environment_digest(script: Path = ORACLE) -> bytes:
    """What an answer depends on besides its request, read once per session: the oracle
    script's code without its comments, docstrings and layout (its syntax tree, so that
    rewording a comment does not discard the recorded answers) and the pinned reference
    environment."""
    tree = ast.parse(script.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    requirements = (REPO / "reference" / "requirements.txt").read_bytes()
    return ast.dump(tree).encode() + requirements


def oracle_key(request: dict) -> str:
    """The name of ``request``'s recorded answer (see ORACLE_CACHE)."""
    h = hashlib.sha256(_environment_digest(_script(request)))
    for k, v in sorted(_encode(request).items()):
        h.update(f"{k}|{v.dtype.str}|{v.shape}|".encode())
        h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()[:24]


def live_oracle(request: dict, timeout: float = 600) -> dict[str, np.ndarray]:
    """Ask neural-tangents 0.6.5 in ``.venv-ref`` (a subprocess), never the cache."""
    if not REF_PYTHON.exists():
        raise RuntimeError(f"{REF_PYTHON} is missing: run `make reference` (make test does)")
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "request.npz", Path(d) / "result.npz"
        np.savez(src, **_encode(request))
        proc = subprocess.run(
            [str(REF_PYTHON), str(_script(request)), str(src), str(dst)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"neural-tangents oracle failed:\n{proc.stderr[-4000:]}")
        return load_npz(dst)


def run_oracle(request: dict, timeout: float = 600) -> dict[str, np.ndarray]:
    """neural-tangents 0.6.5's answer to ``request`` (see reference/nt_oracle.py): recorded, or
    live (see ORACLE_CACHE for the modes). ``spec``, ``specs``, ``tasks`` and ``jit`` may be
    given as Python lists; they are sent as JSON."""
    mode = os.environ.get("THEORY_ORACLE", "cached")
    if mode not in ORACLE_MODES:
        raise ValueError(f"THEORY_ORACLE must be one of {ORACLE_MODES}, got {mode!r}")
    path = ORACLE_CACHE / f"{oracle_key(request)}.npz"
    if mode == "cached" and path.exists():
        return load_npz(path)
    out = live_oracle(request, timeout)
    if mode == "record":
        ORACLE_CACHE.mkdir(exist_ok=True)
        for target, arrays in ((path, out), (path.with_suffix(".request.npz"), _encode(request))):
            tmp = target.with_name(target.name + ".tmp.npz")
            np.savez_compressed(tmp, **arrays)
            os.replace(tmp, target)
    return out


@pytest.fixture(scope="session")
def nt_oracle():
    """A callable ``request -> arrays`` backed by neural-tangents (see reference/nt_oracle.py)."""
    return run_oracle


def compare_nt_script(source: str, arrays: dict, rtol, *, x64: bool = True) -> None:
    """Run one script written against neural-tangents' public API in both libraries and assert
    they agree (reference/nt_script.py): ``source`` defines ``run(nt, a) -> dict of arrays``;
    the oracle runs it with ``nt = neural_tangents`` 0.6.5, this process with
    ``nt = theory.kernels`` under jax 0.4's random streams (``jax_threefry_partitionable``
    False: both draw the same networks). Every returned array must have the same shape and
    agree to ``rtol`` of its largest entry (a float, or a function of the array's name); an
    error on either side fails the test, and the two must return the same names. Returns
    nothing: it asserts."""
    import jax.numpy as jnp

    import theory.kernels as ours

    req = {"script": "nt_script.py", "source": source, "x64": int(x64)}
    req.update({f"a_{k}": v for k, v in arrays.items()})
    ref = run_oracle(req)
    assert "error" not in ref, str(ref.get("error"))
    scope = {"jax": jax, "jnp": jnp, "np": np}
    exec(source, scope)  # noqa: S102 - the test's own script text
    with jax.threefry_partitionable(False):
        got = {k: np.asarray(v) for k, v in scope["run"](ours, arrays).items()}
    assert sorted(got) == sorted(ref)
    for name in sorted(ref):
        want, have = ref[name], got[name]
        assert have.shape == want.shape, (name, have.shape, want.shape)
        assert np.all(np.isfinite(have)), name
        tol = rtol(name) if callable(rtol) else rtol
        np.testing.assert_allclose(
            have, want, rtol=tol, atol=tol * np.max(np.abs(want)), err_msg=name
        )


@pytest.fixture(scope="session")
def nt_script():
    """`compare_nt_script`: one script, both libraries, compared."""
    return compare_nt_script


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
