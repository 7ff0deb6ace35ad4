"""Infinite-width kernels: NNGP and NTK of deep networks, in closed form and empirically.

- `stax`: neural-tangents-compatible layers ``(init_fn, apply_fn, kernel_fn)`` whose
  ``kernel_fn`` gives the NNGP and NTK in closed form (Jacot et al. 2018; Lee et al. 2019);
- `dual`: closed-form dual activations k(q12, q11, q22) and k̇ (shared with other modules);
- `empirical_ntk`: the NTK of a finite network, any JAX function, with a fast structured
  path for ``stax`` networks;
- `monte_carlo_kernel`: NNGP/NTK estimated by sampling finite networks;
- `criticality`: criticality, universality classes and 1/n corrections (Roberts, Yaida &
  Hanin), with vmapped Monte Carlo over finite networks;
- `predict`: training dynamics in function space (gradient descent on MSE, GP inference);
- `batch`: tiled kernels spread over all devices (``shard_output=True``: the result split over
  them, across hosts with `jax.distributed`);
- `kernel_to_disk`: a kernel written tile by tile into an on-disk zarr array, resumable.

Numerical guards shared by all of them: `NonFiniteKernelError` (a NaN/inf result from finite
inputs, e.g. float32 overflow) and `KernelMemoryError` (an output that cannot fit, refused
before allocating); see `theory.kernels.kernel`.
"""

from theory.kernels import criticality, dual, empirical, monte_carlo, predict, stax
from theory.kernels.batching import batch
from theory.kernels.disk import kernel_to_disk
from theory.kernels.empirical import empirical_ntk
from theory.kernels.empirical_fn import (
    NtkImplementation,
    empirical_kernel_fn,
    empirical_nngp_fn,
    empirical_ntk_fn,
    empirical_ntk_vp_fn,
    linearize,
    taylor_expand,
)
from theory.kernels.kernel import Kernel, KernelMemoryError, NonFiniteKernelError
from theory.kernels.monte_carlo import monte_carlo_kernel, monte_carlo_kernel_fn

__all__ = [
    "Kernel",
    "NtkImplementation",
    "KernelMemoryError",
    "NonFiniteKernelError",
    "batch",
    "criticality",
    "dual",
    "empirical",
    "empirical_kernel_fn",
    "empirical_nngp_fn",
    "empirical_ntk",
    "empirical_ntk_fn",
    "empirical_ntk_vp_fn",
    "kernel_to_disk",
    "linearize",
    "monte_carlo",
    "monte_carlo_kernel",
    "monte_carlo_kernel_fn",
    "predict",
    "stax",
    "taylor_expand",
]
