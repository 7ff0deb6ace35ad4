"""Infinite-width kernels: NNGP and NTK of deep networks, in closed form and empirically.

- `stax`: neural-tangents-compatible layers ``(init_fn, apply_fn, kernel_fn)``;
- `dual`: closed-form dual activations k(q12, q11, q22) and k̇ (shared with other modules).
"""

from theory.kernels import dual, stax
from theory.kernels.kernel import Kernel

__all__ = ["Kernel", "dual", "stax"]
