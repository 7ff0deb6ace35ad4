"""neural-tangents 0.6.5's empirical NTK of a plain JAX function, run with ``.venv-ref/bin/python``.

Usage::

    .venv-ref/bin/python reference/nt_empirical.py REQUEST.npz RESULT.npz

A request ``.npz`` holds

- ``script``: this file's name (the tests' oracle bridge picks the script by it);
- ``source``: Python text defining ``apply_fn(params, x)`` and ``template()`` (a pytree whose
  leaves have the parameters' shapes); it is executed with ``jax``, ``jnp``, ``lax`` and
  ``np`` in scope, the same text the test executes on its side, so both libraries see one
  function;
- ``params_0, params_1, ...``: the parameters in ``jax.tree_util`` leaf order of
  ``template()``;
- ``x1``, optionally ``x2``; ``x64`` (0/1);
- ``implementations``: JSON list of neural-tangents' implementation numbers (1 Jacobian
  contraction, 2 NTK-vector products, 3 structured derivatives);
- ``trace_axes``, ``diagonal_axes``: JSON lists; ``vmap_axes``: JSON (null or 0).

The result holds ``ntk_<i>`` for each implementation that ran and ``error_<i>`` (text: type and
message) for each that raised. This file is executed only in the reference environment; it
never imports ``theory``.
"""

import json
import sys
import types

import numpy as np

# neural_tangents/__init__ imports its experimental (TensorFlow) module; not needed here
sys.modules["neural_tangents.experimental"] = types.ModuleType("neural_tangents.experimental")


def handle(req):
    import jax

    jax.config.update("jax_enable_x64", bool(int(req.get("x64", 1))))
    import jax.numpy as jnp
    from jax import lax
    from neural_tangents import empirical_ntk_fn

    scope = {"jax": jax, "jnp": jnp, "lax": lax, "np": np}
    exec(str(req["source"]), scope)  # noqa: S102 - the test's own model text
    apply_fn = scope["apply_fn"]
    leaves, treedef = jax.tree_util.tree_flatten(scope["template"]())
    given = [jnp.asarray(req[f"params_{i}"]) for i in range(len(leaves))]
    for i, (a, b) in enumerate(zip(leaves, given)):
        if np.shape(a) != b.shape:
            raise ValueError(f"params_{i}: shape {b.shape}, expected {np.shape(a)}")
    params = jax.tree_util.tree_unflatten(treedef, given)
    x1 = jnp.asarray(req["x1"])
    x2 = jnp.asarray(req["x2"]) if "x2" in req else None
    trace_axes = tuple(json.loads(str(req.get("trace_axes", "[-1]"))))
    diagonal_axes = tuple(json.loads(str(req.get("diagonal_axes", "[]"))))
    vmap_axes = json.loads(str(req.get("vmap_axes", "null")))
    out = {}
    for impl in json.loads(str(req["implementations"])):
        fn = empirical_ntk_fn(
            apply_fn,
            trace_axes=trace_axes,
            diagonal_axes=diagonal_axes,
            vmap_axes=vmap_axes,
            implementation=impl,
        )
        try:
            out[f"ntk_{impl}"] = np.asarray(jax.jit(fn)(x1, x2, params))
        except Exception as e:  # noqa: BLE001 - recorded: which implementations run is an answer
            # type and message only: a traceback names this checkout's paths, and the slow
            # suite compares recorded answers with live ones from another clone
            out[f"error_{impl}"] = np.asarray(f"{type(e).__name__}: {e}"[:2000])
    return out


def main(argv):
    src, dst = argv[1], argv[2]
    with np.load(src) as z:
        req = {k: z[k] for k in z.files}
    np.savez(dst, **handle(req))


if __name__ == "__main__":
    main(sys.argv)
