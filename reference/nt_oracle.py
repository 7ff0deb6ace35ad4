"""The neural-tangents 0.6.5 oracle, run with ``.venv-ref/bin/python`` (jax 0.4.38).

Usage::

    .venv-ref/bin/python reference/nt_oracle.py REQUEST.npz RESULT.npz
    .venv-ref/bin/python reference/nt_oracle.py --selftest

A request ``.npz`` holds

- ``spec``: JSON text describing the architecture (see `build`);
- ``tasks``: JSON list of task names: ``"kernel"`` (NNGP and NTK by ``kernel_fn``),
  ``"kernels"`` (the same for each spec of the JSON list ``specs``),
  ``"empirical_ntk"`` (needs ``params_*`` arrays and ``implementation``), ``"apply"``,
  ``"predict"`` (``gradient_descent_mse``; needs ``k_train_train``, ``y_train``,
  ``k_test_train``, ``t``, ``learning_rate``, ``diag_reg``), ``"gp_inference"``;
- ``x1`` and optionally ``x2``; ``x64`` (0/1); ``jit`` (0/1, default 0, or a JSON list
  of 0/1 per spec): ``"kernels"`` compiles each kernel function with ``jax.jit`` (about half
  the time of neural-tangents' op-by-op dispatch; XLA's fusion moves the last bits, so 1e-6
  comparisons at points where a dual is singular, such as Sign's NTK on the diagonal, need
  the default); for ``"kernels"`` of graph networks (``Aggregate``), ``pattern1_<i>`` and
  optionally ``pattern2_<i>`` for spec i.

A spec is a list of layers ``[name, kwargs]`` read as ``serial``; the combinators are
``["serial", [layer, ...]]``, ``["parallel", [layer, ...]]``, ``["FanOut", {"num": k}]``.
Parameters for ``empirical_ntk``/``apply`` come flattened as ``params_0, params_1, ...``
in ``jax.tree_util`` leaf order of neural-tangents' own ``init_fn`` output (``None``
leaves are absent), so the caller can hand over the same weights it uses itself.

This file is executed only in the reference environment; it never imports ``theory``.
"""

import json
import sys
import types

import numpy as np

sys.modules["neural_tangents.experimental"] = types.ModuleType("neural_tangents.experimental")


def named_functions():
    """Functions a spec can name (JSON cannot carry code): the same names exist test-side."""
    import jax.numpy as jnp
    from jax.scipy.special import erf

    def erf_nngp(cov12, var1, var2):  # Williams (1997)
        return jnp.arcsin(2 * cov12 / jnp.sqrt((1 + 2 * var1) * (1 + 2 * var2))) * 2 / jnp.pi

    def exp_decay(distance):  # a positional-embedding decay for GlobalSelfAttention
        return jnp.exp(-distance / 4.0)

    return {
        "erf": erf,
        "tanh": jnp.tanh,
        "sin": jnp.sin,
        "erf_nngp": erf_nngp,
        "exp_decay": exp_decay,
    }


def build(spec):
    """Architecture spec (JSON list) -> neural-tangents ``(init_fn, apply_fn, kernel_fn)``.

    ``["Elementwise", {"fn": "erf", "nngp_fn": "erf_nngp"}]`` and
    ``["ElementwiseNumerical", {"fn": "tanh", "deg": 25}]`` name their functions.
    """
    from neural_tangents import stax

    fns = named_functions()

    def one(node):
        name, arg = node
        if name in ("serial", "parallel"):
            return getattr(stax, name)(*[one(c) for c in arg])
        named = ("fn", "nngp_fn", "d_nngp_fn", "pos_emb_decay_fn")
        arg = {k: (fns[v] if k in named and isinstance(v, str) else v) for k, v in arg.items()}
        # JSON has no tuples; neural-tangents' pooling concatenates these with tuples
        shapes = ("filter_shape", "window_shape", "strides", "aggregate_axis")
        arg = {k: (tuple(v) if k in shapes and isinstance(v, list) else v) for k, v in arg.items()}
        return getattr(stax, name)(**arg)

    return stax.serial(*[one(n) for n in spec])


def handle(req):
    import jax

    x64 = bool(int(req.get("x64", 1)))
    jit = json.loads(str(req.get("jit", "0")))  # 0/1, or a list of 0/1 (one per spec)
    jax.config.update("jax_enable_x64", x64)
    import jax.numpy as jnp
    from neural_tangents import empirical_ntk_fn, predict

    out = {}
    tasks = json.loads(str(req["tasks"]))
    spec = json.loads(str(req["spec"])) if "spec" in req else None
    x1 = jnp.asarray(req["x1"]) if "x1" in req else None
    x2 = jnp.asarray(req["x2"]) if "x2" in req else None
    if spec is not None:
        init_fn, apply_fn, kernel_fn = build(spec)

    def params_from_request():
        _, template = init_fn(jax.random.PRNGKey(0), x1.shape)
        leaves, treedef = jax.tree_util.tree_flatten(template)
        given = [jnp.asarray(req[f"params_{i}"]) for i in range(len(leaves))]
        for i, (a, b) in enumerate(zip(leaves, given)):
            if a.shape != b.shape:
                raise ValueError(f"params_{i}: shape {b.shape}, expected {a.shape}")
        return jax.tree_util.tree_unflatten(treedef, given)

    for task in tasks:
        if task == "kernels":  # many architectures, one process: nngp_<i>, ntk_<i>
            for i, sp in enumerate(json.loads(str(req["specs"]))):
                kw = {}
                if f"pattern1_{i}" in req:  # graph networks (Aggregate): per-point patterns
                    p1 = jnp.asarray(req[f"pattern1_{i}"])
                    p2 = jnp.asarray(req[f"pattern2_{i}"]) if f"pattern2_{i}" in req else p1
                    kw["pattern"] = (p1, p2)
                kfn = build(sp)[2]
                # compiled, as neural-tangents recommends: half the time of op by op
                if jit[i] if isinstance(jit, list) else jit:
                    kfn = jax.jit(kfn, static_argnames="get")
                k = kfn(x1, x2, get=("nngp", "ntk"), **kw)
                out[f"nngp_{i}"], out[f"ntk_{i}"] = np.asarray(k[0]), np.asarray(k[1])
        elif task == "kernel":
            k = kernel_fn(x1, x2, ("nngp", "ntk"))
            out["nngp"], out["ntk"] = np.asarray(k[0]), np.asarray(k[1])
        elif task == "apply":
            out["apply"] = np.asarray(apply_fn(params_from_request(), x1))
        elif task == "empirical_ntk":
            impl = int(req.get("implementation", 1))
            fn = empirical_ntk_fn(apply_fn, implementation=impl)
            out["empirical_ntk"] = np.asarray(fn(x1, x2, params_from_request()))
        elif task == "predict":
            pfn = predict.gradient_descent_mse(
                jnp.asarray(req["k_train_train"]),
                jnp.asarray(req["y_train"]),
                learning_rate=float(req.get("learning_rate", 1.0)),
                diag_reg=float(req.get("diag_reg", 0.0)),
            )
            t = jnp.asarray(req["t"])
            fx_train_0 = jnp.asarray(req["fx_train_0"]) if "fx_train_0" in req else 0.0
            fx_test_0 = jnp.asarray(req["fx_test_0"]) if "fx_test_0" in req else 0.0
            tr, te = pfn(t, fx_train_0, fx_test_0, jnp.asarray(req["k_test_train"]))
            out["predict_train"], out["predict_test"] = np.asarray(tr), np.asarray(te)
        elif task == "gp_inference":
            pfn = predict.gp_inference(
                jnp.asarray(req["k_train_train"]),
                jnp.asarray(req["y_train"]),
                diag_reg=float(req.get("diag_reg", 0.0)),
            )
            res = pfn(
                get="nngp",
                k_test_train=jnp.asarray(req["k_test_train"]),
                k_test_test=jnp.asarray(req["k_test_test"]),
            )
            out["gp_mean"], out["gp_cov"] = np.asarray(res.mean), np.asarray(res.covariance)
        else:
            raise ValueError(f"unknown task {task!r}")
    return out


def selftest():
    """ReLU NNGP of one Dense layer against the arc-cosine closed form (Cho & Saul 2009)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3))
    req = {
        "spec": json.dumps([["Dense", {"out_dim": 1}], ["Relu", {}]]),
        "tasks": json.dumps(["kernel"]),
        "x1": x,
    }
    got = handle(req)["nngp"]
    k = x @ x.T / 3
    n = np.sqrt(np.diag(k))
    c = np.clip(k / np.outer(n, n), -1, 1)
    want = np.outer(n, n) / (2 * np.pi) * (np.sqrt(1 - c**2) + (np.pi - np.arccos(c)) * c)
    err = np.max(np.abs(got - want))
    if not err < 1e-9:
        raise SystemExit(f"selftest failed: max error {err}")
    print(f"neural-tangents oracle ok (ReLU NNGP max error {err:.1e})")


def main(argv):
    if argv[1:] == ["--selftest"]:
        selftest()
        return
    if len(argv) != 3:
        raise SystemExit(__doc__)
    with np.load(argv[1], allow_pickle=False) as z:
        req = {k: z[k] for k in z.files}
    out = handle(req)
    np.savez(argv[2], **out)


if __name__ == "__main__":
    main(sys.argv)
