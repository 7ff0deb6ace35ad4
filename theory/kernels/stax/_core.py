"""The kernel function of a network and what every layer shares: `KernelFn` (validation,
compilation, numerical guards), the spatial-diagonal requirement `Diagonal`, and small helpers."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import namedtuple
from collections.abc import Callable, Sequence

import jax

from theory.kernels.batching import default_tile, tiled_kernel
from theory.kernels.kernel import (
    Kernel,
    all_finite,
    check_inputs,
    check_memory,
    check_outputs,
    input_kernel,
    kernel_names,
)

__all__ = [
    "KernelFn",
    "Diagonal",
    "NO",
    "MAYBE",
    "YES",
]


_GETS = ("nngp", "ntk")

# ----------------------------------------------------------------------- kernel_fn

NO, MAYBE, YES = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class Diagonal:
    """Whether a network's kernel can be computed on the spatial diagonal (neural-tangents'
    three-valued requirement, folded once per network): ``input`` says whether the layer
    accepts a diagonal-only input (NO, MAYBE: only if off-diagonal entries are 0, YES),
    ``output`` whether outputs from here on may be diagonal-only. ``serial`` composes with
    ``>>``, ``parallel`` combines with ``&``; the network is computed on the diagonal iff
    ``input == YES and output > NO``. Dense, activations and Conv: (YES, NO); Flatten (YES,
    YES); AvgPool/SumPool (MAYBE, NO); GlobalAvgPool/GlobalSumPool (MAYBE, YES)."""

    input: int = YES
    output: int = NO

    def __rshift__(self, other: Diagonal) -> Diagonal:
        if self.output == YES:
            return self
        if self.output > NO and other.input > NO:
            inp = self.input
        elif self.output == NO and other.input < YES:
            inp = NO
        else:
            inp = min(self.input, other.input)
        return Diagonal(inp, other.output)

    def __and__(self, other: Diagonal) -> Diagonal:
        return Diagonal(min(self.input, other.input), min(self.output, other.output))

    def __bool__(self) -> bool:
        return self.input == YES and self.output > NO


class KernelFn:
    """The infinite-width kernel of a network: ``kernel_fn(x1, x2=None, get=None)``.

    Also accepts a `Kernel` (or a list of them, for fan-in layers) instead of ``x1`` and
    then applies just this layer's transformation, which is how layers compose.

    Call-time keyword arguments: a layer that needs data given with the inputs (`Aggregate`'s
    graph ``pattern``) declares their names in ``call_kwargs`` and receives them as
    ``transform(k, **kwargs)``; `serial` and `parallel` forward each keyword to the layers
    that declare it, and ``kernel_fn(x1, x2, get, pattern=...)`` passes them into the compiled
    computation as traced arguments (one compilation per shape, not per value). A keyword that
    no layer of the network declares raises `TypeError` naming it. A network called with
    array-valued keywords is not tiled (`theory.kernels.batching` slices only ``x1``/``x2``,
    not per-point data such as a pattern), so its whole input kernel is held at once.

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
        is_activation: bool = False,
        hints: Sequence[str] = (),
        spatial_ndim: int | str | None = None,
        diagonal: Diagonal | None = None,
        call_kwargs: Sequence[str] = (),
    ):
        self.transform = transform
        # names of the call-time keyword arguments ``transform`` accepts (see the class notes)
        self.call_kwargs = tuple(dict.fromkeys(call_kwargs))
        self.__name__ = name
        self.is_activation = is_activation
        # None: the network takes 2-D inputs; k: NHWC inputs with k site axes (convolutions);
        # "sites": NHWC with any number of site axes (global pooling, attention)
        self.spatial_ndim = spatial_ndim
        self.diagonal = Diagonal() if diagonal is None else diagonal
        self.hints = tuple(dict.fromkeys(hints))  # layer notes for NonFiniteKernelError
        self._jitted = jax.jit(self._compute, static_argnames=("get", "compute_ntk"))
        self._pair_sizes: dict = {}

    def __repr__(self) -> str:
        return f"<kernel_fn of {self.__name__}>"

    def pair_bytes(self, x1) -> int:
        """Bytes of one pair of points of the input kernel: 0 for fully connected networks,
        else the sites on the spatial diagonal (|S|) or with the full covariance (|S|²) times
        the item size. Sizes the automatic tiles (`theory.kernels.batching.default_tile`)."""
        if x1.ndim == 2:
            return 0
        sites = math.prod(x1.shape[1:-1])
        return (sites if bool(self.diagonal) else sites * sites) * x1.dtype.itemsize

    def output_pair_size(self, x1) -> int:
        """Entries per pair of points of the network's output kernel (1 unless it keeps sites),
        from the traced shapes of a one-point kernel (nothing is computed)."""
        if x1.ndim == 2:
            return 1
        key = (x1.shape[1:], str(x1.dtype))
        if key not in self._pair_sizes:
            one = jax.ShapeDtypeStruct((1, *x1.shape[1:]), x1.dtype)
            out = jax.eval_shape(
                lambda x: self.transform(input_kernel(x, None, False, bool(self.diagonal))), one
            )
            if isinstance(out, (list, tuple)):
                raise ValueError(
                    f"{self.__name__} ends with {len(out)} branches: close them with "
                    "FanInSum() or FanInProd() before asking for a kernel"
                )
            self._pair_sizes[key] = math.prod(out.nngp.shape[2:])
        return self._pair_sizes[key]

    def _tile(self, x1, x2, kwargs) -> int | None:
        """The automatic tile size; None (untiled) when array-valued call-time keywords
        (per-point data such as a graph pattern) are given: tiles slice only x1 and x2."""
        if jax.tree_util.tree_leaves(kwargs):
            return None
        n2 = x1.shape[0] if x2 is None else x2.shape[0]
        return default_tile(x1.shape[0], n2, self.pair_bytes(x1))

    def _compute(self, x1, x2, kwargs, get, compute_ntk):
        """``(selected output, whether all of the kernel's arrays are finite)``."""
        tile = self._tile(x1, x2, kwargs)
        diagonal = bool(self.diagonal)
        if tile is None:
            k = self.transform(input_kernel(x1, x2, compute_ntk, diagonal), **kwargs)
        else:
            k, ok = tiled_kernel(
                functools.partial(self.transform, **kwargs), x1, x2, compute_ntk, tile,
                with_flags=True,
                diagonal_spatial=diagonal,
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
    def parse_get(get):
        """Validate ``get``; return it normalised and whether the NTK is needed."""
        if get is None:
            return None, True
        names = (get,) if isinstance(get, str) else tuple(get)
        if not names or any(g not in _GETS for g in names):
            raise ValueError(f"get must be None, 'nngp', 'ntk' or a tuple of them, got {get!r}")
        return (get if isinstance(get, str) else names), "ntk" in names

    @staticmethod
    def select(k: Kernel, get):
        if get is None:
            return k
        if isinstance(get, str):
            return getattr(k, get)
        return namedtuple("Kernels", get)(*(getattr(k, g) for g in get))

    def check(self, where: str, out, ok, get, x1, x2) -> None:
        """Raise `NonFiniteKernelError` unless every array in ``out`` is finite."""
        names = self.returned(out, get)
        if get is None:
            arrays = [getattr(out, n) for n in names]
        else:
            arrays = [out] if isinstance(get, str) else list(out)
        check_outputs(where, ok, dict(zip(names, arrays)), (x1, x2), out, self.hints)

    def check_kwargs(self, kwargs: dict) -> None:
        """Raise `TypeError` naming any keyword that no layer of this network takes."""
        unknown = sorted(set(kwargs) - set(self.call_kwargs))
        if unknown:
            takes = (
                f"; it takes {sorted(self.call_kwargs)}"
                if self.call_kwargs
                else " (no layer of it takes call-time keywords)"
            )
            raise TypeError(f"{self.__repr__()} got unexpected keyword arguments {unknown}{takes}")

    def __call__(self, x1, x2=None, get=None, **kwargs):
        self.check_kwargs(kwargs)
        get, compute_ntk = self.parse_get(get)
        if isinstance(x1, Kernel) or (
            isinstance(x1, (list, tuple)) and x1 and isinstance(x1[0], Kernel)
        ):
            if x2 is not None:
                raise ValueError("x2 must be None when kernel_fn is applied to a Kernel")
            k = self.transform(x1, **kwargs)
            return k if isinstance(k, (list, tuple)) else self.select(k, get)
        x1, x2 = check_inputs(x1, x2, spatial_ndim=self.spatial_ndim)
        name = self.__name__
        where = f"kernel_fn of {name if len(name) <= 80 else name[:70] + ' …)'}"
        n2 = x1.shape[0] if x2 is None else x2.shape[0]
        pairs = self.output_pair_size(x1)
        tile = self._tile(x1, x2, kwargs)
        # The output, plus (when tiled) one tile's NNGP and NTK at the input's resolution;
        # untiled because of call-time data, the whole input kernel.
        if tile is not None:
            working = 2 * tile * tile * self.pair_bytes(x1)
        elif jax.tree_util.tree_leaves(kwargs):
            working = x1.shape[0] * n2 * self.pair_bytes(x1)
        else:
            working = 0
        check_memory(
            where, x1, x2, kernel_names(get, compute_ntk), pair_size=pairs, extra_bytes=working
        )
        out, ok = self._jitted(x1, x2, kwargs, get=get, compute_ntk=compute_ntk)
        self.check(where, out, ok, get, x1, x2)
        return out


# ------------------------------------------------------------------- layer builders


def _mark(apply_fn: Callable, structure: tuple) -> Callable:
    """Record what a layer is, for the structured empirical-NTK fast path."""
    apply_fn.structure = structure
    return apply_fn


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
