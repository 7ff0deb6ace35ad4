r"""The empirical NTK of any JAX function: Jacobians, and structured derivatives from its jaxpr.

For ``f(θ, x)`` with per-point output shape O (``apply_fn(params, x)`` has shape (n, *O)),

    Θ̂(x, x')[o, o'] = Σ_p ∂f_o(x)/∂θ_p · ∂f_o'(x')/∂θ_p,

reduced over the output axes as neural-tangents' ``trace_axes`` (mean over the pair of axes'
diagonal) and ``diagonal_axes`` (keep the diagonal only); other output axes are kept as pairs
(o, o'), zipped: the result has shape (n1, n2, …) with, for each output axis in order, two
axes (kept), one (diagonal) or none (traced) — `OutputAxes`.

**Features.** Every route here computes, per point, a set of *features* whose pairwise
contraction gives Θ̂, one point at a time (``jax.vmap``: the outputs of point i must depend on
x_i only, as neural-tangents' ``vmap_axes=0`` asks):

- *Jacobian* (``"jacobian"``): J_p(x) = ∂f(x)/∂θ_p for every parameter array p, shape
  (*O, *shape(p)), by one reverse pass per output entry; Θ̂ = Σ_p ⟨J_p(x), J_p(x')⟩ over the
  parameter axes. Cost: N·|O| reverse passes, then N1·N2·|O|·P multiply-adds.
- *Structured derivatives* (``"structured"``; Novak, Sohl-Dickstein & Schoenholz, ICML 2022,
  "Fast finite width neural tangent kernel"): the function's jaxpr is read once. A parameter
  array W that enters the computation exactly once, as an operand of a ``dot_general``
  (``x @ W``, ``einsum``, a dense layer applied per position), has the Jacobian
  ∂f_o/∂W = Σ_f a[f, c] δ_o[f, g] (a the other operand, δ = ∂f/∂y the sensitivity of the
  ``dot_general``'s output y; c the contracted, g the kept axes of W, f the other operand's
  free axes; batch axes of the ``dot_general`` likewise) — an outer product that is never
  formed: its contribution

      ⟨J_W(x), J_W(x')⟩ = Σ_{f, f'} (Σ_c a[f, c] a'[f', c]) (Σ_{o, g} δ_o[f, g] δ'_o[f', g])

  is one four-operand ``einsum`` whose order of contraction opt_einsum chooses (for an MLP,
  with f empty: (a·a')(δ·δ'), N1·N2·(n_in + |O|·n_out) operations instead of
  N1·N2·|O|·n_in·n_out). a is recorded on the forward pass; δ comes from the same reverse
  passes as the Jacobian, by adding a zero *probe* to y (∂f/∂probe = δ). Every other
  parameter (a bias added after a reshape, a convolution's filter, a weight shared by two
  layers, one used inside a ``custom_vjp`` or a loop) takes the Jacobian route. The sum of all
  contributions is the same Θ̂ to float roundoff.
- *NTK-vector products* (``"ntvp"``, in `theory.kernels.empirical`): no stored features.

``plan`` reads the jaxpr (tracing ``apply_fn`` once; the bodies of jitted helpers inside it
are inlined, loops stay single steps); `features` and `contract` are traceable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np

__all__ = ["OutputAxes", "Plan", "plan", "features", "contract", "forward_flops"]

_HI = jax.lax.Precision.HIGHEST


# ------------------------------------------------------------------ output axes


@dataclasses.dataclass(frozen=True)
class OutputAxes:
    """How each per-point output axis enters Θ̂: "pair" (kept as o, o'), "diag" (o = o'),
    "trace" (o = o', averaged). ``shape``: the per-point output shape O."""

    shape: tuple[int, ...]
    kinds: tuple[str, ...]

    @classmethod
    def from_nt(cls, out_shape: Sequence[int], trace_axes, diagonal_axes) -> OutputAxes:
        """From neural-tangents' ``trace_axes``/``diagonal_axes``: axes of the batched output
        (n, *O), the point axis being 0 (negative counts from the end)."""
        ndim = 1 + len(out_shape)

        def canon(axes, name):
            axes = (axes,) if isinstance(axes, (int, np.integer)) else tuple(axes)
            out = []
            for a in axes:
                if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
                    raise TypeError(f"{name} must be integers (axes of the output), got {a!r}")
                if not -ndim <= a < ndim:
                    raise ValueError(
                        f"{name}: axis {a} is out of range for the output's {ndim} axes "
                        f"(n_points, *{tuple(out_shape)})"
                    )
                a = int(a) % ndim
                if a == 0:
                    raise ValueError(
                        f"{name}: axis {a} is the point axis; the kernel always keeps both "
                        "point axes (n1, n2)"
                    )
                out.append(a)
            return set(out)  # an axis named twice counts once, as in neural-tangents

        tr, dg = canon(trace_axes, "trace_axes"), canon(diagonal_axes, "diagonal_axes")
        if tr & dg:
            raise ValueError(f"trace_axes and diagonal_axes share axes {sorted(tr & dg)}")
        kinds = tuple("trace" if a in tr else "diag" if a in dg else "pair" for a in range(1, ndim))
        return cls(tuple(int(s) for s in out_shape), kinds)

    @property
    def traced_size(self) -> int:
        return math.prod(s for s, k in zip(self.shape, self.kinds) if k == "trace")

    @property
    def result_shape(self) -> tuple[int, ...]:
        """Trailing axes of Θ̂ after (n1, n2): zipped pairs, single diagonals, no traces."""
        out = []
        for s, k in zip(self.shape, self.kinds):
            out += [s, s] if k == "pair" else [s] if k == "diag" else []
        return tuple(out)

    def indices(self, start: int) -> tuple[list[int], list[int], list[int], int]:
        """Integer einsum labels: (side-1 output labels, side-2 labels, result labels, next
        free label)."""
        s1, s2, res = [], [], []
        i = start
        for k in self.kinds:
            if k == "pair":
                s1.append(i)
                s2.append(i + 1)
                res += [i, i + 1]
                i += 2
            else:
                s1.append(i)
                s2.append(i)
                if k == "diag":
                    res.append(i)
                i += 1
        return s1, s2, res, i


# ------------------------------------------------------------------ the jaxpr


@dataclasses.dataclass(frozen=True)
class Use:
    """A parameter array entering one ``dot_general`` once: ``param_operand`` (0 lhs, 1 rhs),
    the other operand's shape (per point) and the output's."""

    leaf: int
    eqn: int
    param_operand: int
    dimension_numbers: Any
    other_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    dtype: Any


@dataclasses.dataclass(frozen=True)
class Plan:
    """What `features` needs: the per-point function's jaxpr, its structured parameter uses,
    the parameters taking the Jacobian route, and shapes."""

    steps: tuple  # the per-point function (leaves..., x) -> output as flat `_Step`s
    in_refs: tuple  # references of the leaves and of x
    out_ref: Any  # reference of the output
    consts: dict  # reference -> constant
    out_dtype: Any
    uses: tuple[Use, ...]
    generic: tuple[int, ...]  # leaf indices taking the Jacobian route
    leaf_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]


def _single(apply_fn: Callable, treedef, squeeze: bool):
    """The per-point function (leaves, x) -> output (O), from the batched ``apply_fn``."""

    def f(leaves, x):
        out = apply_fn(jax.tree_util.tree_unflatten(treedef, leaves), x[None])
        out = out[0]
        return out[None] if squeeze else out

    return f


@dataclasses.dataclass(frozen=True, eq=False)
class _Lit:
    """A literal operand of a step."""

    val: Any


@dataclasses.dataclass(frozen=True, eq=False)
class _Step:
    """One equation of the flattened jaxpr: its operands' and results' references (ints or
    `_Lit`)."""

    eqn: Any
    ins: tuple
    outs: tuple


def _sub_jaxpr(eqn):
    """The body of a ``jit``/``pjit``/``closed_call`` equation (inlined by `_flatten`), else
    None: loops, conditionals, custom derivatives and checkpoints stay single steps."""
    if eqn.primitive.name not in ("pjit", "jit", "closed_call", "core_call"):
        return None
    sub = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    if sub is None:
        return None
    if hasattr(sub, "consts"):
        return sub.jaxpr, list(sub.consts)
    return sub, []


def _flatten(closed):
    """(steps, input refs, output refs, consts) of a ClosedJaxpr with every jit/call body
    inlined, so that a parameter passed into a jitted helper is seen where it is used."""
    steps, consts = [], {}
    counter = iter(range(1 << 62))

    def walk(jaxpr, const_vals, in_refs):
        env = {}
        for v, c in zip(jaxpr.constvars, const_vals):
            r = next(counter)
            consts[r] = c
            env[v] = r

        def read(v):
            return _Lit(v.val) if isinstance(v, jex.core.Literal) else env[v]

        for v, r in zip(jaxpr.invars, in_refs):
            env[v] = r
        for eqn in jaxpr.eqns:
            ins = tuple(read(v) for v in eqn.invars)
            sub = _sub_jaxpr(eqn)
            if sub is not None:
                outs = walk(sub[0], sub[1], ins)
            else:
                outs = tuple(next(counter) for _ in eqn.outvars)
                steps.append(_Step(eqn, ins, outs))
            for v, r in zip(eqn.outvars, outs):
                env[v] = r
        return tuple(read(v) for v in jaxpr.outvars)

    in_refs = tuple(next(counter) for _ in closed.jaxpr.invars)
    outs = walk(closed.jaxpr, list(closed.consts), in_refs)
    return tuple(steps), in_refs, outs, consts


def plan(apply_fn: Callable, params: Any, x_shape: Sequence[int], x_dtype, structured: bool):
    """Read ``apply_fn``'s jaxpr at one point of shape ``x_shape`` (no point axis). With
    ``structured`` False every parameter takes the Jacobian route."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    specs = [jax.ShapeDtypeStruct(jnp.shape(p), jnp.result_type(p)) for p in leaves]
    xs = jax.ShapeDtypeStruct(tuple(x_shape), x_dtype)
    batched = jax.eval_shape(
        lambda ls, x: apply_fn(jax.tree_util.tree_unflatten(treedef, ls), x[None]), specs, xs
    )
    if not hasattr(batched, "shape") or batched.ndim < 1 or batched.shape[0] != 1:
        raise ValueError(
            "apply_fn(params, x) must return one array whose first axis is the points' axis, "
            f"got {batched!r} for one point"
        )
    squeeze = batched.ndim == 1  # (n,) outputs are read as (n, 1)
    f = _single(apply_fn, treedef, squeeze)
    closed = jax.make_jaxpr(f)(specs, xs)
    steps, in_refs, out_refs, consts = _flatten(closed)
    out_aval = closed.jaxpr.outvars[0].aval
    out_shape = tuple(out_aval.shape)
    n = len(leaves)
    param_refs = {r: i for i, r in enumerate(in_refs[:n])}

    def is_param(r):
        return not isinstance(r, _Lit) and r in param_refs

    candidates: dict[int, list] = {i: [] for i in range(n)}
    other_uses = set()
    for e_i, step in enumerate(steps):
        eqn = step.eqn
        hit = [param_refs[r] for r in step.ins if is_param(r)]
        if not hit:
            continue
        ok = (
            structured
            and eqn.primitive.name == "dot_general"
            and len(hit) == 1
            and not (is_param(step.ins[0]) and is_param(step.ins[1]))
        )
        if ok:
            p_op = 0 if is_param(step.ins[0]) else 1
            other = eqn.invars[1 - p_op]
            candidates[hit[0]].append(
                Use(
                    leaf=hit[0],
                    eqn=e_i,
                    param_operand=p_op,
                    dimension_numbers=eqn.params["dimension_numbers"],
                    other_shape=tuple(other.aval.shape),
                    out_shape=tuple(eqn.outvars[0].aval.shape),
                    dtype=eqn.outvars[0].aval.dtype,
                )
            )
        else:
            other_uses.update(hit)
    for r in out_refs:  # a parameter returned as an output
        if is_param(r):
            other_uses.add(param_refs[r])
    uses = tuple(c[0] for i, c in sorted(candidates.items()) if len(c) == 1 and i not in other_uses)
    structured_leaves = {u.leaf for u in uses}
    generic = tuple(i for i in range(n) if i not in structured_leaves)
    return Plan(
        steps=steps,
        in_refs=in_refs,
        out_ref=out_refs[0],
        consts=consts,
        out_dtype=out_aval.dtype,
        uses=uses,
        generic=generic,
        leaf_shapes=tuple(tuple(s.shape) for s in specs),
        out_shape=out_shape,
    )


def _run(p: Plan, leaves, x, uses: Sequence[Use], probes):
    """Evaluate the per-point function's steps with ``probes[u]`` added to use u's output;
    return the output and each use's other operand."""
    env = dict(p.consts)
    for r, a in zip(p.in_refs, list(leaves) + [x]):
        env[r] = a

    def read(r):
        return r.val if isinstance(r, _Lit) else env[r]

    at = {u.eqn: (k, u) for k, u in enumerate(uses)}
    others = [None] * len(uses)
    for e_i, step in enumerate(p.steps):
        eqn = step.eqn
        invals = [read(r) for r in step.ins]
        bound = eqn.primitive.get_bind_params(eqn.params)
        # JAX versions differ: (subfuns, params) in older ones, params alone in newer ones
        subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
        ctx = getattr(getattr(eqn, "ctx", None), "manager", None)
        with ctx if ctx is not None else contextlib.nullcontext():
            out = eqn.primitive.bind(*subfuns, *invals, **params)
        if e_i in at:
            k, u = at[e_i]
            others[k] = invals[1 - u.param_operand]
            out = out + probes[k]
        outs = out if eqn.primitive.multiple_results else [out]
        for r, o in zip(step.outs, outs):
            env[r] = o
    return read(p.out_ref), others


def run_fn(p: Plan) -> Callable:
    """The per-point function (leaves, x) -> output (O) that ``p`` was read from."""

    def f(leaves, x):
        return _run(p, leaves, x, (), ())[0]

    return f


def features(p: Plan, leaves: Sequence[jax.Array], x: jax.Array):
    """Per point of ``x`` (n, *x_shape): (others, deltas, jacobians) with others[u]
    (n, *other_shape), deltas[u] (n, *O, *out_shape) for each structured use and
    jacobians[i] (n, *O, *shape(leaf)) for each generic leaf."""
    uses = p.uses
    generic = p.generic
    k = math.prod(p.out_shape)

    def one(xi):
        def g(probes, gen):
            lv = list(leaves)
            for i, a in zip(generic, gen):
                lv[i] = a
            out, others = _run(p, lv, xi, uses, probes)
            return out, others

        probes = [jnp.zeros(u.out_shape, u.dtype) for u in uses]
        gen = [leaves[i] for i in generic]
        out, vjp_fn, others = jax.vjp(g, probes, gen, has_aux=True)
        basis = jnp.eye(k, dtype=out.dtype).reshape((k, *p.out_shape))
        d_probes, d_gen = jax.vmap(vjp_fn)(basis)
        deltas = [d.reshape(p.out_shape + d.shape[1:]) for d in d_probes]
        jacs = [d.reshape(p.out_shape + d.shape[1:]) for d in d_gen]
        return others, deltas, jacs

    return jax.vmap(one)(x)


def _use_operands(u: Use, axes: OutputAxes):
    """Integer einsum labels for one structured use: (a1, a2, d1, d2, result) lists."""
    (lc, rc), (lb, rb) = u.dimension_numbers
    if u.param_operand == 1:
        a_c, a_b, w_c, w_b = lc, lb, rc, rb
    else:
        a_c, a_b, w_c, w_b = rc, rb, lc, lb
    del w_c, w_b  # W's axes are labelled through the other operand's and the output's
    a_nd = len(u.other_shape)
    n, m = 0, 1
    o1, o2, res, nxt = axes.indices(2)
    a1 = [None] * a_nd
    a2 = [None] * a_nd
    for ad in a_c:  # contracted with W: shared by both sides (W's axis)
        a1[ad] = a2[ad] = nxt
        nxt += 1
    for ad in a_b:  # batch axes of the dot_general: W's own axis too, shared
        a1[ad] = a2[ad] = nxt
        nxt += 1
    free_a = [d for d in range(a_nd) if d not in a_c and d not in a_b]
    for ad in free_a:  # summed on each side separately
        a1[ad], a2[ad] = nxt, nxt + 1
        nxt += 2
    n_g = len(u.out_shape) - len(a_b) - len(free_a)  # W's free axes
    g = list(range(nxt, nxt + n_g))
    nxt += n_g
    b_lab = [a1[ad] for ad in a_b]
    f1 = [a1[ad] for ad in free_a]
    f2 = [a2[ad] for ad in free_a]
    if u.param_operand == 1:  # y axes: batch, lhs (other) free, rhs (W) free
        y1, y2 = b_lab + f1 + g, b_lab + f2 + g
    else:  # batch, lhs (W) free, rhs (other) free
        y1, y2 = b_lab + g + f1, b_lab + g + f2
    return [n] + a1, [m] + a2, [n] + o1 + y1, [m] + o2 + y2, [n, m] + res


def contract(p: Plan, axes: OutputAxes, feats1, feats2) -> jax.Array:
    """Θ̂ (n1, n2, *axes.result_shape) from two sides' `features`."""
    others1, deltas1, jacs1 = feats1
    others2, deltas2, jacs2 = feats2
    total = 0.0
    for u, a1, a2, d1, d2 in zip(p.uses, others1, others2, deltas1, deltas2):
        l_a1, l_a2, l_d1, l_d2, l_res = _use_operands(u, axes)
        total = total + jnp.einsum(
            a1, l_a1, a2, l_a2, d1, l_d1, d2, l_d2, l_res, optimize="optimal", precision=_HI
        )
    for i, j1, j2 in zip(p.generic, jacs1, jacs2):
        o1, o2, res, nxt = axes.indices(2)
        pl = list(range(nxt, nxt + len(p.leaf_shapes[i])))
        total = total + jnp.einsum(
            j1, [0] + o1 + pl, j2, [1] + o2 + pl, [0, 1] + res, precision=_HI
        )
    return total / axes.traced_size


# ------------------------------------------------------------------ costs


def forward_flops(p: Plan) -> float:
    """Multiply-adds ×2 of one point's forward pass, from the jaxpr: each ``dot_general`` and
    convolution counted exactly, every other equation as one operation per output entry."""
    total = 0.0
    for step in p.steps:
        eqn = step.eqn
        out = eqn.outvars[0].aval
        size = math.prod(getattr(out, "shape", ()) or (1,))
        name = eqn.primitive.name
        if name == "dot_general":
            (lc, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * size * math.prod(lhs[d] for d in lc)
        elif name == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape
            dn = eqn.params["dimension_numbers"]
            out_feat = rhs[dn.rhs_spec[0]]
            total += 2.0 * size * math.prod(rhs) / max(1, out_feat)
        else:
            total += size
    return total


def contraction_flops(p: Plan, axes: OutputAxes, n1: int, n2: int) -> float:
    """opt_einsum's operation count for `contract` on n1 × n2 points."""
    return _contraction(p, axes, n1, n2)[0]


def contraction_intermediate(p: Plan, axes: OutputAxes, n1: int, n2: int) -> float:
    """The largest intermediate array (entries) of `contract`'s structured einsums: with a
    dense layer applied per position the cheapest order may form n1·n2·f·f' entries."""
    return _contraction(p, axes, n1, n2)[1]


def activation_entries(p: Plan) -> int:
    """Entries of every intermediate of one point's forward pass (what forward mode holds)."""
    return sum(
        math.prod(getattr(v.aval, "shape", ()) or (1,)) for st in p.steps for v in st.eqn.outvars
    )


def _contraction(p: Plan, axes: OutputAxes, n1: int, n2: int) -> tuple[float, float]:
    import opt_einsum

    total, largest = 0.0, 0.0
    for u in p.uses:
        l_a1, l_a2, l_d1, l_d2, l_res = _use_operands(u, axes)
        shapes = [
            (n1, *u.other_shape),
            (n2, *u.other_shape),
            (n1, *p.out_shape, *u.out_shape),
            (n2, *p.out_shape, *u.out_shape),
        ]
        # opt_einsum wants letters: map integer labels to characters
        labels = sorted({*l_a1, *l_a2, *l_d1, *l_d2})
        ch = {lab: opt_einsum.get_symbol(i) for i, lab in enumerate(labels)}
        spec = ",".join("".join(ch[i] for i in lab) for lab in (l_a1, l_a2, l_d1, l_d2))
        spec += "->" + "".join(ch[i] for i in l_res)
        _, info = opt_einsum.contract_path(spec, *shapes, shapes=True, optimize="optimal")
        total += float(info.opt_cost)
        largest = max(largest, float(info.largest_intermediate))
    k_pairs = math.prod(s * s if k == "pair" else s for s, k in zip(axes.shape, axes.kinds))
    for i in p.generic:
        total += 2.0 * n1 * n2 * k_pairs * math.prod(p.leaf_shapes[i])
    return total, largest


def feature_bytes(p: Plan, n: int, itemsize: int) -> int:
    """Bytes of the features of n points."""
    k = math.prod(p.out_shape)
    per = sum(math.prod(u.other_shape) + k * math.prod(u.out_shape) for u in p.uses)
    per += sum(k * math.prod(p.leaf_shapes[i]) for i in p.generic)
    return n * per * itemsize
