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

The result ``.npz`` holds ``timings`` (JSON text: per method a list of
``{n, first_s, steady_s, compile_s, times_s}``, plus versions; B also has ``errors``: the
implementations that raised, with the message), ``a_nngp`` and ``a_ntk`` (jitted
``kernel_fn`` at ``main_n``) and ``b_ntk_<implementation>`` (at ``main_n``).

Timing protocol (the same as in `benchmarks.kernels`): one first call (compile + run), then
``repeats`` calls; ``steady_s`` is their median, ``compile_s = first_s − steady_s``; every call
ends in ``block_until_ready``. This file never imports ``theory``.
"""

import json
import statistics
import sys
import time
import types

import numpy as np

sys.modules["neural_tangents.experimental"] = types.ModuleType("neural_tangents.experimental")


def time_call(fn, repeats):
    """First-call and median steady-state wall time of ``fn()`` (blocked), and its last output."""
    import jax

    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    steady = statistics.median(times)
    row = {"first_s": first, "steady_s": steady, "compile_s": max(first - steady, 0.0)}
    return {**row, "times_s": times}, out


def _log(method, n, row):
    print(
        f"  [neural-tangents] {method:<22} N={n:<5d} steady {row['steady_s']:8.3f} s  "
        f"compile {row['compile_s']:7.3f} s",
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
            row, k = time_call(lambda fn=fn, x=x: fn(x, None, ("nngp", "ntk")), repeats)
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
        try:
            for n in cfg["ns"]:
                x = jnp.asarray(x_all[:n])
                row, k = time_call(lambda fn=fn, x=x: fn(x, None, params), repeats)
                rows.append({"n": n, **row})
                _log(name, n, row)
                if n == cfg["main_n"]:
                    out[f"b_ntk_{impl}"] = np.asarray(k)
        except Exception as e:  # one broken implementation must not lose the others' numbers
            errors[name] = f"{type(e).__name__}: {e}"
            print(f"  [neural-tangents] {name} failed: {errors[name]}", flush=True)
            continue
        timings[name] = rows
    return timings


def versions():
    from importlib import metadata

    import jax

    out = {p: metadata.version(p) for p in ("neural-tangents", "jax", "jaxlib", "numpy")}
    out["python"] = sys.version.split()[0]
    out["device"] = str(jax.devices()[0])
    return out


def main(argv):
    if len(argv) != 3:
        raise SystemExit(__doc__)
    with np.load(argv[1], allow_pickle=False) as z:
        req = {k: z[k] for k in z.files}
    config = json.loads(str(req["config"]))
    repeats = int(config["repeats"])
    out, timings = {}, {"versions": versions()}
    if "A" in config:
        timings["A"] = bench_a(config["A"], req["a_x"], repeats, out)
    if "B" in config:
        n_leaves = sum(k.startswith("b_params_") for k in req)
        leaves = [req[f"b_params_{i}"] for i in range(n_leaves)]
        timings["B"] = bench_b(config["B"], req["b_x"], leaves, repeats, out)
    np.savez(argv[2], timings=json.dumps(timings), **out)


if __name__ == "__main__":
    main(sys.argv)
