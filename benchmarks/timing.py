"""Wall-clock timing shared by `benchmarks.kernels` and ``reference/nt_bench.py``.

Standard library only: ``reference/nt_bench.py`` runs in ``.venv-ref`` (neural-tangents 0.6.5
on jax 0.4.38), which cannot import this project, and loads this file by its path. The caller
passes its own ``block`` (``jax.block_until_ready``), so the same protocol times both sides.

Protocol: one first call, then ``repeats`` calls, each ended by ``block(out)``. ``steady_s``
is the median of the repeated calls. For jitted code, ``compile_s = first_s − steady_s``
(tracing + XLA compilation, plus any other one-time cost of the first call). Un-jitted code
is not compiled as a whole, so its ``first_s − steady_s`` is stored as ``first_extra_s`` and
never called compile time.
"""

from __future__ import annotations

import os
import statistics
import time
import traceback


def time_call(fn, repeats, block, jitted):
    """Time ``fn()`` by the protocol above; returns ``(row, last output)``.

    ``row`` has ``first_s``, ``steady_s``, ``times_s`` (the repeated calls), ``jitted`` and
    either ``compile_s`` (jitted) or ``first_extra_s`` (not jitted).
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    t0 = time.perf_counter()
    out = block(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = block(fn())
        times.append(time.perf_counter() - t0)
    steady = statistics.median(times)
    extra = max(first - steady, 0.0)
    row = {"first_s": first, "steady_s": steady, "times_s": times, "jitted": bool(jitted)}
    row["compile_s" if jitted else "first_extra_s"] = extra
    return row, out


def load_average():
    """The host's 1-, 5- and 15-minute load averages (the machine may be shared)."""
    one, five, fifteen = os.getloadavg()
    return {"1min": one, "5min": five, "15min": fifteen}


def describe_exception(exc):
    """``{"type", "message", "where"}`` of an exception; ``where`` is its innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = None
    if frames:
        path = frames[-1].filename.replace(os.sep, "/")
        where = f"{path.split('site-packages/')[-1]}:{frames[-1].lineno}"
    kind = type(exc)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    return {"type": name, "message": str(exc), "where": where}
