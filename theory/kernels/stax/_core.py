"""What every layer shares: the typed layer record `Layer` (``init_fn``, ``apply_fn``,
``kernel_fn``), the kernel function `KernelFn` (validation, compilation, tiling, numerical
guards), the spatial-covariance requirement `Diagonal`, the linear rules (`Rule`) that the
structured empirical NTK reads from an `ApplyFn`, and small helpers."""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from theory.kernels.batching import Batchable, default_tile, tiled_kernel
from theory.kernels.kernel import (
    Kernel,
    all_finite,
    any_rank_promotion,
    channel_position,
    check_inputs,
    check_memory,
    check_outputs,
    input_kernel,
    kernel_names,
    masked_entries,
    same_inputs,
)
from theory.kernels.stax._masking import IDENTITY, Masking, masked_apply, masked_transform

__all__ = [
    "Layer",
    "layer",
    "requires",
    "supports_masking",
    "Padding",
    "AttentionMechanism",
    "PositionalEmbedding",
    "AggregateImplementation",
    "ApplyFn",
    "KernelFn",
    "Diagonal",
    "Bool",
    "Rule",
    "DenseRule",
    "ElementwiseRule",
    "IdentityRule",
    "SerialRule",
    "rule_of",
    "NO",
    "MAYBE",
    "YES",
]


_GETS = ("nngp", "ntk")
_VARIANCES = ("cov1", "cov2", "shape1", "shape2")

# ----------------------------------------------------------------------- kernel_fn


class Bool(enum.IntEnum):
    """neural-tangents' three-valued requirement: NO < MAYBE < YES (integers, so they compare
    and take min like the 0, 1, 2 they are)."""

    NO = 0
    MAYBE = 1
    YES = 2


NO, MAYBE, YES = Bool.NO, Bool.MAYBE, Bool.YES


# neural-tangents' option enums. String enums: every layer takes the member or its string.
class Padding(enum.StrEnum):
    """Convolution and pooling padding."""

    CIRCULAR = "CIRCULAR"
    SAME = "SAME"
    VALID = "VALID"


class AttentionMechanism(enum.StrEnum):
    """`GlobalSelfAttention`'s ``attention_mechanism``."""

    SOFTMAX = "SOFTMAX"
    IDENTITY = "IDENTITY"
    ABS = "ABS"
    RELU = "RELU"


class PositionalEmbedding(enum.StrEnum):
    """`GlobalSelfAttention`'s ``pos_emb_type``."""

    NONE = "NONE"
    SUM = "SUM"
    CONCAT = "CONCAT"


class AggregateImplementation(enum.StrEnum):
    """`Aggregate`'s ``implementation``."""

    DENSE = "DENSE"
    SPARSE = "SPARSE"


@dataclasses.dataclass(frozen=True)
class Diagonal:
    """Whether a network's kernel can be computed on the spatial diagonal (neural-tangents'
    three-valued requirement, folded once per network): ``input`` says whether the layer
    accepts a diagonal-only input (NO, MAYBE: only if off-diagonal entries are 0, YES),
    ``output`` whether outputs from here on may be diagonal-only. ``serial`` composes with
    ``>>``, ``parallel`` combines with ``&``; the network is computed on the diagonal iff
    ``input == YES and output > NO``. Dense, activations and Conv: (YES, NO); Flatten (YES,
    YES); AvgPool/SumPool (MAYBE, NO); GlobalAvgPool/GlobalSumPool (MAYBE, YES)."""

    input: Bool = YES
    output: Bool = NO

    def __post_init__(self):
        for name in ("input", "output"):
            v = getattr(self, name)
            if isinstance(v, bool) or v not in (0, 1, 2):
                raise ValueError(f"Diagonal: {name} must be NO, MAYBE or YES, got {v!r}")
            object.__setattr__(self, name, Bool(v))

    def __rshift__(self, other: Diagonal) -> Diagonal:
        if self.output == YES:
            return self
        if self.output > NO and other.input > NO:
            inp = self.input
        elif self.output == NO and other.input < YES:
            inp = NO
        else:
            inp = min(self.input, other.input)
        return Diagonal(Bool(inp), Bool(other.output))

    def __lshift__(self, other: Diagonal) -> Diagonal:
        """``c << b`` is ``b >> c`` (neural-tangents composes both ways)."""
        return other >> self

    def __and__(self, other: Diagonal) -> Diagonal:
        return Diagonal(Bool(min(self.input, other.input)), Bool(min(self.output, other.output)))

    def __bool__(self) -> bool:
        return self.input == YES and self.output > NO


@functools.cache
def _kernels_tuple(names: tuple[str, ...]) -> type:
    """The named tuple ``Kernels`` for one ``get``: one class per tuple of names, so that the
    outputs of two calls (or of two blocks) are the same pytree type."""
    return namedtuple("Kernels", names)


# Keywords neural-tangents users pass to every kernel function of a model (a graph's
# adjacency, a dropout key); dropped by networks none of whose layers take them.
IGNORABLE_CALL_KWARGS = frozenset({"pattern", "rng"})


class KernelFn(Batchable):
    """The infinite-width kernel of a network: ``kernel_fn(x1, x2=None, get=None)``.

    Also accepts a `Kernel` (or a list of them, for fan-in layers) instead of ``x1`` and
    then applies just this layer's transformation, which is how layers compose.

    Call-time keyword arguments: a layer that needs data given with the inputs (`Aggregate`'s
    graph ``pattern``) declares their names in ``call_kwargs`` and receives them as
    ``transform(k, **kwargs)``; `serial` and `parallel` forward each keyword to the layers
    that declare it, and ``kernel_fn(x1, x2, get, pattern=...)`` passes them into the compiled
    computation as traced arguments (one compilation per shape, not per value). ``pattern`` and
    ``rng`` are dropped by networks that do not take them (as neural-tangents does); any
    other keyword that no layer of the network declares raises `TypeError` naming it.
    Per-point keywords (pairs
    ``(a1, a2)`` with x1's and x2's points on the leading axes, `per_point`, as a graph
    pattern is) are sliced into tiles with the points, so such networks are tiled and batched
    like any other; a network called with other array-valued keywords is not tiled, and holds
    its whole input kernel at once.

    Numerical guards (see `theory.kernels.kernel`): ``x1``/``x2`` must be finite float32 or
    float64 arrays (16-bit floats raise `TypeError`); an output that cannot fit in memory
    raises `KernelMemoryError` before anything is allocated; and a returned array that is not
    finite raises `NonFiniteKernelError` (never a silent NaN/inf; neural-tangents returns
    them silently, its issue #197), whose message names the quantity, the dtype and the
    remedy (float64: ``jax.config.update("jax_enable_x64", True)``); the values are in
    ``error.result``. Finiteness is probed inside the compiled computation (per tile, while
    it is in cache: +0.3% to +3.5% CPU time on a depth-10 ReLU kernel at N = 4000), so the check
    costs one scalar transfer. Inside a user's ``jax.jit`` the values are unknown and the
    output check is skipped.
    """

    def __init__(
        self,
        transform: Callable,
        name: str,
        activation: Any = None,
        hints: Sequence[str] = (),
        spatial_ndim: int | str | None = None,
        diagonal: Diagonal | None = None,
        call_kwargs: Sequence[str] = (),
        channel_axis: int | None = None,
        mixes_points: bool = False,
        batch_axis: int | None = None,
        contracts_points: bool = False,
        points_split: int | None = None,
    ):
        self.transform = transform
        # a layer sums over the points (DotGeneral contracting the batch axis): each output
        # reads every point, so the kernel is computed on x1 and x2 stacked (`_contracted`,
        # neural-tangents' diagonal_batch=False); ``points_split`` is set on the variant that
        # does it (the number of x1's points)
        self.contracts_points = contracts_points
        self.points_split = points_split
        # the axis of the inputs that holds the points: the first one a layer names
        # (``batch_axis``, neural-tangents' argument); None or 0: the leading axis. Kernels are
        # computed with the points moved to axis 0 (`_points_first`).
        self.batch_axis = batch_axis
        # the output's points are not the inputs' points one for one (`FanInConcat` along the
        # batch axis): tiles over points would be wrong, so the network is computed untiled
        self.mixes_points = mixes_points
        # names of the call-time keyword arguments ``transform`` accepts (see the class notes)
        self.call_kwargs = tuple(dict.fromkeys(call_kwargs))
        self.__name__ = name
        # an elementwise layer's `theory.kernels.stax.ActivationInfo` (φ, its dual, φ'); None
        # for every other layer
        self.activation = activation
        # None: the network takes 2-D inputs; k: NHWC inputs with k site axes (convolutions);
        # "sites": NHWC with any number of site axes (attention, graphs); "any": NHWC or
        # (N, C) (global pooling)
        self.spatial_ndim = spatial_ndim
        self.diagonal = Diagonal() if diagonal is None else diagonal
        # the channel axis this network needs its inputs to have: the first one named by a
        # layer (a convolution's lhs spec, a Dense/pool/norm/attention layer's
        # ``channel_axis``; neural-tangents' rule); None: the last (NHWC, (N, C))
        self.channel_axis = channel_axis
        self.hints = tuple(dict.fromkeys(hints))  # layer notes for NonFiniteKernelError
        self._jitted = jax.jit(self._compute, static_argnames=("get", "compute_ntk"))
        self._jitted_tree = jax.jit(self._compute_tree, static_argnames=("get", "compute_ntk"))
        self._variants: dict[bool, KernelFn] = {}
        self._pair_sizes: dict = {}

    def __repr__(self) -> str:
        return f"<kernel_fn of {self.__name__}>"

    @property
    def is_activation(self) -> bool:
        return self.activation is not None

    def pair_bytes(self, x1) -> int:
        """Bytes of one pair of points of the input kernel: 0 for fully connected networks,
        else the sites on the spatial diagonal (|S|) or with the full covariance (|S|²) times
        the item size. Sizes the automatic tiles (`theory.kernels.batching.default_tile`)."""
        if x1.ndim == 2:
            return 0
        c = channel_position(self.channel_axis, x1.ndim, "channel_axis")
        sites = math.prod(x1.shape[1:]) // x1.shape[c]
        return (sites if bool(self.diagonal) else sites * sites) * x1.dtype.itemsize

    def output_pair_size(self, x1) -> int:
        """Entries per pair of points of the network's output kernel (1 unless it keeps sites),
        from the traced shapes of a one-point kernel (nothing is computed)."""
        if x1.ndim == 2 and not self.mixes_points:
            return 1
        # a network that maps its points (a per-point map, points concatenated) is traced
        # with all of them: a one-point trace may not fit its layers
        n = x1.shape[0] if self.mixes_points else 1
        key = ((n, *x1.shape[1:]), str(x1.dtype))
        if key not in self._pair_sizes:
            spec = jax.ShapeDtypeStruct(key[0], x1.dtype)
            out = jax.eval_shape(lambda x: self.transform(self.input_kernel(x, None, False)), spec)
            if isinstance(out, (list, tuple)):
                raise ValueError(
                    f"{self.__name__} ends with {len(out)} branches: close them with "
                    "FanInSum() or FanInProd() before asking for a kernel"
                )
            # entries per pair of input points: (B, B) for B branches concatenated on the batch
            self._pair_sizes[key] = math.ceil(math.prod(out.nngp.shape) / n**2)
        return self._pair_sizes[key]

    def input_kernel(self, x1, x2, compute_ntk: bool, mask_constant=None) -> Kernel:
        """The input kernel this network starts from (its diagonal mode, its inputs' channel
        axis; entries equal to ``mask_constant`` absent)."""
        k = input_kernel(x1, x2, compute_ntk, bool(self.diagonal), self.channel_axis, mask_constant)
        return k if self.points_split is None else k.replace(points_split=self.points_split)

    @staticmethod
    def per_point(kwargs: dict, x1, x2) -> dict | None:
        """The call-time keywords as per-point data that tiles can slice, or None when one of
        them is not: each must be a pair ``(a1, a2)`` of arrays whose leading axis is x1's
        points and x2's (``a2`` None or x1's when ``x2`` is None), as `Aggregate`'s
        ``pattern=(pattern1, pattern2)`` is."""
        n1 = x1.shape[0]
        n2 = n1 if x2 is None else x2.shape[0]
        out = {}
        for name, v in kwargs.items():
            if not (isinstance(v, (tuple, list)) and len(v) == 2):
                return None
            a1, a2 = v
            if getattr(a1, "shape", ())[:1] != (n1,):
                return None
            if a2 is None and x2 is not None:
                return None
            if a2 is not None and getattr(a2, "shape", ())[:1] != (n2,):
                return None
            out[name] = (a1, a2)
        return out

    def _tile(self, x1, x2, kwargs) -> int | None:
        """The automatic tile size; None (untiled) when call-time keywords carry arrays that
        are not per-point pairs (`per_point`): tiles slice only points."""
        if self.mixes_points:
            return None
        if jax.tree_util.tree_leaves(kwargs) and self.per_point(kwargs, x1, x2) is None:
            return None
        n2 = x1.shape[0] if x2 is None else x2.shape[0]
        return default_tile(x1.shape[0], n2, self.pair_bytes(x1))

    def _compute(self, x1, x2, kwargs, get, compute_ntk, mask_constant=None):
        """``(selected output, whether all of the kernel's arrays are finite)``."""
        tile = self._tile(x1, x2, kwargs)
        diagonal = bool(self.diagonal)
        if tile is None:
            k = self.transform(self.input_kernel(x1, x2, compute_ntk, mask_constant), **kwargs)
        else:
            k, ok = tiled_kernel(
                self.transform, x1, x2, compute_ntk, tile,
                with_flags=True,
                diagonal_spatial=diagonal,
                per_point=self.per_point(kwargs, x1, x2),
                channel_axis=self.channel_axis,
                mask_constant=mask_constant,
            )  # fmt: skip
        if isinstance(k, (list, tuple)):
            raise ValueError(
                f"{self.__name__} ends with {len(k)} branches: close them with "
                "FanInSum() or FanInProd() before asking for a kernel"
            )
        # A spatial output on the diagonal (a network ending in ConvLocal, whose output may
        # stay diagonal) is returned as it is, (n1, n2, *S), as neural-tangents does.
        if tile is None:
            ok = all_finite([k.nngp, k.ntk])
        return self.select(k, get), ok & all_finite([k.cov1, k.cov2])

    @staticmethod
    def returned(k: Kernel, get) -> tuple[str, ...]:
        """Names of the arrays that ``select(k, get)`` returns."""
        if get is None:
            return tuple(n for n in ("nngp", "ntk", "cov1", "cov2") if getattr(k, n) is not None)
        return (get,) if isinstance(get, str) else tuple(get)

    @staticmethod
    def parse_get(get, allowed: tuple[str, ...] = _GETS + _VARIANCES):
        """Validate ``get``; return it normalised and whether the NTK is needed. Besides the
        kernels, neural-tangents' ``get`` may name the per-point variances ``"cov1"``,
        ``"cov2"`` (``cov2`` is None when x2 is None) and the activations' shapes ``"shape1"``,
        ``"shape2"`` (`Kernel.shape1`)."""
        if get is None:
            return None, True
        names = (get,) if isinstance(get, str) else tuple(get)
        if not names or any(g not in allowed for g in names) or len(set(names)) < len(names):
            raise ValueError(
                f"get must be None, one of {allowed} or a tuple of distinct ones, got {get!r}"
            )
        return (get if isinstance(get, str) else names), "ntk" in names

    @staticmethod
    def select(k: Kernel, get):
        if get is None:
            return k
        if isinstance(get, str):
            return getattr(k, get)
        return _kernels_tuple(tuple(get))(*(getattr(k, g) for g in get))

    def check(self, where: str, out, ok, get, x1, x2) -> None:
        """Raise `NonFiniteKernelError` unless every array in ``out`` is finite."""
        names = self.returned(out, get)
        if get is None:
            arrays = [getattr(out, n) for n in names]
        else:
            arrays = [out] if isinstance(get, str) else list(out)
        check_outputs(where, ok, dict(zip(names, arrays)), (x1, x2), out, self.hints)

    def check_kwargs(self, kwargs: dict) -> dict:
        """The keywords this network's layers take. ``pattern`` and ``rng`` are dropped where
        no layer takes them (neural-tangents passes a graph's pattern or a dropout key to
        every kernel function of a model: an infinite-width kernel is deterministic and a
        network without `Aggregate` has no graph); any other keyword that no layer takes
        raises `TypeError` naming it (a misspelt keyword is an error, not a no-op)."""
        unknown = sorted(set(kwargs) - set(self.call_kwargs) - IGNORABLE_CALL_KWARGS)
        if unknown:
            takes = (
                f"; it takes {sorted(self.call_kwargs)}"
                if self.call_kwargs
                else " (no layer of it takes call-time keywords)"
            )
            raise TypeError(f"{self.__repr__()} got unexpected keyword arguments {unknown}{takes}")
        return {k: v for k, v in kwargs.items() if k in self.call_kwargs}

    @staticmethod
    def select_tree(k, get):
        """`select` on every `Kernel` of ``k`` (one, or a list/tuple tree of them: the outputs of
        a network with several outputs), keeping the tree's structure."""
        return jax.tree_util.tree_map(
            lambda kk: KernelFn.select(kk, get), k, is_leaf=lambda z: isinstance(z, Kernel)
        )

    def _compute_tree(self, x1, x2, kwargs, get, compute_ntk, mask_constant=None):
        """Untiled kernel of a network with several inputs (``x1`` a list/tuple tree of arrays,
        one input kernel each) or several outputs: ``(outputs, all finite)``."""
        diagonal = bool(self.diagonal)
        leaves1, tree = jax.tree_util.tree_flatten(x1)
        leaves2 = [None] * len(leaves1) if x2 is None else jax.tree_util.tree_leaves(x2)
        ks = tree.unflatten(
            [
                input_kernel(a, b, compute_ntk, diagonal, self.channel_axis, mask_constant)
                for a, b in zip(leaves1, leaves2)
            ]
        )
        out = self.transform(ks, **kwargs)
        kernels = jax.tree_util.tree_leaves(out, is_leaf=lambda z: isinstance(z, Kernel))
        ok = all_finite([a for k in kernels for a in (k.nngp, k.ntk, k.cov1, k.cov2)])
        return self.select_tree(out, get), ok

    def _call_tree(self, x1, x2, get, compute_ntk, kwargs, mask_constant=None):
        """``kernel_fn`` for several inputs (``x1``, ``x2``: list/tuple trees of arrays with the
        same structure, the points of every input on its leading axis) or several outputs
        (a network ending in branches: one output per branch, in a list, as neural-tangents
        returns). Computed untiled."""
        leaves1, tree = jax.tree_util.tree_flatten(x1)
        x2 = same_inputs(x2)  # (None, None, …): every input against itself
        if x2 is not None:
            leaves2, tree2 = jax.tree_util.tree_flatten(x2)
            if tree2 != tree:
                raise ValueError(
                    f"x2 must have the same structure as x1 (one array per input), got {tree2} "
                    f"and {tree}"
                )
        else:
            leaves2 = [None] * len(leaves1)
        checked = [
            _check_masked(a, b, f"x1[{i}]", f"x2[{i}]", "any", mask_constant)
            for i, (a, b) in enumerate(zip(leaves1, leaves2))
        ]
        x1 = tree.unflatten([a for a, _ in checked])
        x2 = None if x2 is None else tree.unflatten([b for _, b in checked])
        name = self.__name__
        where = f"kernel_fn of {name if len(name) <= 80 else name[:70] + ' …)'}"
        for a, b in checked:
            check_memory(where, a, b, kernel_names(get, compute_ntk))
        out, ok = self._jitted_tree(
            x1, x2, kwargs, get=get, compute_ntk=compute_ntk, mask_constant=mask_constant
        )
        arrays = {}
        for i, k in enumerate(
            jax.tree_util.tree_leaves(out, is_leaf=lambda z: isinstance(z, Kernel))
        ):
            if isinstance(k, Kernel):
                arrays.update({f"output {i} {n}": getattr(k, n) for n in self.returned(k, None)})
            else:
                arrays[f"output {i}"] = k
        inputs = [_zeroed(a, mask_constant) for pair in checked for a in pair]
        check_outputs(where, ok, arrays, inputs, out, self.hints)
        return out

    def _has_tree_output(self, x1) -> bool:
        """Whether the network ends in several branches (a list of outputs)."""
        key = ("tree", x1.shape, str(x1.dtype))
        if key not in self._pair_sizes:
            # shapes only (no arithmetic): all the points, as a layer may map each its own way
            spec = jax.ShapeDtypeStruct(x1.shape, x1.dtype)
            out = jax.eval_shape(lambda x: self.transform(self.input_kernel(x, None, False)), spec)
            self._pair_sizes[key] = isinstance(out, (list, tuple))
        return self._pair_sizes[key]

    def with_diagonal(self, diagonal_spatial: bool) -> KernelFn:
        """This kernel function computed on the spatial diagonal (True) or with the full
        spatial covariance (False) whatever its layers would choose (``kernel_fn(...,
        diagonal_spatial=...)``); True is refused (ValueError) for a network that needs the
        full covariance (pooling, attention, graphs: its `Diagonal` input is not YES)."""
        if diagonal_spatial and self.diagonal.input < YES:
            raise ValueError(
                f"{self!r}: diagonal_spatial=True, but this network needs the full spatial "
                "covariance (a pooling, attention or graph layer mixes sites); use "
                "diagonal_spatial=None (automatic) or False"
            )
        if diagonal_spatial == bool(self.diagonal):
            return self
        diagonal = Diagonal(YES, YES) if diagonal_spatial else Diagonal(NO, NO)
        return self._variant(diagonal_spatial, diagonal=diagonal)

    def _variant(self, key, **changes) -> KernelFn:
        """This kernel function with some of ``diagonal``, ``channel_axis``, ``batch_axis``
        changed, built once per ``key`` and cached."""
        if key not in self._variants:
            fields = dict(
                diagonal=self.diagonal,
                channel_axis=self.channel_axis,
                batch_axis=self.batch_axis,
                points_split=self.points_split,
            )
            fields.update(changes)
            self._variants[key] = KernelFn(
                self.transform, self.__name__, self.activation, self.hints, self.spatial_ndim,
                fields["diagonal"], self.call_kwargs, fields["channel_axis"], self.mixes_points,
                fields["batch_axis"], self.contracts_points, fields["points_split"],
            )  # fmt: skip
        return self._variants[key]

    def _points_first(self, ndim: int) -> KernelFn:
        """This kernel function for inputs whose points were moved from ``batch_axis`` to axis
        0 (the channel axis renumbered accordingly)."""
        c = None
        if self.channel_axis is not None:
            c = canonical_axis(self.channel_axis, self.batch_axis, ndim, "channel_axis")
            c = None if c == ndim - 1 else c
        return self._variant(("points_first", ndim), channel_axis=c, batch_axis=0)

    def _with_layout(self, x1, batch_axis, channel_axis) -> KernelFn:
        """This kernel function with the inputs' layout given at call time (`__call__`)."""
        ndim = getattr(x1, "ndim", None)
        if ndim is None:
            raise TypeError("batch_axis/channel_axis keywords need x1 to be one array")
        for name, given, declared in (
            ("batch_axis", batch_axis, self.batch_axis),
            ("channel_axis", channel_axis, self.channel_axis),
        ):
            if given is None:
                continue
            if isinstance(given, bool) or not isinstance(given, (int, np.integer)):
                raise TypeError(f"{name} must be an integer, got {given!r}")
            if declared is not None and axis_position(given, ndim, name) != axis_position(
                declared, ndim, name
            ):
                raise ValueError(
                    f"{self!r}: {name}={given} given, but the network's layers take "
                    f"{name}={declared} (axis {axis_position(declared, ndim, name)} of the "
                    f"{ndim}-D inputs)"
                )
        b = self.batch_axis if batch_axis is None else int(batch_axis)
        c = self.channel_axis if channel_axis is None else int(channel_axis)
        c = None if c is not None and axis_position(c, ndim, "channel_axis") == ndim - 1 else c
        return self._variant(("layout", b, c), channel_axis=c, batch_axis=b)

    def _full_batch(self, x1, x2, get, out, kwargs, mask_constant=None):
        """``out`` with cov1 and cov2 replaced by the kernels of x1 with x1 and x2 with x2
        (neural-tangents' ``diagonal_batch=False``: cov1 (n1, n1, …), cov2 (n2, n2, …) or None
        when x2 is None); the per-point variances are their diagonals."""
        if kwargs:
            raise NotImplementedError(
                "diagonal_batch=False with call-time keywords (a graph pattern) is not supported"
            )
        if get is not None and not {"cov1", "cov2"} & set((get,) if isinstance(get, str) else get):
            return out
        cov1 = self(x1, None, "nngp", mask_constant=mask_constant)
        cov2 = None if x2 is None else self(x2, None, "nngp", mask_constant=mask_constant)
        if get is None:
            return out.replace(cov1=cov1, cov2=cov2, diagonal_batch=False)
        if isinstance(get, str):
            return cov1 if get == "cov1" else cov2
        full = {"cov1": cov1, "cov2": cov2}
        return type(out)(*(full.get(g, v) for g, v in zip(get, out)))

    def _contracted(self, x1, x2, get, diagonal_batch, kwargs):
        """The kernel of a network that sums over its points (neural-tangents' DotGeneral
        contracting the batch axis): the output of x1 is one array read from all of x1's
        points, so it pairs with x2's output once, and its sites (the output's non-channel
        axes) carry the covariance: nngp/ntk (S'…), cov1/cov2 the same of x1 (x2) with
        itself; no point axes. Computed as the kernel of x1 and x2 stacked (every pair of
        points is needed) with the contraction applied to each part (`Kernel.points_split`),
        which gives a 2-point output kernel whose off-diagonal block is nngp/ntk and whose
        diagonal blocks are cov1/cov2. Needs ``diagonal_batch=False``, as in
        neural-tangents."""
        if diagonal_batch:
            raise ValueError(
                f"{self.__name__} contracts the points' axis (DotGeneral with the batch axis "
                "among its contracting dimensions): every output reads all points, so "
                "kernel_fn needs diagonal_batch=False (neural-tangents' rule)"
            )
        mask_constant = kwargs.pop("mask_constant", None)
        if kwargs:
            raise NotImplementedError(
                f"{self.__name__}: call-time keywords {sorted(kwargs)} with a layer that "
                "contracts the points' axis are not supported"
            )
        x1 = jnp.asarray(x1)
        n1 = x1.shape[0]
        z = x1 if x2 is None else jnp.concatenate([x1, jnp.asarray(x2, x1.dtype)], axis=0)
        kf = self._variant(("contracted", n1), points_split=n1)
        get, _ = self.parse_get(get, ("nngp", "ntk", "cov1", "cov2"))
        k = kf(z, None, None, mask_constant=mask_constant)  # output points: x1's [, x2's]
        second = 0 if x2 is None else 1
        full = {
            "nngp": k.nngp[0, second],
            "ntk": None if k.ntk is None else k.ntk[0, second],
            "cov1": k.nngp[0, 0],
            "cov2": None if x2 is None else k.nngp[1, 1],
        }
        return self.select(k.replace(**full, diagonal_batch=False, points_split=None), get)

    @any_rank_promotion
    def __call__(self, x1, x2=None, get=None, *, diagonal_batch=True, diagonal_spatial=None,
                 **kwargs):  # fmt: skip
        """The kernel of ``x1`` against ``x2`` (None: x1 against itself). ``get``: None (the
        `Kernel`), a name (``"nngp"``, ``"ntk"``, ``"cov1"``, ``"cov2"``, ``"shape1"``,
        ``"shape2"``) or a tuple of names (a named tuple). neural-tangents' switches:
        ``diagonal_spatial`` None (automatic, from the layers), True (only the spatial
        diagonal, refused where the network needs more) or False (the full covariance);
        ``diagonal_batch=False``: cov1/cov2 are the full x1–x1 and x2–x2 kernels. Other
        keywords are call-time data for the layers that declare them (see the class);
        ``batch_axis``/``channel_axis`` (neural-tangents' keywords) say where the inputs hold
        their points and channels: they must agree with what the network's layers name, and
        set the layout where no layer names one."""
        if "batch_axis" in kwargs or "channel_axis" in kwargs:
            kf = self._with_layout(x1, kwargs.pop("batch_axis", None),
                                   kwargs.pop("channel_axis", None))  # fmt: skip
            return kf(x1, x2, get, diagonal_batch=diagonal_batch,
                      diagonal_spatial=diagonal_spatial, **kwargs)  # fmt: skip
        if self.batch_axis not in (None, 0) and hasattr(x1, "ndim") and not isinstance(x1, Kernel):
            kf = self._points_first(x1.ndim)
            b = axis_position(self.batch_axis, x1.ndim, "batch_axis")
            x1 = jnp.moveaxis(jnp.asarray(x1), b, 0)
            x2 = None if x2 is None else jnp.moveaxis(jnp.asarray(x2), b, 0)
            return kf(x1, x2, get, diagonal_batch=diagonal_batch,
                      diagonal_spatial=diagonal_spatial, **kwargs)  # fmt: skip
        if diagonal_spatial is not None:
            if not isinstance(diagonal_spatial, (bool, np.bool_)):
                raise TypeError(
                    f"diagonal_spatial must be None, True or False, got {diagonal_spatial!r}"
                )
            kf = self.with_diagonal(bool(diagonal_spatial))
            if kf is not self:
                return kf(x1, x2, get, diagonal_batch=diagonal_batch, **kwargs)
        if not isinstance(diagonal_batch, (bool, np.bool_)):
            raise TypeError(f"diagonal_batch must be True or False, got {diagonal_batch!r}")
        if self.contracts_points and self.points_split is None and not isinstance(x1, Kernel):
            return self._contracted(x1, x2, get, diagonal_batch, kwargs)
        if not diagonal_batch:
            mask_constant = kwargs.pop("mask_constant", None)
            out = self(x1, x2, get, mask_constant=mask_constant, **kwargs)
            return self._full_batch(x1, x2, self.parse_get(get)[0], out, kwargs, mask_constant)
        mask_constant = kwargs.pop("mask_constant", None)
        kwargs = self.check_kwargs(kwargs)
        get, compute_ntk = self.parse_get(get)
        if any(
            isinstance(z, Kernel)
            for z in jax.tree_util.tree_leaves(x1, is_leaf=lambda z: isinstance(z, Kernel))
        ):
            if x2 is not None:
                raise ValueError("x2 must be None when kernel_fn is applied to a Kernel")
            x1 = jax.tree_util.tree_map(jnp.asarray, x1)  # e.g. a batch(..., store_on_device=False)
            given = jax.tree_util.tree_leaves(x1, is_leaf=lambda z: isinstance(z, Kernel))
            if self.diagonal.input < YES and any(
                isinstance(k, Kernel) and k.spatial and k.diagonal_spatial for k in given
            ):
                raise ValueError(
                    f"{self!r} needs the full spatial covariance (a pooling, attention or graph "
                    "layer mixes sites), but its input Kernel holds only the spatial diagonal; "
                    "compute that Kernel with diagonal_spatial=False"
                )
            return self.select_tree(self.transform(x1, **kwargs), get)
        if isinstance(x1, (list, tuple)):
            return self._call_tree(x1, x2, get, compute_ntk, kwargs, mask_constant)
        if isinstance(x2, (list, tuple)):
            raise ValueError("x2 is a list of inputs but x1 is one array: give both as lists")
        x1, x2 = _check_masked(x1, x2, "x1", "x2", self.spatial_ndim, mask_constant)
        if self._has_tree_output(x1):
            return self._call_tree(x1, x2, get, compute_ntk, kwargs, mask_constant)
        name = self.__name__
        where = f"kernel_fn of {name if len(name) <= 80 else name[:70] + ' …)'}"
        n2 = x1.shape[0] if x2 is None else x2.shape[0]
        pairs = self.output_pair_size(x1)
        tile = self._tile(x1, x2, kwargs)
        # The output, plus (when tiled) one tile's NNGP and NTK at the input's resolution;
        # untiled because of call-time data, the whole input kernel.
        if tile is not None:
            working = 2 * tile * tile * self.pair_bytes(x1)
        elif jax.tree_util.tree_leaves(kwargs):  # call-time data that tiles cannot slice
            working = x1.shape[0] * n2 * self.pair_bytes(x1)
        else:
            working = 0
        check_memory(
            where, x1, x2, kernel_names(get, compute_ntk), pair_size=pairs, extra_bytes=working
        )
        out, ok = self._jitted(
            x1, x2, kwargs, get=get, compute_ntk=compute_ntk, mask_constant=mask_constant
        )
        self.check(where, out, ok, get, _zeroed(x1, mask_constant), _zeroed(x2, mask_constant))
        return out

    def batched(
        self, batch_size: int, devices: tuple[jax.Device, ...], shard_output: bool = False
    ) -> Callable:
        """This kernel function in ``batch_size``² tiles spread over ``devices``: what
        `theory.kernels.batch` returns (its docstring has the contract)."""
        diagonal = bool(self.diagonal)
        if self.batch_axis not in (None, 0):
            raise NotImplementedError(
                f"batch: {self!r} takes its points on batch_axis={self.batch_axis}; batching "
                "tiles points on axis 0 (move the axis, and use batch_axis=0 layers)"
            )
        if self.mixes_points:
            # points concatenated across branches (FanInConcat on the batch axis): a tile of
            # points is not a tile of the output, so the kernel is computed whole (where
            # neural-tangents' batching returns inconsistent covariances)
            return self

        @functools.partial(jax.jit, static_argnames=("get", "compute_ntk"))
        def compute(x1, x2, kwargs, get, compute_ntk, mask_constant):
            k, ok = tiled_kernel(
                self.transform, x1, x2, compute_ntk, batch_size, devices, with_flags=True,
                diagonal_spatial=diagonal, per_point=self.per_point(kwargs, x1, x2),
                channel_axis=self.channel_axis, shard_output=shard_output,
                mask_constant=mask_constant,
            )  # fmt: skip
            return self.select(k, get), ok & all_finite([k.cov1, k.cov2])

        name = f"batch({self.__name__}, {batch_size}" + (
            ", shard_output=True)" if shard_output else ")"
        )
        replicated = None
        if shard_output:
            replicated = NamedSharding(Mesh(np.asarray(devices), ("tiles",)), PartitionSpec())

        def to_global(a):
            """Host data as one array replicated on every device of the mesh (with
            `jax.distributed`, devices of other processes included: each process passes
            the same values)."""
            if a is None or replicated is None:
                return a
            host = np.asarray(a)
            return jax.make_array_from_callback(host.shape, replicated, lambda idx: host[idx])

        @any_rank_promotion
        def batched(x1, x2=None, get=None, **kwargs):
            if isinstance(x1, (list, tuple, Kernel)):
                # several inputs, or Kernels (the output of another kernel function, already in
                # memory): the transformation is applied whole, as kernel_fn does
                return self(x1, x2, get, **kwargs)
            mask_constant = kwargs.pop("mask_constant", None)
            kwargs = self.check_kwargs(kwargs)
            get, compute_ntk = self.parse_get(get)
            x1, x2 = _check_masked(x1, x2, "x1", "x2", self.spatial_ndim, mask_constant)
            if self.per_point(kwargs, x1, x2) is None:
                raise ValueError(
                    f"{name}: call-time keywords {sorted(kwargs)} must be per-point pairs "
                    "(a1, a2) with x1's and x2's points on their leading axes (a2 None when x2 "
                    "is None) to be sliced into tiles"
                )
            b = min(batch_size, x1.shape[0] if x2 is None else max(x1.shape[0], x2.shape[0]))
            check_memory(
                name, x1, x2, kernel_names(get, compute_ntk), devices=devices,
                pair_size=self.output_pair_size(x1),
                extra_bytes=2 * b * b * self.pair_bytes(x1),
                shards=len(devices) if shard_output else 1,
            )  # fmt: skip
            if shard_output:
                x1, x2 = to_global(x1), to_global(x2)
                kwargs = jax.tree_util.tree_map(to_global, kwargs)
            out, ok = compute(x1, x2, kwargs, get, compute_ntk, mask_constant)
            self.check(name, out, ok, get, _zeroed(x1, mask_constant), _zeroed(x2, mask_constant))
            return out

        batched.__name__ = name
        return batched


def _zeroed(x, mask_constant):
    """``x`` with its masked entries (equal to ``mask_constant``) zeroed; ``x`` when nothing
    is masked."""
    if x is None or mask_constant is None:
        return x
    return jnp.where(masked_entries(x, mask_constant), jnp.zeros((), x.dtype), x)


def _check_masked(x1, x2, name1, name2, spatial_ndim, mask_constant):
    """`check_inputs` where the entries equal to ``mask_constant`` (NaN or inf allowed there:
    they are absent) are checked as zeros; returns the inputs as given, in the common dtype."""
    if mask_constant is None:
        return check_inputs(x1, x2, name1, name2, spatial_ndim=spatial_ndim)
    a1 = jnp.asarray(x1)
    a2 = None if x2 is None else jnp.asarray(x2)
    z1, z2 = check_inputs(
        _zeroed(a1, mask_constant), _zeroed(a2, mask_constant), name1, name2, spatial_ndim
    )
    return a1.astype(z1.dtype), None if a2 is None else a2.astype(z2.dtype)


# ------------------------------------------------------------------- the layer record


class Rule:
    """How a layer's output depends on its parameters and input, for the structured empirical
    NTK (`theory.kernels.empirical`): a Dense layer is linear in its weights, an elementwise
    layer has none. A layer without a rule (``None``) sends the empirical NTK to the generic
    Jacobian route."""


@dataclasses.dataclass(frozen=True)
class DenseRule(Rule):
    """z = s_W · a W + s_b · b (see `theory.kernels.empirical` for s_W, s_b)."""

    W_std: float
    b_std: float | None
    parameterization: str
    s: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class ElementwiseRule(Rule):
    """z = φ(a), no parameters."""

    fn: Callable


@dataclasses.dataclass(frozen=True)
class IdentityRule(Rule):
    """z = a."""


@dataclasses.dataclass(frozen=True)
class SerialRule(Rule):
    """The layers of a `serial` chain in order (None for a layer without a rule)."""

    children: tuple[Rule | None, ...]


class ApplyFn:
    """A layer's ``apply_fn(params, inputs, **kwargs)`` with its linear `Rule` (None: none)."""

    __slots__ = ("fn", "rule", "__name__", "__wrapped__", "__weakref__")

    def __init__(self, fn: Callable, rule: Rule | None, name: str):
        if rule is not None and not isinstance(rule, Rule):
            raise TypeError(f"rule must be a Rule or None, got {type(rule).__name__}")
        self.fn, self.rule, self.__name__, self.__wrapped__ = fn, rule, name, fn

    @any_rank_promotion
    def __call__(self, params, inputs, **kwargs):
        return self.fn(params, inputs, **kwargs)

    def __repr__(self) -> str:
        return f"<apply_fn of {self.__name__}>"


def rule_of(apply_fn: Callable) -> Rule | None:
    """The `Rule` of a stax ``apply_fn`` (None for any other function)."""
    return apply_fn.rule if isinstance(apply_fn, ApplyFn) else None


class Layer(NamedTuple):
    """What every stax layer and combinator returns. A named triple, so it unpacks as
    neural-tangents' ``init_fn, apply_fn, kernel_fn = stax.serial(...)``; the fields below are
    what `serial`, `parallel`, `theory.kernels.batch`, the empirical NTK and Monte Carlo read:

    - ``init_fn(key, input_shape) -> (output_shape, params)``;
    - ``apply_fn``: an `ApplyFn`, the finite network, with ``apply_fn.rule`` its linear `Rule`;
    - ``kernel_fn``: a `KernelFn`, the infinite-width transformation, with ``.diagonal`` (what
      the layer requires of the spatial covariance), ``.spatial_ndim`` (the inputs it needs),
      ``.call_kwargs`` (call-time data such as a graph pattern) and ``.activation``.
    """

    init_fn: Callable
    apply_fn: ApplyFn
    kernel_fn: KernelFn

    @property
    def requires(self) -> Diagonal:
        """Whether the layer can be computed on the spatial diagonal (see `Diagonal`)."""
        return self.kernel_fn.diagonal

    @property
    def rule(self) -> Rule | None:
        return self.apply_fn.rule


def new_layer(
    init_fn: Callable,
    apply_fn: Callable,
    kernel_fn: KernelFn,
    rule: Rule | None = None,
    masking: Masking | None = IDENTITY,
):
    """A `Layer` from its three functions; ``apply_fn`` gets the linear ``rule`` (None: none).
    ``init_fn`` is named after the layer (``"Dense"``, ``"Identity"``, …), as neural-tangents
    names its layers' functions (scripts test ``layer[0].__name__``). ``masking``: how the
    layer treats masked inputs (`theory.kernels.stax.Masking`; default: the mask passes
    unchanged); its ``apply_fn`` and ``kernel_fn`` are wrapped to take them. Combinators pass
    None: their layers handle the masks."""
    if masking is not None:
        apply_fn = masked_apply(apply_fn, masking, kernel_fn.__name__)
        kernel_fn.transform = masked_transform(kernel_fn.transform, masking, kernel_fn.__name__)

    def init(rng, input_shape):
        return init_fn(rng, input_shape)

    init.__name__ = init.__qualname__ = kernel_fn.__name__.split("(")[0]
    init.__wrapped__ = init_fn
    return Layer(init, ApplyFn(apply_fn, rule, kernel_fn.__name__), kernel_fn)


def layer(layer_fn: Callable) -> Callable[..., Layer]:
    """neural-tangents' decorator for a user's own layer. ``layer_fn(*args, **kwargs)`` returns
    ``(init_fn, apply_fn, kernel_fn)`` whose ``kernel_fn(k: Kernel, **kwargs) -> Kernel`` maps
    a `Kernel`; the decorated function returns a `Layer` whose ``kernel_fn`` is a `KernelFn`:
    it also takes arrays (``kernel_fn(x1, x2, get)``, with the input checks, jit, tiling and
    the non-finite guard of every layer), composes with `serial` and `parallel`, and its three
    functions are named after ``layer_fn``. Inputs of any rank are accepted; the layer's
    kernel function must handle the `Kernel`s it is given (``k.spatial`` says whether they
    carry sites). What the kernel function declares with `requires` (its `Diagonal`, batch
    and channel axes) and `supports_masking` (its mask rule) is read here; a layer without
    `supports_masking` passes masks on unchanged."""
    name = layer_fn.__name__

    @functools.wraps(layer_fn)
    def build(*args, **kwargs) -> Layer:
        init_fn, apply_fn, kernel_fn = layer_fn(*args, **kwargs)
        if not callable(kernel_fn):
            raise TypeError(f"{name}: the layer function must return a callable kernel_fn")
        reqs = dict(getattr(kernel_fn, _INPUT_REQ, {}))
        if reqs.get("diagonal_batch", True) is False:
            raise NotImplementedError(
                f"{name}: requires(diagonal_batch=False) (a layer that needs every pair of x1's "
                "points inside the network) is not supported; kernels carry per-point blocks"
            )
        diagonal = reqs.get("diagonal_spatial", Diagonal())
        if not isinstance(diagonal, Diagonal):  # a bool, as neural-tangents also accepts
            diagonal = Diagonal(YES, YES) if diagonal else Diagonal(NO, NO)
        b, c = reqs.get("batch_axis", 0), reqs.get("channel_axis", -1)
        kfn = KernelFn(
            lambda k, **kw: kernel_fn(k, **kw),
            name,
            spatial_ndim="any",
            diagonal=diagonal,
            channel_axis=None if c == -1 else c,
            batch_axis=b or None,
        )
        masking = getattr(kernel_fn, "masking", IDENTITY)
        return new_layer(init_fn, apply_fn, kfn, masking=masking)

    return build


_INPUT_REQ = "input_req"
_REQUIREMENTS = ("diagonal_spatial", "diagonal_batch", "batch_axis", "channel_axis")


def requires(**static_reqs) -> Callable:
    """neural-tangents' decorator declaring what a user layer's ``kernel_fn`` needs of its
    input `Kernel`: ``diagonal_spatial`` (a `Diagonal`, or a bool), ``batch_axis`` and
    ``channel_axis`` (the layer's layout), ``diagonal_batch`` (True; False is refused by
    `layer`). `layer` reads them. Unknown names raise TypeError."""
    unknown = sorted(set(static_reqs) - set(_REQUIREMENTS))
    if unknown:
        raise TypeError(f"requires: unknown requirements {unknown}; known: {list(_REQUIREMENTS)}")

    def decorate(kernel_fn: Callable) -> Callable:
        @functools.wraps(kernel_fn)
        def wrapped(k, **kwargs):
            return kernel_fn(k, **kwargs)

        setattr(wrapped, _INPUT_REQ, dict(getattr(kernel_fn, _INPUT_REQ, {}), **static_reqs))
        if hasattr(kernel_fn, "masking"):
            wrapped.masking = kernel_fn.masking
        return wrapped

    return decorate


def supports_masking(remask_kernel: bool) -> Callable:
    """neural-tangents' decorator for a user layer function that returns ``(init_fn, apply_fn,
    kernel_fn, mask_fn)``: ``mask_fn(mask, input_shape)`` maps a boolean mask laid out as the
    layer's inputs to one laid out as its outputs (omitted: unchanged). Use it under `layer`
    (``@layer`` then ``@supports_masking(...)``); the layer then takes ``mask_constant`` and
    masked inputs like the built-in ones (`theory.kernels.stax.Masking`). Kernels are re-zeroed
    at absent sites after every layer whatever ``remask_kernel`` says (it only saved work in
    neural-tangents: the next layer zeroes its absent inputs anyway)."""
    if not isinstance(remask_kernel, (bool, np.bool_)):
        raise TypeError(
            f"supports_masking: remask_kernel must be True or False, got {remask_kernel!r}"
        )

    def decorate(layer_fn: Callable) -> Callable:
        @functools.wraps(layer_fn)
        def build(*args, **kwargs):
            fns = layer_fn(*args, **kwargs)
            if len(fns) not in (3, 4):
                raise ValueError(
                    f"{layer_fn.__name__}: a masked layer returns (init_fn, apply_fn, kernel_fn"
                    f"[, mask_fn]), got {len(fns)} functions"
                )
            init_fn, apply_fn, kernel_fn = fns[:3]
            mask_fn = fns[3] if len(fns) == 4 else None
            masking = IDENTITY if mask_fn is None else _user_masking(mask_fn)

            @functools.wraps(kernel_fn)
            def kernel(k, **kw):
                return kernel_fn(k, **kw)

            if hasattr(kernel_fn, _INPUT_REQ):
                setattr(kernel, _INPUT_REQ, getattr(kernel_fn, _INPUT_REQ))
            kernel.masking = masking
            return init_fn, apply_fn, kernel

        return build

    return decorate


def _user_masking(mask_fn: Callable) -> Masking:
    """A `Masking` from neural-tangents' ``mask_fn(mask, input_shape)`` (activation layout):
    in the kernel the mask (points first, channels last) is laid out as the activations, mapped,
    and laid back."""

    def kernel(m, k_in, k_out):
        ndim = m.ndim
        c_in = channel_position(k_in.channel_axis, ndim, "channel_axis")
        out = mask_fn(jnp.moveaxis(m, -1, c_in), k_in.shape1)
        c_out = channel_position(k_out.channel_axis, out.ndim, "channel_axis")
        return jnp.moveaxis(out, c_out, -1)

    return Masking(kernel=kernel, apply=lambda mask, x: mask_fn(mask, x.shape))


def as_layer(obj, where: str) -> Layer:
    """``obj`` as a `Layer`: a `Layer`, or a triple whose ``kernel_fn`` is a `KernelFn` (a user's
    own ``apply_fn`` then has no rule); otherwise `TypeError` naming ``where``."""
    if isinstance(obj, Layer):
        return obj
    if isinstance(obj, tuple) and len(obj) == 3 and isinstance(obj[2], KernelFn):
        init_fn, apply_fn, kernel_fn = obj
        if not isinstance(apply_fn, ApplyFn):
            apply_fn = ApplyFn(apply_fn, None, kernel_fn.__name__)
        return Layer(init_fn, apply_fn, kernel_fn)
    raise TypeError(
        f"{where} is not a stax layer: expected (init_fn, apply_fn, kernel_fn) with a kernel_fn "
        f"from theory.kernels.stax, got {type(obj).__name__}"
        + (f" of length {len(obj)}" if isinstance(obj, tuple) else "")
    )


def check_axes(layer: str, batch_axis, channel_axis) -> int:
    """Validate a layer's ``batch_axis`` and ``channel_axis`` arguments; return
    ``channel_axis``. Every layer takes its points on any axis: kernels are computed with the
    points moved to axis 0 (`KernelFn.batch_axis`). Axes are checked against the inputs' rank
    when the layer is used."""
    for name, value in (("batch_axis", batch_axis), ("channel_axis", channel_axis)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{layer}: {name} must be an integer, got {value!r}")
    if batch_axis == 0 and channel_axis == 0:
        raise ValueError(f"{layer}: channel_axis=0 is the batch axis; channels need another axis")
    return channel_axis


def axis_position(axis: int | None, ndim: int, name: str) -> int:
    """``axis`` (None: 0) as a position in 0 … ndim − 1; ValueError naming ``name``."""
    if axis is None:
        return 0
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for {ndim}-D inputs")
    return axis % ndim


def layout_positions(batch_axis: int, channel_axis: int, ndim: int, layer: str = "") -> tuple:
    """``(b, c)``: where ``ndim``-D inputs hold their points and channels (positions in
    0 … ndim − 1); ValueError when either is out of range or they are the same axis."""
    prefix = f"{layer}: " if layer else ""
    b = axis_position(batch_axis, ndim, f"{prefix}batch_axis")
    c = axis_position(channel_axis, ndim, f"{prefix}channel_axis")
    if b == c:
        raise ValueError(
            f"{prefix}batch_axis={batch_axis} and channel_axis={channel_axis} are the same axis "
            f"of {ndim}-D inputs"
        )
    return b, c


def canonical_axis(axis: int, batch_axis: int | None, ndim: int, name: str) -> int:
    """Where ``axis`` of ``ndim``-D activations whose points are on ``batch_axis`` is once the
    points are moved to axis 0 (the layout kernels are computed in)."""
    a = axis_position(axis, ndim, name)
    b = axis_position(batch_axis, ndim, "batch_axis")
    if a == b:
        raise ValueError(f"{name}={axis} is the batch axis ({batch_axis}) of {ndim}-D inputs")
    return a + 1 if a < b else a


def points_first(init_fn: Callable, apply_fn: Callable, batch_axis: int):
    """``init_fn``/``apply_fn`` of a rank-preserving layer written for inputs with their points
    on axis 0, made to take them on ``batch_axis``. Unchanged for ``batch_axis=0``."""
    if batch_axis == 0:
        return init_fn, apply_fn

    def init(rng, input_shape):
        shape = tuple(input_shape)
        b = axis_position(batch_axis, len(shape), "batch_axis")
        out, params = init_fn(rng, (shape[b],) + shape[:b] + shape[b + 1 :])
        out = tuple(out)
        return out[1 : b + 1] + out[:1] + out[b + 1 :], params

    def apply(params, inputs, **kwargs):
        b = axis_position(batch_axis, inputs.ndim, "batch_axis")
        y = apply_fn(params, jnp.moveaxis(inputs, b, 0), **kwargs)
        return jnp.moveaxis(y, 0, b)

    return init, apply


def standard_layout(init_fn: Callable, apply_fn: Callable, batch_axis: int, channel_axis: int):
    """``init_fn``/``apply_fn`` of a layer written for (N, *sites, C) inputs, made to take
    inputs whose points are on ``batch_axis`` and channels on ``channel_axis`` (both in the
    inputs' own layout; the sites are the other axes, in order): the two axes are moved to
    the front and back, the layer applied, and moved back (also a ``mask=`` keyword, laid out
    as the inputs). The output keeps the input's rank. Unchanged for (0, −1)."""

    def axes(ndim):
        return layout_positions(batch_axis, channel_axis, ndim)

    if batch_axis == 0 and channel_axis == -1:
        return init_fn, apply_fn

    def init(rng, input_shape):
        shape = tuple(input_shape)
        b, c = axes(len(shape))
        std = np.moveaxis(np.empty(shape, dtype=[]), (b, c), (0, -1)).shape
        out, params = init_fn(rng, std)
        out = np.moveaxis(np.empty(tuple(out), dtype=[]), (0, -1), (b, c)).shape
        return out, params

    def apply(params, inputs, **kwargs):
        b, c = axes(inputs.ndim)
        if kwargs.get("mask") is not None:
            mask = jnp.broadcast_to(kwargs["mask"], kwargs["mask"].shape)
            kwargs["mask"] = jnp.moveaxis(mask, (b, c), (0, -1))
        y = apply_fn(params, jnp.moveaxis(inputs, (b, c), (0, -1)), **kwargs)
        return jnp.moveaxis(y, (0, -1), (b, c))

    return init, apply


def channels_last(init_fn: Callable, apply_fn: Callable, channel_axis: int):
    """``init_fn``/``apply_fn`` of a rank-preserving layer written for channel-last inputs,
    made to take inputs whose channels are on ``channel_axis``: the channel axis is moved last,
    the layer applied, and the channel axis moved back. Unchanged for ``channel_axis=-1``."""
    if channel_axis == -1:
        return init_fn, apply_fn

    def position(ndim):
        return channel_position(channel_axis, ndim, "channel_axis")

    def init(rng, input_shape):
        shape = tuple(input_shape)
        c = position(len(shape))
        out, params = init_fn(rng, shape[:c] + shape[c + 1 :] + shape[c : c + 1])
        out = tuple(out)
        if c != len(shape) - 1:
            out = out[:c] + out[-1:] + out[c:-1]
        return out, params

    def apply(params, inputs, **kwargs):
        c = position(inputs.ndim)
        if c == inputs.ndim - 1:
            return apply_fn(params, inputs, **kwargs)
        if kwargs.get("mask") is not None:  # a masked layer's mask, laid out as the inputs
            kwargs["mask"] = jnp.moveaxis(kwargs["mask"], c, -1)
        y = apply_fn(params, jnp.moveaxis(inputs, c, -1), **kwargs)
        return jnp.moveaxis(y, -1, c)

    return init, apply


# ------------------------------------------------------------------- layer builders


def _stateless_init(rng, input_shape):
    return input_shape, ()


def _check_std(name: str, value, allow_none: bool = False):
    if value is None and allow_none:
        return
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
