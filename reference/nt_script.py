"""Run a script written against neural-tangents' public API in the reference environment.

Usage::

    .venv-ref/bin/python reference/nt_script.py REQUEST.npz RESULT.npz

A request ``.npz`` holds ``script`` (this file's name), ``source`` (Python text defining
``run(nt, a) -> dict`` where ``nt`` is the imported top-level package, as in
``import neural_tangents as nt``, and ``a`` the request's arrays ``a_<name>`` by name) and
``x64`` (0/1). The test executes the *same text* with ``nt`` bound to ``theory.kernels``: one
script, two libraries, so what is compared is the drop-in promise itself. ``jax``, ``jnp`` and
``np`` are in the text's scope. The result holds the returned arrays, or ``error`` (type and
message) when ``run`` raised. Executed only in the reference environment; never imports
``theory``.
"""

import sys
import types

import numpy as np

# neural_tangents/__init__ imports its experimental (TensorFlow) module; not needed here
sys.modules["neural_tangents.experimental"] = types.ModuleType("neural_tangents.experimental")


def handle(req):
    import jax

    jax.config.update("jax_enable_x64", bool(int(req.get("x64", 1))))
    import jax.numpy as jnp
    import neural_tangents as nt

    scope = {"jax": jax, "jnp": jnp, "np": np}
    exec(str(req["source"]), scope)  # noqa: S102 - the test's own script text
    arrays = {k[2:]: req[k] for k in req if k.startswith("a_")}
    try:
        out = scope["run"](nt, arrays)
    except Exception as e:  # noqa: BLE001 - recorded: an error is an answer
        return {"error": np.asarray(f"{type(e).__name__}: {e}"[:2000])}
    return {k: np.asarray(v) for k, v in out.items()}


def main(argv):
    src, dst = argv[1], argv[2]
    with np.load(src) as z:
        req = {k: z[k] for k in z.files}
    np.savez(dst, **handle(req))


if __name__ == "__main__":
    main(sys.argv)
