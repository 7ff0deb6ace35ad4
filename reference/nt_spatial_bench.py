"""Time neural-tangents 0.6.5 on a spatial network (``.venv-ref`` only; `benchmarks.spatial`).

Usage::

    .venv-ref/bin/python reference/nt_spatial_bench.py REQUEST.npz RESULT.npz

A request ``.npz`` holds ``spec`` (JSON: the architecture in `nt_oracle.build`'s format),
``x`` (the NHWC inputs, float32 or float64) and ``config`` (JSON: ``repeats``, ``get``, a list
of kernel names, ``values``: whether to return the kernels). The result holds ``timing``
(JSON: `benchmarks/timing.py`'s ``time_call`` row plus ``peak_rss_bytes``, the process's peak
resident memory after the calls, and ``versions``) and, with ``values``, ``nngp``/``ntk``.

``kernel_fn`` is jitted with ``get`` static, as a user of neural-tangents would run it, and
called on ``x1 = x, x2 = None``. This file never imports ``theory``.
"""

import json
import resource
import sys

import numpy as np
from _common import HERE, load, read_request, timing, versions


def main(argv):
    req, res_path = read_request(argv, __doc__)
    spec = json.loads(str(req["spec"]))
    cfg = json.loads(str(req["config"]))
    x_np = req["x"]
    import jax

    if x_np.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    build = load("nt_oracle", HERE / "nt_oracle.py").build
    kernel_fn = jax.jit(build(spec)[2], static_argnames="get")
    x = jnp.asarray(x_np)
    get = tuple(cfg["get"])
    row, k = timing.time_call(
        lambda: kernel_fn(x, None, get), cfg["repeats"], jax.block_until_ready, True
    )
    row["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    row["versions"] = versions()
    out = {"timing": json.dumps(row)}
    if cfg.get("values", True):
        for name, value in zip(get, k):
            out[name] = np.asarray(value)
    np.savez(res_path, **out)


if __name__ == "__main__":
    main(sys.argv)
