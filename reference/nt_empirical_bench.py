"""Time neural-tangents 0.6.5's ``empirical_ntk_fn`` on a plain JAX function (``.venv-ref`` only).

Usage::

    .venv-ref/bin/python reference/nt_empirical_bench.py REQUEST.npz RESULT.npz

A request ``.npz`` holds ``source`` (Python text defining ``apply_fn(params, x)`` and
``template()``, executed with ``jax``, ``jnp``, ``lax``, ``np`` in scope: the text
`benchmarks.empirical_any` runs on its side), ``params_0, params_1, ...`` (leaf order of
``template()``), ``x`` (the points; x2 = None), ``implementation`` (1, 2 or 3),
``vmap_axes`` (JSON) and ``repeats``. One implementation per process, so that the process's
peak resident memory (``ru_maxrss``) is that implementation's.

The result holds ``timing`` (JSON: ``time_call``'s row, ``peak_rss_bytes`` and ``versions``,
or ``error`` with the exception) and ``ntk`` when it ran. Never imports ``theory``.
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
    from jax import lax
    from neural_tangents import empirical_ntk_fn

    scope = {"jax": jax, "jnp": jnp, "lax": lax, "np": np}
    exec(str(req["source"]), scope)  # noqa: S102 - the benchmark's own model text
    leaves, treedef = jax.tree_util.tree_flatten(scope["template"]())
    params = jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(req[f"params_{i}"]) for i in range(len(leaves))]
    )
    x = jnp.asarray(req["x"])
    impl = int(req["implementation"])
    fn = jax.jit(
        empirical_ntk_fn(
            scope["apply_fn"],
            vmap_axes=json.loads(str(req["vmap_axes"])),
            implementation=impl,
        )
    )
    out = {}
    info = {"versions": versions(), "implementation": impl}
    try:
        row, k = timing.time_call(
            lambda: fn(x, None, params), int(req["repeats"]), jax.block_until_ready, True
        )
        info.update(row)
        out["ntk"] = np.asarray(k)
    except Exception as e:  # noqa: BLE001 - recorded: which implementations work is a result
        info["error"] = {**timing.describe_exception(e), "jax": jax.__version__}
    info["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["timing"] = np.asarray(json.dumps(info))
    np.savez(result_path, **out)


if __name__ == "__main__":
    main(sys.argv)
