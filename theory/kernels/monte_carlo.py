r"""Monte Carlo estimates of the NNGP and NTK kernels from random finite networks.

Averaging over S independent initialisations θ_s (Novak et al. 2019, §2; neural-tangents'
``monte_carlo_kernel_fn`` with its default ``trace_axes=(-1,)``):

    K̂(x, x') = (1/S) Σ_s (1/k) Σ_c f_c(θ_s, x) f_c(θ_s, x'),
    Θ̂(x, x') = (1/S) Σ_s (1/k) Σ_c ∂_θ f_c(θ_s, x) · ∂_θ f_c(θ_s, x'),

both averaged (not summed) over the k output channels. As the widths grow these converge to the
infinite-width ``kernel_fn`` of the same `stax` description.
"""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from theory.kernels import empirical
from theory.kernels.kernel import (
    Kernel,
    all_finite,
    any_rank_promotion,
    check_inputs,
    check_memory,
    check_outputs,
    same_inputs,
)
from theory.kernels.stax import KernelFn, rule_of

__all__ = ["monte_carlo_kernel", "monte_carlo_kernel_fn"]

_GETS = ("nngp", "ntk")


def _one_sample(init_fn, apply_fn, key, x1, x2, get, implementation, batch_size):
    """Sums (over channels, not yet averaged) of one network's kernels, as a dict."""
    _, params = init_fn(key, x1.shape)
    out = {}
    f1 = empirical._outputs_2d(apply_fn, params, x1)  # (n1, k)
    f2 = f1 if x2 is None else empirical._outputs_2d(apply_fn, params, x2)  # (n2, k)
    k = f1.shape[1]
    if "nngp" in get:
        out["nngp"] = jnp.dot(f1, f2.T, precision=jax.lax.Precision.HIGHEST) / k
        out["cov1"] = jnp.sum(f1 * f1, axis=1) / k
        if x2 is not None:
            out["cov2"] = jnp.sum(f2 * f2, axis=1) / k
    if "ntk" in get:
        impl = implementation
        if impl == "auto":
            ok = x1.ndim == 2 and empirical.structured_layers(rule_of(apply_fn), params) is not None
            impl = "structured" if ok else "jacobian"
        out["ntk"] = empirical.ntk_traced(apply_fn, params, x1, x2, impl, batch_size)
    return out, k


def _mc(init_fn, apply_fn, key, x1, x2, n_samples, get, chunk, implementation, batch_size):
    keys = jax.random.split(key, n_samples)
    n_chunks = -(-n_samples // chunk)
    pad = n_chunks * chunk - n_samples
    weights = jnp.concatenate([jnp.ones(n_samples), jnp.zeros(pad)]).reshape(n_chunks, chunk)
    if pad:
        keys = jnp.concatenate([keys, jnp.broadcast_to(keys[-1:], (pad,) + keys.shape[1:])])
    keys = keys.reshape((n_chunks, chunk) + keys.shape[1:])

    def sample(k):
        return _one_sample(init_fn, apply_fn, k, x1, x2, get, implementation, batch_size)[0]

    def chunk_sum(args):
        ks, w = args
        vals = jax.vmap(sample)(ks)
        return jax.tree_util.tree_map(lambda v: jnp.tensordot(w.astype(v.dtype), v, axes=1), vals)

    def step(total, args):  # a running sum: memory is one chunk plus the total
        return jax.tree_util.tree_map(jnp.add, total, chunk_sum(args)), None

    shapes = jax.eval_shape(chunk_sum, (keys[0], weights[0]))
    zero = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
    total, _ = jax.lax.scan(step, zero, (keys, weights))
    means = jax.tree_util.tree_map(lambda s: s / n_samples, total)
    return means, all_finite(list(means.values()))


_mc_jit = jax.jit(
    _mc,
    static_argnames=(
        "init_fn",
        "apply_fn",
        "n_samples",
        "get",
        "chunk",
        "implementation",
        "batch_size",
    ),
)


@any_rank_promotion
def monte_carlo_kernel(
    init_fn: Callable,
    apply_fn: Callable,
    key: jax.Array,
    x1,
    x2=None,
    n_samples: int = 64,
    get: str | tuple[str, ...] | None = ("nngp", "ntk"),
    batch_size: int = 8,
    implementation: str = "auto",
    ntk_batch_size: int | None = None,
):
    r"""Average empirical NNGP and NTK over ``n_samples`` random networks (see module docstring).

    ===================  =======  ==========================================================
    argument             symbol   meaning
    ===================  =======  ==========================================================
    ``init_fn``          —        ``init_fn(key, input_shape) -> (output_shape, params)``
    ``apply_fn``         f        ``apply_fn(params, x) -> (n, k)`` (or (n,))
    ``key``              —        a ``jax.random`` key; sample s uses ``split(key, S)[s]``
    ``x1``, ``x2``       x, x'    inputs (n1, d), (n2, d); ``x2=None`` means x1
    ``n_samples``        S        number of independent initialisations
    ``get``              —        "nngp", "ntk", a tuple of them (a named tuple is returned,
                                  as `stax` ``kernel_fn``) or None (a `Kernel`)
    ``batch_size``       —        networks instantiated together (``vmap``); chunks of them
                                  run one after another (``lax.scan`` into a running sum),
                                  bounding memory to batch_size + 1 kernels
    ``implementation``   —        empirical NTK path, see `empirical.empirical_ntk`
    ``ntk_batch_size``   —        ``batch_size`` of `empirical.empirical_ntk` (points)
    ===================  =======  ==========================================================

    Compiled with ``jax.jit`` once per shapes and static arguments. Numerical guards as
    `stax` ``kernel_fn``: 16-bit inputs raise `TypeError`; outputs that cannot fit
    (``batch_size`` + 1 copies of each n1 × n2 kernel) raise `KernelMemoryError` before
    allocating; a non-finite estimate raises `NonFiniteKernelError` (float64 is the usual
    remedy; the values are in ``error.result``).
    """
    if not callable(init_fn) or not callable(apply_fn):
        raise TypeError("init_fn and apply_fn must be callables (a stax layer's first two)")
    x1, x2 = check_inputs(x1, x2, spatial_ndim="any")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    batch_size = empirical.check_batch_size(batch_size)
    chunk = min(n_samples, batch_size or n_samples)
    ntk_batch_size = empirical.check_batch_size(ntk_batch_size, "ntk_batch_size")
    if implementation not in empirical.IMPLEMENTATIONS:
        raise ValueError(
            f"implementation must be one of {empirical.IMPLEMENTATIONS}, got {implementation!r}"
        )
    get, _ = KernelFn.parse_get(get, _GETS)  # the same validation as stax's kernel_fn
    names = _GETS if get is None else ((get,) if isinstance(get, str) else get)
    inner = tuple(sorted(set(names) | ({"nngp"} if get is None else set())))
    try:
        key = jnp.asarray(key)
        jax.random.split(key)
    except Exception as e:  # noqa: BLE001 - re-raised with the argument's name
        raise ValueError(f"key must be a jax.random key, got {key!r}") from e
    kernels = tuple(g for g in _GETS if g in inner)
    check_memory("monte_carlo_kernel", x1, x2, kernels, copies=chunk + 1)
    res, ok = _mc_jit(
        init_fn,
        apply_fn,
        key,
        x1,
        x2,
        n_samples=n_samples,
        get=inner,
        chunk=chunk,
        implementation=implementation,
        batch_size=ntk_batch_size,
    )
    if get is None:
        out = jax.eval_shape(lambda k: apply_fn(init_fn(k, x1.shape)[1], x1[:1]), key)
        result = Kernel(
            nngp=res["nngp"],
            ntk=res["ntk"],
            cov1=res["cov1"],
            cov2=res.get("cov2"),
            width=int(math.prod(out.shape)),
            is_gaussian=False,
        )
    elif isinstance(get, str):
        result = res[get]
    else:
        result = namedtuple("Kernels", names)(*(res[g] for g in names))
    check_outputs("monte_carlo_kernel", ok, res, (x1, x2), result)
    return result


def monte_carlo_kernel_fn(
    init_fn: Callable,
    apply_fn: Callable,
    key: jax.Array,
    n_samples,
    batch_size: int = 0,
    device_count: int = -1,
    store_on_device: bool = True,
    trace_axes=(-1,),
    diagonal_axes=(),
    vmap_axes=None,
    implementation=0,
    **unused_private,
) -> Callable:
    r"""neural-tangents' ``monte_carlo_kernel_fn``: ``kernel_fn(x1, x2=None, get=None, **kwargs)``
    averaging the empirical NNGP and NTK (`theory.kernels.empirical_kernel_fn`, same
    ``trace_axes``, ``diagonal_axes``, ``vmap_axes``, ``implementation``) over ``n_samples``
    random networks.

    neural-tangents' sampling schedule, so that the same ``key`` draws the same networks:
    ``key, k = split(key)`` per sample, ``init_key, rng = split(k)``, parameters
    ``init_fn(init_key, x1.shape)`` and ``apply_fn(params, x, rng=rng, **kwargs)`` (a dropout
    key; ignored by layers without randomness). ``n_samples`` an int gives the estimate; a
    collection of ints gives a generator of the estimates at those sample counts (one pass).
    ``get`` None returns the named tuple ``(nngp, ntk)``. ``batch_size``, ``device_count`` and
    ``store_on_device`` are accepted for compatibility: our empirical routes block the points
    by memory themselves (`empirical_ntk`), and `theory.kernels.batch` spreads any kernel
    function over devices. For the fastest estimate of a fully connected or convolutional
    `stax` network, `monte_carlo_kernel` (vmapped networks, one compiled program) is the
    native entry point; its samples differ (``split(key, S)``).
    """
    from theory.kernels.empirical_fn import empirical_kernel_fn

    if not callable(init_fn) or not callable(apply_fn):
        raise TypeError("init_fn and apply_fn must be callables (a stax layer's first two)")
    generator = not isinstance(n_samples, int | np.integer)
    counts = sorted({int(n) for n in n_samples}) if generator else [int(n_samples)]
    if isinstance(n_samples, bool) or not counts or counts[0] < 1:
        raise ValueError(f"n_samples must be a positive int or ints, got {n_samples!r}")
    empirical.check_batch_size(batch_size or None)
    one = empirical_kernel_fn(apply_fn, trace_axes, diagonal_axes, vmap_axes, implementation,
                              **unused_private)  # fmt: skip

    def names_of(get):
        if get is None:
            return False, _GETS
        if isinstance(get, str):
            return True, (get,)
        return False, tuple(get)

    def samples(x1, x2, get, kwargs):
        single, names = names_of(get)  # validated by empirical_kernel_fn's kernel_fn below
        k = jnp.asarray(key)
        total = None
        for n in range(1, counts[-1] + 1):
            k, sub = jax.random.split(k)
            init_key, rng = jax.random.split(sub)
            _, params = init_fn(init_key, jax.tree_util.tree_map(jnp.shape, x1))
            draw = one(x1, x2, names, params, rng=rng, **kwargs)
            draw = {g: getattr(draw, g) for g in names}
            total = draw if total is None else jax.tree_util.tree_map(jnp.add, total, draw)
            if n in counts:
                est = {g: jax.tree_util.tree_map(lambda a, n=n: a / n, total[g]) for g in names}
                ok = all_finite(jax.tree_util.tree_leaves(est))
                check_outputs("monte_carlo_kernel_fn", ok, est, (x1, x2), est)
                if single:
                    yield est[names[0]]
                else:
                    yield namedtuple("MonteCarloKernel", names)(*(est[g] for g in names))

    @any_rank_promotion
    def kernel_fn(x1, x2=None, get=None, **apply_fn_kwargs):
        x2 = same_inputs(x2)
        out = samples(x1, x2, get, apply_fn_kwargs)
        return out if generator else next(out)

    return kernel_fn
