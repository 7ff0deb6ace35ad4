"""Time neural-tangents 0.6.5's ``predict.gradient_descent_mse_ensemble`` (``.venv-ref`` only).

Usage::

    .venv-ref/bin/python reference/nt_predict_bench.py REQUEST.npz RESULT.npz

A request ``.npz`` holds ``source`` (the script text of `benchmarks.predict`, defining
``make(nt, a, jit_kernel) -> (call, spent)``), its arrays and ``repeats``. The script runs with
``nt = neural_tangents`` and ``jit_kernel=True``; the result holds ``timing`` (JSON:
``time_call``'s row, ``kernel_s``, ``linear_algebra_s``, ``peak_rss_bytes``, ``versions``,
or ``error``) and the call's outputs. Never imports ``theory``.
"""

import json
import resource
import sys

import numpy as np
from _common import read_request, timing, versions


def main(argv):
    req, result_path = read_request(argv, __doc__)
    import jax
    import jax.numpy as jnp
    import neural_tangents as nt

    scope = {"jax": jax, "jnp": jnp, "np": np}
    exec(str(req["source"]), scope)  # noqa: S102 - the benchmark's own script text
    call, spent = scope["make"](nt, req, True)
    kernel_times = []

    def run():
        out = call()
        kernel_times.append(spent[0])
        return out

    info = {"versions": versions()}
    arrays = {}
    try:
        row, out = timing.time_call(run, int(req["repeats"]), jax.block_until_ready, False)
        kernel_s = float(np.median(kernel_times[1:]))
        row.update(kernel_s=kernel_s, linear_algebra_s=row["steady_s"] - kernel_s)
        arrays = {k: np.asarray(v) for k, v in out.items()}
        info.update(row)
    except Exception as e:  # noqa: BLE001 - recorded: a failure is a benchmark result
        info["error"] = timing.describe_exception(e)
    info["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    np.savez(result_path, timing=json.dumps(info), **arrays)


if __name__ == "__main__":
    main(sys.argv)
