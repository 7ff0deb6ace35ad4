"""What the reference benchmark scripts share (``.venv-ref`` only; never imports ``theory``):
the timing function the project's own benchmarks use, the versions to report, and reading a
request ``.npz``. The scripts run as ``.venv-ref/bin/python reference/<script>.py``, so this
directory is on ``sys.path`` and they ``import _common``."""

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np

# neural-tangents 0.6.5 imports its experimental package (TensorFlow) at import time; the
# reference scripts never use it
sys.modules.setdefault(
    "neural_tangents.experimental", types.ModuleType("neural_tangents.experimental")
)

HERE = Path(__file__).resolve().parent


def load(name: str, path: Path):
    """Import a file by path (the project's ``benchmarks/timing.py``, ``nt_oracle.py``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ``time_call``: the same function times our side, so both sides are measured alike
timing = load("bench_timing", HERE.parent / "benchmarks" / "timing.py")


def versions() -> dict:
    from importlib import metadata

    import jax

    out = {p: metadata.version(p) for p in ("neural-tangents", "jax", "jaxlib", "numpy")}
    out["python"] = sys.version.split()[0]
    out["device"] = str(jax.devices()[0])
    return out


def read_request(argv: list[str], usage: str) -> tuple[dict, str]:
    """``(request arrays, result path)`` from ``argv = [script, REQUEST.npz, RESULT.npz]``."""
    if len(argv) != 3:
        raise SystemExit(usage)
    with np.load(argv[1], allow_pickle=False) as z:
        return {k: z[k] for k in z.files}, argv[2]
