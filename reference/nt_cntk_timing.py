"""Time neural-tangents 0.6.5 on the kernels `experiments.cntk` hands over (``.venv-ref`` only).

Usage::

    .venv-ref/bin/python reference/nt_cntk_timing.py REQUEST.npz RESULT.npz

A request ``.npz`` holds

- ``config``: JSON text ``{"repeats": r, "kernels": {name: spec, ...}}``, each spec a list of
  ``[layer_name, kwargs]`` in neural-tangents' ``stax`` names and arguments (JSON lists become
  tuples, for shapes), composed with ``stax.serial``;
- ``x1_<name>`` and ``x2_<name>``: the block of inputs for that kernel (2-D for a
  fully connected network, NHWC for a convolutional one).

The result ``.npz`` holds ``timings`` (JSON text: per kernel ``time_call``'s row of
``benchmarks/timing.py``, plus ``versions``), and ``nngp_<name>``, ``ntk_<name>``: the jitted
``kernel_fn(x1, x2, ("nngp", "ntk"))`` on the block, so the caller can check agreement.

Timing: ``time_call`` of ``benchmarks/timing.py`` (loaded by path; the same function times
our side) with ``jax.block_until_ready``: compile time apart, steady state the best of
``repeats`` calls. This file never imports ``theory``.
"""

import json
import sys

import numpy as np
from _common import read_request, timing, versions


def _tuples(v):
    return tuple(_tuples(u) for u in v) if isinstance(v, list) else v


def build(spec):
    """``stax.serial`` of the spec's layers: ``[[name, kwargs], ...]``."""
    from neural_tangents import stax

    layers = []
    for name, kwargs in spec:
        layers.append(getattr(stax, name)(**{k: _tuples(v) for k, v in kwargs.items()}))
    return stax.serial(*layers)[2]


def main(argv):
    req, result_path = read_request(argv, __doc__)
    import jax
    import jax.numpy as jnp

    config = json.loads(str(req["config"]))
    repeats = int(config["repeats"])
    timings, out = {"versions": versions()}, {}
    for name, spec in config["kernels"].items():
        fn = jax.jit(build(spec), static_argnames="get")
        x1, x2 = jnp.asarray(req[f"x1_{name}"]), jnp.asarray(req[f"x2_{name}"])
        row, k = timing.time_call(
            lambda fn=fn, x1=x1, x2=x2: fn(x1, x2, ("nngp", "ntk")),
            repeats,
            jax.block_until_ready,
            True,
        )
        timings[name] = row
        out[f"nngp_{name}"], out[f"ntk_{name}"] = np.asarray(k[0]), np.asarray(k[1])
        print(
            f"  [neural-tangents] {name:<10} {x1.shape[0]}x{x2.shape[0]} steady "
            f"{row['steady_s']:8.4f} s  compile {row['compile_s']:7.2f} s",
            flush=True,
        )
    np.savez(result_path, timings=json.dumps(timings), **out)


if __name__ == "__main__":
    main(sys.argv)
