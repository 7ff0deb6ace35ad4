r"""The empirical neural tangent kernel of a finite network.

For a network ``f(θ, x)`` with k output channels and parameters θ, Jacot, Gabriel & Hongler
(2018), §4, define

    Θ̂(x, x') = (1/k) Σ_c Σ_p ∂f_c(x)/∂θ_p · ∂f_c(x')/∂θ_p,

the ``trace_axes=(-1,)`` convention of neural-tangents 0.6.5 (``_trace_and_diagonal`` divides
the trace over the output axis by its size: an average over channels, not a sum).

Two implementations give the same numbers:

- ``"jacobian"`` (any JAX function): per batch of points, ``jax.jacrev`` gives the Jacobian
  pytree ``(b, k, *param_shape)``; blocks are contracted leaf by leaf. Memory is bounded by
  ``batch_size`` points' Jacobians at a time.
- ``"structured"`` (a `stax.serial` chain of ``Dense`` and elementwise layers): one forward pass
  stores each Dense layer's input a_{l−1} (n, n_{l−1}); one backward pass stores the output
  sensitivities δ_l = ∂f/∂z_l (n, k, n_l). For z_l = s_W a_{l−1} W + s_b b the weight and bias
  gradients factor, so

      Θ̂ = (1/k) Σ_l (Σ_c δ_l,c(x1) δ_l,c(x2)ᵀ) ⊙ (s_W² a_{l−1}(x1) a_{l−1}(x2)ᵀ + s_b²),

  with s_W = σ_w/√n_{l−1}, s_b = σ_b (NTK parameterization) or s_W = 1/√s_in, s_b = 1
  (standard; s_b = 0 without a bias). No per-example Jacobian is ever formed.

``"auto"`` takes the structured path when `stax.rule_of(apply_fn)` allows it.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from theory.kernels import structured
from theory.kernels.batching import pad_rows
from theory.kernels.kernel import (
    all_finite,
    any_rank_promotion,
    available_memory,
    check_inputs,
    check_memory,
    check_outputs,
    check_precision,
)
from theory.kernels.stax import (
    DenseRule,
    ElementwiseRule,
    IdentityRule,
    Rule,
    SerialRule,
    rule_of,
)

__all__ = ["empirical_ntk", "structured_layers"]

IMPLEMENTATIONS = ("auto", "jacobian", "ntvp", "structured")
_NT_NUMBERS = {0: "auto", 1: "jacobian", 2: "ntvp", 3: "structured"}

# Largest Jacobian block (elements) the "jacobian" path forms when batch_size is None:
# 2**28 float32 numbers = 1 GiB per side. Blocking recomputes the column blocks' Jacobians
# for every row block, so smaller blocks cost time: with 2**26, N = 125 points of a
# 1.1M-parameter net took 4.1 s against 1.1 s unblocked (measured).
_JACOBIAN_BLOCK_ELEMENTS = 2**28

_HI = jax.lax.Precision.HIGHEST


# ------------------------------------------------------------------ structure


def structured_layers(rule: Rule | None, params: Any) -> list | None:
    """Flatten a serial chain into ``[(rule, layer_params), ...]`` of `DenseRule` and
    `ElementwiseRule` layers (identity layers are dropped), or None when any layer has another
    rule or none (then only the generic Jacobian path applies) or ``params`` do not match."""
    if isinstance(rule, SerialRule):
        if not isinstance(params, (list, tuple)) or len(params) != len(rule.children):
            return None
        out = []
        for child, p in zip(rule.children, params):
            sub = structured_layers(child, p)
            if sub is None:
                return None
            out.extend(sub)
        return out
    if isinstance(rule, DenseRule):
        if not (isinstance(params, (list, tuple)) and len(params) == 2):
            return None
        return [(rule, params)]
    if isinstance(rule, ElementwiseRule):
        return [(rule, params)]
    if isinstance(rule, IdentityRule):
        return []
    return None


def _dense_scales(rule: DenseRule, n_in: int, has_bias: bool) -> tuple[float, float]:
    """(s_W, s_b) with z = s_W a W + s_b b (see module docstring)."""
    if rule.parameterization == "ntk":
        return rule.W_std / math.sqrt(n_in), (rule.b_std if has_bias else 0.0)
    return 1.0 / math.sqrt(rule.s[0]), (1.0 if has_bias else 0.0)


def _features(layers: list, x: jax.Array):
    """Forward and backward pass: per Dense layer, (a_{l−1} (n, n_in), δ_l (n, k·n_out))."""
    acts, pre = [], []  # Dense-layer inputs; elementwise pre-activations
    h = x
    for rule, p in layers:
        if isinstance(rule, DenseRule):
            W, b = p
            s_w, s_b = _dense_scales(rule, h.shape[-1], b is not None)
            acts.append(h)
            h = s_w * jnp.dot(h, W, precision=_HI)
            if b is not None:
                h = h + s_b * b
        else:
            pre.append(h)
            h = rule.fn(h)
    n, k = h.shape
    # g: sensitivity of the k outputs to the current layer's output, (n, k, width).
    g = jnp.broadcast_to(jnp.eye(k, dtype=h.dtype), (n, k, k))
    deltas = []
    i_act, i_pre = len(acts), len(pre)
    for rule, p in reversed(layers):
        if isinstance(rule, DenseRule):
            i_act -= 1
            W, b = p
            a = acts[i_act]
            s_w, _ = _dense_scales(rule, a.shape[-1], b is not None)
            deltas.append(g)
            if i_act > 0 or i_pre > 0:
                g = s_w * jnp.einsum("nkj,ij->nki", g, W, precision=_HI)
        else:
            i_pre -= 1
            z = pre[i_pre]
            # φ is elementwise, so its Jacobian is diag(φ'(z)) and one JVP gives φ'(z).
            dphi = jax.jvp(rule.fn, (z,), (jnp.ones_like(z),))[1]
            g = g * dphi[:, None, :]
    deltas = deltas[::-1]
    dense = [(rule, p) for rule, p in layers if isinstance(rule, DenseRule)]
    scales = [
        _dense_scales(rule, a.shape[-1], p[1] is not None) for (rule, p), a in zip(dense, acts)
    ]
    feats = [(a, d.reshape(n, -1)) for a, d in zip(acts, deltas)]
    return feats, scales, k


def _structured_contract(feats1, feats2, scales, k):
    """Θ̂ (n1, n2) from stored activations and sensitivities."""
    ntk = 0.0
    for (a1, d1), (a2, d2), (s_w, s_b) in zip(feats1, feats2, scales):
        dd = jnp.dot(d1, d2.T, precision=_HI)  # Σ_c δ_c(x1)·δ_c(x2), (n1, n2)
        aa = jnp.dot(a1, a2.T, precision=_HI)  # a(x1)·a(x2), (n1, n2)
        ntk = ntk + dd * (s_w**2 * aa + s_b**2)
    return ntk / k


# ------------------------------------------------------------------ tiling


def _blocks(x: jax.Array, size: int) -> jax.Array:
    """(n, d) -> (ceil(n/size), size, d), padding with copies of the last row."""
    x = pad_rows(x, size)
    return x.reshape((x.shape[0] // size, size) + x.shape[1:])


def _structured_ntk(apply_fn, params, x1, x2, batch_size):
    layers = structured_layers(rule_of(apply_fn), params)
    x2_given = x2 is not None
    feats2, scales, k = _features(layers, x2 if x2_given else x1)
    if batch_size is None or batch_size >= x1.shape[0]:
        feats1 = _features(layers, x1)[0] if x2_given else feats2
        return _structured_contract(feats1, feats2, scales, k)
    n1 = x1.shape[0]

    def row_block(xb):
        return _structured_contract(_features(layers, xb)[0], feats2, scales, k)

    out = jax.lax.map(row_block, _blocks(x1, batch_size))  # (m, B, n2)
    return out.reshape(-1, out.shape[-1])[:n1]


def _outputs_2d(apply_fn, params, x):
    f = apply_fn(params, x)
    return f.reshape(x.shape[0], -1) if f.ndim != 2 else f


# ------------------------------------------------------------------ any function


def _feature_ntk(p: structured.Plan, axes, leaves, x1, x2, batch_size):
    """Θ̂ from `structured.features` of both sides, in row × column blocks of ``batch_size``
    points (each column block's features recomputed per row block: memory 2 blocks)."""

    def feats(x):
        return structured.features(p, leaves, x)

    n1 = x1.shape[0]
    y = x1 if x2 is None else x2
    n2 = y.shape[0]
    if batch_size is None or batch_size >= max(n1, n2):
        f1 = feats(x1)
        return structured.contract(p, axes, f1, f1 if x2 is None else feats(x2))
    y_blocks = _blocks(y, batch_size)
    m2 = y_blocks.shape[0]

    def row_block(xb):
        f1 = feats(xb)
        cols = jax.lax.map(lambda yb: structured.contract(p, axes, f1, feats(yb)), y_blocks)
        return jnp.moveaxis(cols, 0, 1).reshape((xb.shape[0], m2 * batch_size) + cols.shape[3:])

    out = jax.lax.map(row_block, _blocks(x1, batch_size))
    return out.reshape((-1,) + out.shape[2:])[:n1, :n2]


def _ntvp_ntk(p: structured.Plan, axes, leaves, x1, x2, batch_size):
    """Θ̂ by NTK-vector products: for each point y of x2 and output entry o', the parameter
    vector v = J(y)ᵀ e_o' (one reverse pass), then J(x) v for every x of x1 (one forward-mode
    pass each): the column Θ̂[:, :, y, o']. No Jacobian is stored."""
    f = structured.run_fn(p)
    k = math.prod(p.out_shape)
    o1, o2, res, _ = axes.indices(1)

    def column(yi):
        _, vjp_fn = jax.vjp(lambda ls: f(ls, yi), leaves)
        basis = jnp.eye(k, dtype=p.out_dtype).reshape((k, *p.out_shape))
        (tangents,) = jax.vmap(vjp_fn)(basis)  # k parameter vectors

        def jvp_all(t):
            return jax.vmap(lambda xi: jax.jvp(lambda ls: f(ls, xi), (leaves,), (t,))[1])(x1)

        th = jax.vmap(jvp_all)(tangents)  # (k, n1, *O1)
        th = jnp.moveaxis(th.reshape(p.out_shape + th.shape[1:]), len(p.out_shape), 0)
        # (n1, *O2, *O1) -> reduced over the output axes
        return jnp.einsum(th, [0] + o2 + o1, [0] + res, precision=_HI)

    y = x1 if x2 is None else x2
    if batch_size is None or batch_size >= y.shape[0]:
        cols = jax.vmap(column)(y)  # (n2, n1, *R)
    else:
        blocks = jax.lax.map(jax.vmap(column), _blocks(y, batch_size))
        cols = blocks.reshape((-1,) + blocks.shape[2:])[: y.shape[0]]
    return jnp.moveaxis(cols, 0, 1) / axes.traced_size


@dataclasses.dataclass(frozen=True, eq=False)
class Route:
    """How `empirical_ntk` computes: ``kind`` "stax" (the rule-based structured path of a
    `stax.serial` Dense/elementwise chain), "features" (Jacobians and structured uses of
    ``plan``) or "ntvp"; compared by identity, cached per function and shapes, so that the
    compiled computation is reused."""

    kind: str
    plan: structured.Plan | None
    axes: structured.OutputAxes
    implementation: str  # the public name it came from


def ntk_traced(apply_fn, params, x1, x2, implementation, batch_size, route: Route | None = None):
    """Θ̂ (outputs averaged) without boundary checks, for use inside other traced code (e.g.
    Monte Carlo): ``implementation`` "jacobian", "ntvp" or "structured" (the stax rules where
    they apply, else the jaxpr), or a `Route`."""
    if route is None:  # the mean over every output entry, as the Monte Carlo NNGP
        n_out = len(_plan(apply_fn, params, x1, False).out_shape)
        route = make_route(apply_fn, params, x1, implementation, tuple(range(1, 1 + n_out)), ())
    if route.kind == "stax":
        return _structured_ntk(apply_fn, params, x1, x2, batch_size)
    leaves = jax.tree_util.tree_leaves(params)
    if route.kind == "ntvp":
        return _ntvp_ntk(route.plan, route.axes, leaves, x1, x2, batch_size)
    return _feature_ntk(route.plan, route.axes, leaves, x1, x2, batch_size)


def _ntk_checked(apply_fn, params, x1, x2, route, batch_size):
    ntk = ntk_traced(apply_fn, params, x1, x2, route.implementation, batch_size, route)
    return ntk, all_finite([ntk])


_ntk_jit = jax.jit(_ntk_checked, static_argnames=("apply_fn", "route", "batch_size"))


# ------------------------------------------------------------------ choosing a route


def _remember(table: weakref.WeakKeyDictionary, apply_fn, key, make: Callable):
    """``make()``, remembered in ``table`` per ``apply_fn`` (weakly) and ``key``; computed
    anew when ``apply_fn`` cannot be weakly referenced."""
    try:
        cache = table.setdefault(apply_fn, {})
    except TypeError:  # not weak-referenceable: no cache
        cache = {}
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _shapes(params) -> tuple:
    """The parameters' structure, shapes and dtypes: what plans and choices depend on."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    return treedef, tuple((jnp.shape(a), jnp.result_type(a)) for a in leaves)


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _plan(apply_fn, params, x1, structured_uses: bool) -> structured.Plan:
    """`structured.plan`, cached per (apply_fn, parameter shapes, point shape, flag)."""
    key = (_shapes(params), x1.shape[1:], jnp.dtype(x1.dtype), structured_uses)
    return _remember(
        _PLANS,
        apply_fn,
        key,
        lambda: structured.plan(apply_fn, params, x1.shape[1:], x1.dtype, structured_uses),
    )


_ROUTES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _stax_route_possible(apply_fn, params, input_ndim: int, axes) -> bool:
    return (
        input_ndim == 2
        and axes.kinds == ("trace",)
        and structured_layers(rule_of(apply_fn), params) is not None
    )


def make_route(apply_fn, params, x1, implementation, trace_axes, diagonal_axes) -> Route:
    """The `Route` for a public ``implementation`` ("jacobian", "ntvp", "structured"; "auto"
    is resolved by `choose`)."""
    p_generic = _plan(apply_fn, params, x1, False)
    axes = structured.OutputAxes.from_nt(p_generic.out_shape, trace_axes, diagonal_axes)
    if implementation == "jacobian":
        return _cached_route("features", p_generic, axes, implementation, apply_fn)
    if implementation == "ntvp":
        return _cached_route("ntvp", p_generic, axes, implementation, apply_fn)
    if _stax_route_possible(apply_fn, params, x1.ndim, axes):
        return _cached_route("stax", None, axes, implementation, apply_fn)
    return _cached_route("features", _plan(apply_fn, params, x1, True), axes, implementation,
                         apply_fn)  # fmt: skip


def _cached_route(kind, plan, axes, implementation, apply_fn) -> Route:
    key = (kind, id(plan), axes, implementation)
    return _remember(_ROUTES, apply_fn, key, lambda: Route(kind, plan, axes, implementation))


@dataclasses.dataclass(frozen=True)
class Cost:
    """A route's estimated operations and the bytes it holds at once."""

    implementation: str
    flops: float
    bytes: int


def costs(apply_fn, params, x1, x2, trace_axes=(-1,), diagonal_axes=()) -> list[Cost]:
    """Estimated cost of each implementation on these inputs (the cost model of "auto",
    after Novak et al. 2022, Table 1), from the jaxpr's shapes: F the forward operations of
    one point, k the output entries per point, P the parameters, N = n1 + n2 points.

    - jacobian: N·k reverse passes (3F each) + the contraction, 2·n1·n2·k'·P (k' the output
      pairs kept); holds N·k·P Jacobian entries.
    - structured: the same reverse passes + opt_einsum's count for each structured use's
      contraction + the Jacobian contraction of the other parameters; holds the stored
      activations and sensitivities.
    - ntvp: n2·k reverse passes + n2·k forward-mode passes over n1 points (3F per point);
      holds k parameter vectors per column point.
    """
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    n = n1 if x2 is None else n1 + n2
    item = jnp.dtype(x1.dtype).itemsize
    pg = _plan(apply_fn, params, x1, False)
    ps = _plan(apply_fn, params, x1, True)
    axes = structured.OutputAxes.from_nt(pg.out_shape, trace_axes, diagonal_axes)
    f = structured.forward_flops(pg)
    k = math.prod(pg.out_shape)
    return [
        Cost(
            "jacobian",
            n * k * 3 * f + structured.contraction_flops(pg, axes, n1, n2),
            structured.feature_bytes(pg, n, item),
        ),
        Cost(
            "structured",
            n * k * 3 * f + structured.contraction_flops(ps, axes, n1, n2),
            structured.feature_bytes(ps, n, item)
            + int(structured.contraction_intermediate(ps, axes, n1, n2)) * item,
        ),
        Cost("ntvp", n2 * k * 3 * f * (1 + n1), ntvp_bytes(pg, n1, n2, item)),
    ]


_CHOICES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def ntvp_bytes(p: structured.Plan, n1: int, cols: int, item: int) -> int:
    """What "ntvp" holds for ``cols`` column points at once: k parameter vectors and, for each,
    a forward-mode pass over the n1 row points (their intermediates and k outputs)."""
    k = math.prod(p.out_shape)
    n_params = sum(math.prod(s) for s in p.leaf_shapes)
    return cols * k * (n_params + n1 * (structured.activation_entries(p) + k)) * item


def choose(apply_fn, params, x1, x2, trace_axes, diagonal_axes) -> str:
    """ "auto": the stax rule path when it applies, else the implementation of fewest
    estimated operations among those whose working set fits in half the free memory (else
    the one of least memory). Remembered per function, shapes and axes."""
    key = (
        _shapes(params),
        x1.shape,
        jnp.dtype(x1.dtype),
        None if x2 is None else x2.shape,
        repr(trace_axes),
        repr(diagonal_axes),
    )
    return _remember(
        _CHOICES,
        apply_fn,
        key,
        lambda: _choose(apply_fn, params, x1, x2, trace_axes, diagonal_axes),
    )


def _choose(apply_fn, params, x1, x2, trace_axes, diagonal_axes) -> str:
    p_generic = _plan(apply_fn, params, x1, False)
    axes = structured.OutputAxes.from_nt(p_generic.out_shape, trace_axes, diagonal_axes)
    if _stax_route_possible(apply_fn, params, x1.ndim, axes):
        return "structured"
    cs = costs(apply_fn, params, x1, x2, trace_axes, diagonal_axes)
    free = available_memory()
    fits = [c for c in cs if free is None or c.bytes <= free // 2]
    if fits:
        return min(fits, key=lambda c: c.flops).implementation
    return min(cs, key=lambda c: c.bytes).implementation


def resolve_implementation(
    apply_fn: Callable, params: Any, implementation: str, input_ndim: int = 2
) -> str:
    """Whether a `stax` chain takes the rule-based structured path: "structured" when
    ``apply_fn`` is a `stax.serial` of Dense and elementwise layers with matching params and
    2-D inputs, else "jacobian" (for "auto"); "structured" requested for anything else
    raises (Monte Carlo sampling, `theory.kernels.monte_carlo`, uses only these two)."""
    if implementation not in ("auto", "jacobian", "structured"):
        raise ValueError(
            f"implementation must be one of ('auto', 'jacobian', 'structured'), got "
            f"{implementation!r}"
        )
    ok = input_ndim == 2 and structured_layers(rule_of(apply_fn), params) is not None
    if implementation == "structured" and not ok:
        raise ValueError(
            "implementation='structured' needs apply_fn from stax.serial of Dense and "
            "elementwise layers (with matching params) and 2-D inputs x1 (n_points, "
            "features); use implementation='jacobian'"
        )
    if implementation == "auto":
        return "structured" if ok else "jacobian"
    return implementation


def canonical_implementation(implementation) -> str:
    """A public implementation name from a name or neural-tangents' number (0 auto,
    1 Jacobian contraction, 2 NTK-vector products, 3 structured derivatives)."""
    if isinstance(implementation, (int, np.integer)) and not isinstance(implementation, bool):
        if int(implementation) in _NT_NUMBERS:
            return _NT_NUMBERS[int(implementation)]
    elif isinstance(implementation, str) and implementation in IMPLEMENTATIONS:
        return implementation
    raise ValueError(
        f"implementation must be one of {IMPLEMENTATIONS} or neural-tangents' 0-3, got "
        f"{implementation!r}"
    )


def check_batch_size(batch_size: Any, name: str = "batch_size") -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"{name} must be None or a positive integer, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"{name} must be None or a positive integer, got {batch_size!r}")
    return int(batch_size)


def check_params(params: Any) -> None:
    """Every parameter leaf a finite floating-point array (named by its pytree path)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = "params" + jax.tree_util.keystr(path)
        if isinstance(leaf, jax.core.Tracer):
            continue
        if not isinstance(leaf, (jax.Array, np.ndarray, np.generic, float)) or isinstance(
            leaf, bool
        ):
            raise TypeError(
                f"{name} is a {type(leaf).__name__}, not an array: every leaf of params is "
                "differentiated, so non-array values (names, flags, functions) must live "
                "outside params (close over them in apply_fn) or be None"
            )
        arr = jnp.asarray(leaf)
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            raise TypeError(f"{name} must be a floating-point array, got {arr.dtype}")
        check_precision(name, arr.dtype)
        with jax.ensure_compile_time_eval():  # now, even inside a caller's jax.jit
            finite = bool(jnp.all(jnp.isfinite(arr)))
        if not finite:
            raise ValueError(f"{name} (shape {arr.shape}) contains NaN or inf")


def _check_float_inputs(x1, x2) -> None:
    for name, x in (("x1", x1), ("x2", x2)):
        dtype = getattr(x, "dtype", None)
        if dtype is None and x is not None:
            dtype = np.asarray(x).dtype
        if dtype is not None and (
            jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_)
        ):
            raise TypeError(
                f"{name} has dtype {dtype}: the empirical NTK differentiates apply_fn with "
                "respect to params at given inputs, and integer inputs (token ids, labels) "
                "would be cast to floats silently changing what apply_fn does; pass float "
                "inputs, or embed the integers inside apply_fn from a float array"
            )


@any_rank_promotion
def empirical_ntk(
    apply_fn: Callable,
    params: Any,
    x1: Any,
    x2: Any = None,
    implementation: str | int = "auto",
    batch_size: int | None = None,
    *,
    trace_axes: int | Sequence[int] = (-1,),
    diagonal_axes: int | Sequence[int] = (),
) -> jax.Array:
    r"""Θ̂(x1, x2)[o, o'] = Σ_p ∂f_o(x1)/∂θ_p · ∂f_o'(x2)/∂θ_p (Jacot et al. 2018, §4), for any
    JAX function, reduced over output axes as neural-tangents' ``empirical_ntk_fn``.

    ===================  ======  ==============================================================
    argument             symbol  meaning
    ===================  ======  ==============================================================
    ``apply_fn``         f       ``apply_fn(params, x) -> (n, *O)`` (a (n,) output is read as
                                 (n, 1)); point i's output must depend on x_i only
    ``params``           θ       its parameters: any pytree of float arrays
    ``x1``, ``x2``       x, x'   inputs (n1, ...), (n2, ...); ``x2=None`` means x1
    ``implementation``   —       "auto" (0), "jacobian" (1), "ntvp" (2), "structured" (3):
                                 names or neural-tangents' numbers; see below
    ``batch_size``       B       points per block (memory: two blocks' features); None: all
                                 at once, or blocks sized to hold 2**28 feature entries
    ``trace_axes``       —       output axes (of (n, *O); 0 is the points') averaged over
                                 their diagonal; default (-1,): the mean over the last axis
    ``diagonal_axes``    —       output axes of which only the diagonal o = o' is kept
    ===================  ======  ==============================================================

    Returns Θ̂ of shape (n1, n2, …): after the point axes, each output axis neither traced
    nor diagonal as a pair (o, o') in place, each diagonal axis once, traced axes not at all
    (neural-tangents' layout; divided by the traced axes' size). Compiled with ``jax.jit``
    (one trace per apply_fn, shapes and route).

    Implementations (Novak, Sohl-Dickstein & Schoenholz, ICML 2022), all giving the same Θ̂:

    - "jacobian": per-point Jacobians J = ∂f/∂θ (one reverse pass per output entry) contracted
      over the parameters.
    - "ntvp": NTK-vector products, column by column: J(y)ᵀe (reverse) then J(x)·(J(y)ᵀe)
      (forward mode) for every x; no Jacobian is held.
    - "structured": structured derivatives read from the jaxpr (`theory.kernels.structured`):
      a weight used once in a ``dot_general`` (dense layers, einsums) contributes through its
      input a and output sensitivity δ, (a·a')(δ·δ'), never forming its Jacobian; other
      parameters take the Jacobian route. For a `stax.serial` chain of Dense and elementwise
      layers a rule-based form of the same (`structured_layers`).
    - "auto": that stax form when it applies, else the cheapest of the three by the cost
      model `costs` (operations from the jaxpr's shapes; memory within half the free memory).

    Numerical guards as `stax` ``kernel_fn``: 16-bit inputs or parameters raise `TypeError`,
    as do integer inputs and non-array parameter leaves (named by their pytree path); an output
    (plus the features held) that cannot fit raises `KernelMemoryError` before allocating;
    a non-finite Θ̂ from finite inputs and parameters raises `NonFiniteKernelError` (float64
    is the usual remedy; the values are in ``error.result``).
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {apply_fn!r}")
    _check_float_inputs(x1, x2)
    x1, x2 = check_inputs(x1, x2, spatial_ndim="any")
    batch_size = check_batch_size(batch_size)
    check_params(params)
    if not jax.tree_util.tree_leaves(params):
        raise ValueError("params has no arrays: the empirical NTK of a function without "
                         "parameters is zero; nothing to compute")  # fmt: skip
    impl = canonical_implementation(implementation)
    if impl == "auto":
        impl = choose(apply_fn, params, x1, x2, trace_axes, diagonal_axes)
    route = make_route(apply_fn, params, x1, impl, trace_axes, diagonal_axes)
    if impl == "structured" and route.kind == "stax" and x1.ndim != 2:
        raise AssertionError("unreachable: the stax route needs 2-D inputs")
    leaves = jax.tree_util.tree_leaves(params)
    dtype = jnp.result_type(x1.dtype, *(jnp.result_type(p) for p in leaves))
    item = jnp.dtype(dtype).itemsize
    n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
    extra = 0
    if route.kind == "features":  # the features of the points held at once
        per_point = structured.feature_bytes(route.plan, 1, item)
        if batch_size is None:
            fit = max(1, _JACOBIAN_BLOCK_ELEMENTS * item // max(1, per_point))
            batch_size = None if fit >= max(n1, n2) else fit
        if batch_size is None or batch_size >= max(n1, n2):
            held = n1 + (0 if x2 is None else n2)
        else:
            held = 2 * batch_size
        extra = held * per_point
    elif route.kind == "ntvp":
        per_col = ntvp_bytes(route.plan, n1, 1, item)
        if batch_size is None:  # columns in blocks of at most 2**28 held entries
            fit = max(1, _JACOBIAN_BLOCK_ELEMENTS * item // max(1, per_col))
            batch_size = None if fit >= n2 else fit
        extra = (n2 if batch_size is None else min(batch_size, n2)) * per_col
    pair = math.prod(route.axes.result_shape)
    check_memory("empirical_ntk", x1, x2, ("ntk",), dtype, extra_bytes=extra, pair_size=pair)
    ntk, ok = _ntk_jit(apply_fn, params, x1, x2, route=route, batch_size=batch_size)
    check_outputs("empirical_ntk", ok, {"ntk": ntk}, (x1, x2), ntk)
    return ntk
