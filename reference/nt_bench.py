"""Time neural-tangents 0.6.5 on the inputs `benchmarks.kernels` hands over (``.venv-ref`` only).

Usage::

    .venv-ref/bin/python reference/nt_bench.py REQUEST.npz RESULT.npz

A request ``.npz`` holds

- ``config``: JSON text ``{"repeats": r, "A": {...}, "B": {...}}`` (either benchmark may be
  absent). ``A``: ``ns`` (sweep of N), ``main_n``, ``d_width``, ``depth``, ``W_std``, ``b_std``,
  ``unjitted`` (also time the un-jitted ``kernel_fn``). ``B``: ``ns``, ``main_n``, ``width``,
  ``implementations`` (neural-tangents ``NtkImplementation`` values), ``vmap_axes``;
- ``a_x`` (N_max, d) and ``b_x`` (N_max, d): the inputs, the first N rows used for each N;
- ``b_params_0, b_params_1, ...``: the empirical-NTK network's parameters in
  ``jax.tree_util`` leaf order of neural-tangents' own ``init_fn`` output.

The result ``.npz`` holds ``timings`` (JSON text: per method a list of rows from
``benchmarks/timing.py``'s ``time_call`` with ``n`` added, plus ``versions``; B also has
``errors``: per implementation that raised, ``{"type", "message", "where", "n", "jax"}``, the
rows before the failure kept), ``a_nngp`` and ``a_ntk`` (jitted ``kernel_fn`` at ``main_n``)
and ``b_ntk_<implementation>`` (at ``main_n``).

Timing: ``time_call`` of ``benchmarks/timing.py`` (loaded by path; the same function times
our side), with ``jax.block_until_ready``. The un-jitted ``kernel_fn`` is timed with
``jitted=False``: its first-call excess is not compile time. This file never imports
``theory``.
"""

import json
import sys

import numpy as np
from _common import read_request, timing, versions


def time_call(fn, repeats, jitted):
    """``timing.time_call`` with ``jax.block_until_ready``."""
    import jax

    return timing.time_call(fn, repeats, jax.block_until_ready, jitted)


def _log(method, n, row):
    extra = (
        f"compile {row['compile_s']:7.3f} s"
        if row["jitted"]
        else f"first call - steady {row['first_extra_s']:7.3f} s (not jitted)"
    )
    print(
        f"  [neural-tangents] {method:<22} N={n:<5d} steady {row['steady_s']:8.3f} s  {extra}",
        flush=True,
    )


def bench_a(cfg, x_all, repeats, out):
    """NNGP + NTK of the deep ReLU network, jitted (``static_argnames='get'``) and not."""
    import jax
    import jax.numpy as jnp
    from neural_tangents import stax

    dense = stax.Dense(cfg["d_width"], W_std=cfg["W_std"], b_std=cfg["b_std"])
    _, _, kernel_fn = stax.serial(
        *[dense, stax.Relu()] * cfg["depth"],
        stax.Dense(1, W_std=cfg["W_std"], b_std=cfg["b_std"]),
    )
    methods = {"nt_jit": jax.jit(kernel_fn, static_argnames="get")}
    if cfg.get("unjitted", True):
        methods["nt_nojit"] = kernel_fn
    timings = {m: [] for m in methods}
    for n in cfg["ns"]:
        x = jnp.asarray(x_all[:n])
        for name, fn in methods.items():
            row, k = time_call(
                lambda fn=fn, x=x: fn(x, None, ("nngp", "ntk")), repeats, name == "nt_jit"
            )
            timings[name].append({"n": n, **row})
            _log(name, n, row)
            if n == cfg["main_n"] and name == "nt_jit":
                out["a_nngp"], out["a_ntk"] = np.asarray(k[0]), np.asarray(k[1])
    return timings


def bench_b(cfg, x_all, leaves, repeats, out):
    """Empirical NTK of the two-hidden-layer ReLU network, jitted, per implementation."""
    import jax
    import jax.numpy as jnp
    from neural_tangents import empirical_ntk_fn, stax

    init_fn, apply_fn, _ = stax.serial(
        stax.Dense(cfg["width"]),
        stax.Relu(),
        stax.Dense(cfg["width"]),
        stax.Relu(),
        stax.Dense(1),
    )
    _, template = init_fn(jax.random.PRNGKey(0), x_all.shape)
    t_leaves, treedef = jax.tree_util.tree_flatten(template)
    if len(t_leaves) != len(leaves):
        raise ValueError(f"got {len(leaves)} parameter arrays, expected {len(t_leaves)}")
    for i, (a, b) in enumerate(zip(t_leaves, leaves)):
        if a.shape != b.shape:
            raise ValueError(f"b_params_{i}: shape {b.shape}, expected {a.shape}")
    params = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(v) for v in leaves])

    timings, errors = {}, {}
    timings["errors"] = errors
    for impl in cfg["implementations"]:
        name = f"nt_impl{impl}"
        fn = jax.jit(
            empirical_ntk_fn(apply_fn, implementation=impl, vmap_axes=cfg.get("vmap_axes"))
        )
        rows = []
        for n in cfg["ns"]:
            x = jnp.asarray(x_all[:n])
            try:
                row, k = time_call(lambda fn=fn, x=x: fn(x, None, params), repeats, True)
            except Exception as e:  # recorded, not hidden; the other implementations still run
                errors[name] = {**timing.describe_exception(e), "n": n, "jax": jax.__version__}
                print(
                    f"  [neural-tangents] {name} failed at N={n} on jax {jax.__version__}: "
                    f"{errors[name]['type']}: {errors[name]['message']} "
                    f"(at {errors[name]['where']})",
                    flush=True,
                )
                break  # larger N would fail the same way or worse
            rows.append({"n": n, **row})
            _log(name, n, row)
            if n == cfg["main_n"]:
                out[f"b_ntk_{impl}"] = np.asarray(k)
        if rows:
            timings[name] = rows
    return timings


def main(argv):
    req, result_path = read_request(argv, __doc__)
    config = json.loads(str(req["config"]))
    repeats = int(config["repeats"])
    out, timings = {}, {"versions": versions()}
    if "A" in config:
        timings["A"] = bench_a(config["A"], req["a_x"], repeats, out)
    if "B" in config:
        n_leaves = sum(k.startswith("b_params_") for k in req)
        leaves = [req[f"b_params_{i}"] for i in range(n_leaves)]
        timings["B"] = bench_b(config["B"], req["b_x"], leaves, repeats, out)
    np.savez(result_path, timings=json.dumps(timings), **out)


if __name__ == "__main__":
    main(sys.argv)
