r"""neural-tangents' kernel-function API for finite networks, on our empirical NTK engine.

``empirical_ntk_fn(f, trace_axes, diagonal_axes, vmap_axes, implementation)`` returns
``ntk_fn(x1, x2, params, **apply_fn_kwargs)``, and likewise `empirical_nngp_fn`,
`empirical_kernel_fn` (``kernel_fn(x1, x2, get, params, **kwargs)``), `empirical_ntk_vp_fn`,
`linearize` and `taylor_expand`, with neural-tangents 0.6.5's signatures and output layout:

    Θ̂(x1, x2) = Σ_p ∂f(x1)/∂θ_p ⊗ ∂f(x2)/∂θ_p,    K̂(x1, x2) = f(x1) ⊗ f(x2),

each of shape ``zip(f(x1).shape, f(x2).shape)`` with the ``trace_axes`` averaged out and the
``diagonal_axes`` kept once (see `theory.kernels.empirical.empirical_ntk`). A function whose
output is a pytree gets one kernel per output leaf (cross-terms between outputs ignored, as
neural-tangents does).

Routes. A point's output may depend on the other points of the batch (batch normalization,
attention over the batch, a dropout key shared by the batch): neural-tangents' default
``vmap_axes=None`` makes no assumption, and neither do we. Our fast routes
(`empirical.empirical_ntk`: structured derivatives, NTK-vector products, per-point
Jacobians) need each point's output to depend on that point alone; with ``vmap_axes=None``
that is *checked* on the given inputs — the batch's outputs against the outputs of each point
alone (one extra forward pass, remembered per function and shapes) — and if any differs
beyond roundoff, or ``vmap_axes`` names other axes than 0, or the keywords differ between x1
and x2 (a split ``rng``) or include arrays (a graph's ``pattern``, a dropout key: per point
or shared by the batch, the call does not say), the kernel is computed from full-batch Jacobians
``∂f(params, X)/∂θ``, which is the definition itself.

``implementation`` (`NtkImplementation` or 0–3) picks the fast route; all give the same
numbers. Our default is ``AUTO`` (neural-tangents' is ``JACOBIAN_CONTRACTION``, whose cost
model it disables on CPU/GPU): ours chooses by a cost model that is right on every backend.
"""

from __future__ import annotations

import enum
import math
import weakref
from collections import namedtuple
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from theory.kernels import structured
from theory.kernels.empirical import canonical_implementation, empirical_ntk
from theory.kernels.kernel import any_rank_promotion, same_inputs

__all__ = [
    "NtkImplementation",
    "empirical_kernel_fn",
    "empirical_nngp_fn",
    "empirical_ntk_fn",
    "empirical_ntk_vp_fn",
    "linearize",
    "taylor_expand",
]

_HI = jax.lax.Precision.HIGHEST


class NtkImplementation(enum.IntEnum):
    """How the empirical NTK is computed (neural-tangents' numbering; same numbers from all):
    ``AUTO`` (0) the cheapest by our cost model, ``JACOBIAN_CONTRACTION`` (1) per-point
    Jacobians contracted, ``NTK_VECTOR_PRODUCTS`` (2) NTK-vector products, column by
    column, ``STRUCTURED_DERIVATIVES`` (3) structured derivatives read from the jaxpr."""

    AUTO = 0
    JACOBIAN_CONTRACTION = 1
    NTK_VECTOR_PRODUCTS = 2
    STRUCTURED_DERIVATIVES = 3


def _key_data(key):
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def _equal(a, b) -> jax.Array:
    """Whether two arrays (or trees of arrays: several inputs) are equal (False for different
    structures or shapes), traceable."""
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    if ta != tb or any(np.shape(u) != np.shape(v) for u, v in zip(la, lb)):
        return jnp.asarray(False)
    return jnp.all(jnp.asarray([jnp.all(jnp.asarray(u) == jnp.asarray(v)) for u, v in zip(la, lb)]))


def _read_keys(key, x1, x2):
    """neural-tangents' dropout keys for a pair of batches, so that the two batches draw the
    same mask exactly when they are the same inputs: a single key is ``key1 = key`` and
    ``key2 = key`` if x1 equals x2, else ``fold_in(key, 1)``; a pair ``(key1, key2)`` is taken
    as given, except that key2 becomes key1 if x1 equals x2 and ``fold_in(key2, 1)`` if the
    keys are equal but the inputs are not."""
    if isinstance(key, tuple) and len(key) == 2:
        key1, key2 = key
        if key2 is None:
            return key1, key2
        same_keys = _equal(_key_data(key1), _key_data(key2))
        key2 = jnp.where(same_keys, jax.random.fold_in(key2, 1), key2)
        return key1, jnp.where(_equal(x1, x2), key1, key2)
    if not isinstance(key, jax.Array | np.ndarray):
        raise TypeError(
            f"rng must be a PRNG key or a pair of keys (one per batch), got {type(key).__name__}"
        )
    return key, jnp.where(_equal(x1, x2), key, jax.random.fold_in(key, 1))


def split_kwargs(kwargs: dict, x1=None, x2=None) -> tuple[dict, dict]:
    """neural-tangents' keyword convention: with x2 given, ``rng`` becomes one key per batch
    (`_read_keys`); otherwise, and for every other keyword, a pair ``(v1, v2)`` is v1 for x1
    and v2 for x2, and anything else goes to both."""
    k1, k2 = {}, {}
    for key, v in kwargs.items():
        if key == "rng" and v is not None and x2 is not None:
            k1[key], k2[key] = _read_keys(v, x1, x2)
        elif isinstance(v, tuple) and len(v) == 2:
            k1[key], k2[key] = v
        else:
            k1[key] = k2[key] = v
    return k1, k2


def _has_arrays(kwargs: dict) -> bool:
    return any(isinstance(v, jax.Array | np.ndarray) for v in jax.tree_util.tree_leaves(kwargs))


def _same_kwargs(k1: dict, k2: dict) -> bool:
    if k1.keys() != k2.keys():
        return False
    for key in k1:
        a, b = k1[key], k2[key]
        if a is b:
            continue
        la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
        if any(isinstance(v, jax.core.Tracer) for v in la + lb):
            return False  # traced values cannot be compared; the full-batch route is exact
        if len(la) != len(lb) or not all(
            np.shape(u) == np.shape(v) and bool(np.all(np.asarray(u) == np.asarray(v)))
            for u, v in zip(la, lb)
        ):
            return False
    return True


# Whether a function's points are independent, remembered per (function, shapes, kwargs).
_INDEPENDENT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _points_independent(f, params, x, kwargs) -> bool:
    """Whether each point's output equals the output of that point alone (to roundoff)."""
    try:
        key = (
            jax.tree_util.tree_structure(params),
            tuple((np.shape(p), jnp.result_type(p).name) for p in jax.tree_util.tree_leaves(
                params)),
            np.shape(x),
            jnp.result_type(x).name,
            tuple(sorted(kwargs)),
        )  # fmt: skip
        table = _INDEPENDENT.setdefault(f, {})
    except TypeError:  # a function that cannot be weakly referenced: check every time
        table, key = {}, None
    if key in table:
        return table[key]
    if any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves((params, x))):
        return False  # traced: values cannot be compared; the full-batch route is exact
    batch, alone = _both_ways(f, params, x, kwargs)
    ok = True
    for b, a in zip(jax.tree_util.tree_leaves(batch), jax.tree_util.tree_leaves(alone)):
        a = a.reshape((a.shape[0],) + a.shape[2:]) if a.ndim >= 2 and a.shape[1] == 1 else a
        if a.shape != b.shape:
            ok = False
            break
        dtype = jnp.result_type(b)
        eps = float(jnp.finfo(dtype).eps) if jnp.issubdtype(dtype, jnp.floating) else 0.0
        b, a = np.asarray(b, np.float64), np.asarray(a, np.float64)
        scale = max(1.0, float(np.max(np.abs(b))) if b.size else 1.0)
        if not np.allclose(a, b, rtol=0, atol=1e3 * eps * scale):
            ok = False
            break
    if key is not None:
        table[key] = ok
    return ok


def _maybe_jit(fn: Callable, static: tuple[str, ...]) -> Callable:
    """``fn`` compiled with ``static`` arguments (the function, the axes) when they hash,
    else ``fn`` itself (a function that cannot be hashed is traced every call)."""
    jitted = jax.jit(fn, static_argnames=static)

    def call(*args, **kwargs):
        try:
            for name in static:
                hash(kwargs[name])
        except TypeError:
            return fn(*args, **kwargs)
        return jitted(*args, **kwargs)

    return call


def _both_ways_impl(params, x, kwargs, *, f):
    return f(params, x, **kwargs), jax.vmap(lambda xi: f(params, xi[None], **kwargs))(x)


_both_ways_jit = _maybe_jit(_both_ways_impl, ("f",))


def _both_ways(f, params, x, kwargs):
    """The batch's outputs and each point's alone (compiled once per function)."""
    return _both_ways_jit(params, x, kwargs, f=f)


def _axes_for(out, trace_axes, diagonal_axes) -> structured.OutputAxes:
    return structured.OutputAxes.from_nt(np.shape(out)[1:], trace_axes, diagonal_axes)


def _strip_point_axis(ndim: int, trace_axes, diagonal_axes):
    """neural-tangents lets ``trace_axes``/``diagonal_axes`` name the point axis 0 too: the
    kernel is then taken only over pairs (x1[i], x2[i]) — averaged over i (trace) or kept as
    one axis of length n in front (diagonal). Returns the axes without it and what to do with
    it (None, "trace" or "diag")."""

    def strip(axes):
        axes = (axes,) if isinstance(axes, int | np.integer) else tuple(axes)
        keep = tuple(
            a
            for a in axes
            if isinstance(a, bool)
            or not isinstance(a, int | np.integer)
            or not -ndim <= a < ndim
            or int(a) % ndim != 0
        )
        return keep, len(keep) < len(axes)

    tr, in_tr = strip(trace_axes)
    dg, in_dg = strip(diagonal_axes)
    if in_tr and in_dg:
        raise ValueError("trace_axes and diagonal_axes share axes [0]")
    return tr, dg, "trace" if in_tr else "diag" if in_dg else None


def _reduce_points(k, kind):
    """The pairs (x1[i], x2[i]) of a kernel (n1, n2, …): their mean or their diagonal."""
    if kind is None:
        return k
    n1, n2 = np.shape(k)[:2]
    if n1 != n2:
        raise ValueError(
            f"{'trace_axes' if kind == 'trace' else 'diagonal_axes'} names the point axis 0, "
            f"which pairs x1[i] with x2[i]: x1 and x2 need as many points, got {n1} and {n2}"
        )
    d = jnp.moveaxis(jnp.diagonal(k, axis1=0, axis2=1), -1, 0)
    return d.mean(0) if kind == "trace" else d


def _point_reduced(contract):
    """``contract(o1, o2, trace_axes, diagonal_axes)`` for outputs (n, …), extended to axes that
    name the point axis."""

    def fn(o1, o2, trace_axes, diagonal_axes, *args, **kwargs):
        tr, dg, kind = _strip_point_axis(len(np.shape(o1)), trace_axes, diagonal_axes)
        k = contract(o1, o2, tr, dg, *args, **kwargs)
        return _reduce_points(k, kind)

    return fn


def _contract_outputs(o1, o2, axes: structured.OutputAxes, extra: int = 0) -> jax.Array:
    """Σ over ``extra`` trailing axes (parameters) of o1 ⊗ o2 in neural-tangents' layout."""
    s1, s2, res, nxt = axes.indices(2)
    pl = list(range(nxt, nxt + extra))
    out = jnp.einsum(o1, [0] + s1 + pl, o2, [1] + s2 + pl, [0, 1] + res, precision=_HI)
    return out / axes.traced_size


def _full_batch_ntk(f, params, x1, x2, kw1, kw2, trace_axes, diagonal_axes):
    """Θ̂ from the Jacobians of the whole batch, ∂f(params, X)/∂θ: exact for any f."""
    arrays = all(
        isinstance(v, jax.Array | np.ndarray | float | int)
        for v in jax.tree_util.tree_leaves((kw1, kw2))
    )
    fn = _full_batch_jit if arrays else _full_batch_impl
    return fn(params, x1, x2, kw1, kw2, f=f, trace_axes=_hashable(trace_axes),
              diagonal_axes=_hashable(diagonal_axes))  # fmt: skip


def _hashable(axes):
    return (axes,) if isinstance(axes, int | np.integer) else tuple(axes)


def _full_batch_impl(params, x1, x2, kw1, kw2, *, f, trace_axes, diagonal_axes):
    j1 = jax.jacrev(lambda p: f(p, x1, **kw1))(params)
    j2 = j1 if x2 is None else jax.jacrev(lambda p: f(p, x2, **kw2))(params)
    out1 = jax.eval_shape(lambda: f(params, x1, **kw1))

    def one(o, a, b):
        tr, dg, kind = _strip_point_axis(len(o.shape), trace_axes, diagonal_axes)
        axes = _axes_for(o, tr, dg)
        total = 0.0
        for la, lb, leaf in zip(
            jax.tree_util.tree_leaves(a),
            jax.tree_util.tree_leaves(b),
            jax.tree_util.tree_leaves(params),
        ):
            total = total + _contract_outputs(la, lb, axes, extra=np.ndim(leaf))
        return _reduce_points(total, kind)

    o_leaves, o_tree = jax.tree_util.tree_flatten(out1)
    j1_per_out = o_tree.flatten_up_to(j1)
    j2_per_out = o_tree.flatten_up_to(j2)
    return o_tree.unflatten([one(o, a, b) for o, a, b in zip(o_leaves, j1_per_out, j2_per_out)])


_full_batch_jit = _maybe_jit(_full_batch_impl, ("f", "trace_axes", "diagonal_axes"))


def _leaf_fn(f, index: int, n_leaves: int, kwargs: dict):
    def g(params, x):
        out = jax.tree_util.tree_leaves(f(params, x, **kwargs))
        if len(out) != n_leaves:
            raise ValueError("f returned a different number of outputs on x1 and x2")
        return out[index]

    return g


def empirical_ntk_fn(
    f: Callable,
    trace_axes=(-1,),
    diagonal_axes=(),
    vmap_axes=None,
    implementation: NtkImplementation | int | str = NtkImplementation.AUTO,
    **unused_private,
) -> Callable:
    r"""neural-tangents' ``empirical_ntk_fn``: a function ``ntk_fn(x1, x2, params, **kwargs)``
    returning Θ̂(x1, x2) = Σ_p ∂f(x1)/∂θ_p ⊗ ∂f(x2)/∂θ_p of ``f(params, x, **kwargs)``
    (Jacot et al. 2018), in neural-tangents' layout (see the module docstring).

    Args:
      f: ``f(params, x, **kwargs)`` returning an array or a pytree of arrays (one kernel per
        output leaf).
      trace_axes: output axes averaged over their diagonal (default: the last).
      diagonal_axes: output axes kept only on their diagonal.
      vmap_axes: None (no assumption; points' independence is checked, see the module
        docstring) or 0 (the caller asserts each point's output depends on it alone); other
        axes take the exact full-batch route.
      implementation: `NtkImplementation`, its number or our name ("auto", "jacobian",
        "ntvp", "structured").
      **unused_private: neural-tangents' private tuning flags (``_j_rules``, ``_s_rules``,
        ``_fwd``), accepted and ignored: our routes have no such switches.
    """
    impl = canonical_implementation(
        int(implementation) if isinstance(implementation, NtkImplementation) else implementation
    )
    bad = sorted(k for k in unused_private if k not in ("_j_rules", "_s_rules", "_fwd"))
    if bad:
        raise TypeError(f"empirical_ntk_fn got unexpected keyword arguments {bad}")

    @any_rank_promotion
    def ntk_fn(x1, x2, params, **apply_fn_kwargs):
        x2 = same_inputs(x2)
        kw1, kw2 = split_kwargs(apply_fn_kwargs, x1, x2)
        # array keywords (a graph's pattern, a dropout key) may be per point or shared by the
        # batch: without vmap_axes saying which, only the full-batch route is certain
        fast = vmap_axes == 0 or (vmap_axes is None and not _has_arrays(kw1))
        fast = fast and _same_kwargs(kw1, kw2)
        arrays = all(isinstance(x, (jax.Array, np.ndarray)) for x in (x1, x2) if x is not None)
        if fast and arrays and vmap_axes is None:
            fast = _points_independent(f, params, x1, kw1) and (
                x2 is None or _points_independent(f, params, x2, kw2)
            )
        if not (fast and arrays):
            return _full_batch_ntk(f, params, x1, x2, kw1, kw2, trace_axes, diagonal_axes)
        out = jax.eval_shape(lambda: f(params, x1, **kw1))
        leaves, tree = jax.tree_util.tree_flatten(out)
        kernels = []
        for i, leaf in enumerate(leaves):
            tr, dg, kind = _strip_point_axis(len(leaf.shape), trace_axes, diagonal_axes)
            k = empirical_ntk(
                f if len(leaves) == 1 and not kw1 else _leaf_fn(f, i, len(leaves), kw1),
                params,
                x1,
                x2,
                impl,
                trace_axes=tr,
                diagonal_axes=dg,
            )  # fmt: skip
            kernels.append(_reduce_points(k, kind))
        return tree.unflatten(kernels)

    return ntk_fn


def empirical_nngp_fn(f: Callable, trace_axes=(-1,), diagonal_axes=()) -> Callable:
    r"""neural-tangents' ``empirical_nngp_fn``: ``nngp_fn(x1, x2, params, **kwargs)`` returning
    K̂(x1, x2) = f(x1) ⊗ f(x2), reduced over ``trace_axes`` (averaged) and ``diagonal_axes``
    as Θ̂ is; one kernel per output leaf."""

    @any_rank_promotion
    def nngp_fn(x1, x2, params, **apply_fn_kwargs):
        x2 = same_inputs(x2)
        kw1, kw2 = split_kwargs(apply_fn_kwargs, x1, x2)
        out1 = f(params, x1, **kw1)
        out2 = out1 if x2 is None else f(params, x2, **kw2)
        contract = _point_reduced(
            lambda u, v, tr, dg: _contract_outputs(u, v, _axes_for(u, tr, dg))
        )
        return jax.tree_util.tree_map(
            lambda a, b: contract(a, b, trace_axes, diagonal_axes), out1, out2
        )

    return nngp_fn


def empirical_kernel_fn(
    f: Callable,
    trace_axes=(-1,),
    diagonal_axes=(),
    vmap_axes=None,
    implementation: NtkImplementation | int | str = NtkImplementation.AUTO,
    **unused_private,
) -> Callable:
    """neural-tangents' ``empirical_kernel_fn``: ``kernel_fn(x1, x2, get, params, **kwargs)``
    with ``get`` "nngp", "ntk", a tuple of them (a named tuple) or None (both)."""
    nngp_fn = empirical_nngp_fn(f, trace_axes, diagonal_axes)
    ntk_fn = empirical_ntk_fn(f, trace_axes, diagonal_axes, vmap_axes, implementation,
                              **unused_private)  # fmt: skip

    def kernel_fn(x1, x2, get, params, **apply_fn_kwargs):
        x2 = same_inputs(x2)
        single = isinstance(get, str)
        names = ("nngp", "ntk") if get is None else (get,) if single else tuple(get)
        if (
            not names
            or any(g not in ("nngp", "ntk") for g in names)
            or len(set(names)) < len(names)
        ):
            raise ValueError(f"get must be 'nngp', 'ntk', a tuple of them or None, got {get!r}")
        fns = {"nngp": nngp_fn, "ntk": ntk_fn}
        out = {g: fns[g](x1, x2, params, **apply_fn_kwargs) for g in names}
        if single:
            return out[names[0]]
        return namedtuple("EmpiricalKernel", names)(*(out[g] for g in names))

    return kernel_fn


def empirical_ntk_vp_fn(f: Callable, x1, x2, params, **apply_fn_kwargs) -> Callable:
    """neural-tangents' ``empirical_ntk_vp_fn``: ``v ↦ Θ̂(x1, x2) v`` for cotangents ``v``
    shaped as ``f(x2)``, without forming Θ̂: one reverse pass J(x2)ᵀv and one forward pass
    J(x1)·(J(x2)ᵀv), the cost of two evaluations of ``f``."""
    kw1, kw2 = split_kwargs(apply_fn_kwargs, x1, x2)
    x2_, kw2_ = (x1, kw1) if x2 is None else (x2, kw2)
    _, vjp = jax.vjp(lambda p: f(p, x2_, **kw2_), params)

    @jax.jit
    def product(cotangents):
        (tangent,) = vjp(cotangents)
        return jax.jvp(lambda p: f(p, x1, **kw1), (params,), (tangent,))[1]

    return any_rank_promotion(product)


def _difference(p, params):
    """``p − params`` leaf by leaf, in ``params``' structure (a list passed where the
    parameters were a tuple is read in order, as neural-tangents does)."""
    tree = jax.tree_util.tree_structure(params)
    leaves = jax.tree_util.tree_leaves(p)
    if len(leaves) != tree.num_leaves:
        raise ValueError(
            f"the parameters passed have {len(leaves)} leaves; the expansion point has "
            f"{tree.num_leaves}"
        )
    return jax.tree_util.tree_map(jnp.subtract, jax.tree_util.tree_unflatten(tree, leaves), params)


def linearize(f: Callable, params) -> Callable:
    r"""The first-order Taylor expansion of ``f`` in its parameters around ``params``:
    ``f_lin(p, *args, **kwargs) = f(params, …) + ∂f/∂θ|_params · (p − params)`` (one JVP);
    trained by gradient descent on MSE it follows `predict.gradient_descent_mse` with the
    empirical NTK (Lee et al. 2019)."""

    def f_lin(p, *args, **kwargs):
        dp = _difference(p, params)
        f0, df = jax.jvp(lambda q: f(q, *args, **kwargs), (params,), (dp,))
        return jax.tree_util.tree_map(jnp.add, f0, df)

    return f_lin


def taylor_expand(f: Callable, params, degree: int) -> Callable:
    r"""The Taylor expansion of ``f`` in its parameters around ``params`` to order
    ``degree``: ``Σ_{k≤degree} (1/k!) dᵏ/dεᵏ f(params + ε(p − params))|_{ε=0}``, the
    derivatives by Taylor-mode automatic differentiation (`jax.experimental.jet`)."""
    from jax.experimental import jet

    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 0:
        raise ValueError(f"degree must be a non-negative integer, got {degree!r}")

    def f_tayl(p, *args, **kwargs):
        dp = _difference(p, params)
        if degree == 0:
            return f(params, *args, **kwargs)

        def along(eps):
            q = jax.tree_util.tree_map(lambda a, d: a + eps * d, params, dp)
            return f(q, *args, **kwargs)

        zero = jnp.zeros((), jnp.result_type(*jax.tree_util.tree_leaves(params)))
        series_in = [jnp.ones_like(zero)] + [jnp.zeros_like(zero)] * (degree - 1)
        f0, series = jet.jet(along, (zero,), ((*series_in,),))
        # jet gives, per output leaf, the list of its k-th derivatives along ε (k = 1..degree);
        # the expansion at ε = 1 sums them divided by k!
        leaves, tree = jax.tree_util.tree_flatten(f0)
        per_leaf = tree.flatten_up_to(series)
        return tree.unflatten(
            [
                sum((t / math.factorial(k) for k, t in enumerate(terms, start=1)), start=f)
                for f, terms in zip(leaves, per_leaf)
            ]
        )

    return f_tayl
