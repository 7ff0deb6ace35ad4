r"""Networks and their infinite-width kernels from one description.

A drop-in for neural-tangents' ``stax`` (fully connected and convolutional layers): every
layer returns ``(init_fn, apply_fn, kernel_fn)`` with the same names, arguments, defaults
and numbers::

    init_fn(key, input_shape) -> (output_shape, params)
    apply_fn(params, x) -> outputs
    kernel_fn(x1, x2=None, get=None) -> Kernel | array | (nngp, ntk)

``kernel_fn`` follows neural-tangents' conventions: input kernel ``x1·x2ᵀ/d``, NTK 0 before
the first ``Dense``; ``get`` is ``None`` (a `Kernel` with ``.nngp`` and ``.ntk``), a name
(``"nngp"``/``"ntk"``) or a tuple of names (a named tuple). It is compiled with ``jax.jit``
on first use for each input shape; float64 inputs (``jax_enable_x64``) give float64 kernels.

Layer recursions (Jacot, Gabriel & Hongler 2018, Thm. 1; Lee et al. 2019, eqs. 3–4):

- ``Dense``, NTK parameterization:  K ← σ_w² K + σ_b²,  Θ ← K_new + σ_w² Θ;
- ``Dense``, standard parameterization (Sohl-Dickstein et al. 2020):
  Θ ← n_in K_old + σ_w² Θ (+ 1 with a bias, even when ``b_std=0.0``), then K ← σ_w² K + σ_b²;
- activation φ with dual k and k̇ (see `theory.kernels.dual`): K ← k(K), Θ ← Θ · k̇(K).

The package is split by what a layer does to the kernel:

- `theory.kernels.stax._core`: `KernelFn` (validation, compilation, tiling, numerical guards)
  and `Diagonal` (whether a network's kernel needs the full spatial covariance);
- `theory.kernels.stax.elementwise`: activations, through their duals;
- `theory.kernels.stax.linear`: Dense, Conv, Flatten and the pools (linear operators on the
  kernel, `theory.kernels.spatial`);
- `theory.kernels.stax.combinators`: serial, parallel, fan-out/fan-in, Identity;
- `theory.kernels.stax.normalization`: LayerNorm, Dropout;
- `theory.kernels.stax.attention`: GlobalSelfAttention;
- `theory.kernels.stax.graph`: Aggregate (graph networks);
- `theory.kernels.stax._masking`: masked inputs (``mask_constant``, `MaskedArray`,
  `unmask_fn`, each layer's `Masking` rule).

Each module lists its public layers in its own ``__all__``; this package re-exports them all.
"""

# ruff: noqa: F401, F403
from theory.kernels.kernel import Kernel
from theory.kernels.stax import (
    _core,
    attention,
    combinators,
    elementwise,
    graph,
    linear,
    normalization,
)
from theory.kernels.stax._core import *
from theory.kernels.stax._masking import MaskedArray, Masking, unmask_fn
from theory.kernels.stax.attention import *
from theory.kernels.stax.combinators import *
from theory.kernels.stax.elementwise import *
from theory.kernels.stax.graph import *
from theory.kernels.stax.linear import *
from theory.kernels.stax.normalization import *

__all__ = [
    "Kernel",
    *_core.__all__,
    "MaskedArray",
    "Masking",
    "unmask_fn",
    *combinators.__all__,
    *elementwise.__all__,
    *linear.__all__,
    *normalization.__all__,
    *attention.__all__,
    *graph.__all__,
]
