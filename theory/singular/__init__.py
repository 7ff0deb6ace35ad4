"""Singular-kernel classifiers: the infinite-depth limits of wide networks.

Radhakrishnan, Belkin & Uhler (2023), "Wide and deep neural networks achieve consistency for
classification", PNAS. An infinitely wide network with normalised dual φ̌ (`duals`) becomes,
as its depth grows, majority vote (a₀ ≠ 0), 1-nearest neighbour (a₀ = a₁ = 0) or a
Nadaraya–Watson classifier with the singular kernel Φ ≍ ‖x − z‖^(−α), α = 2 ln(1/c)/ln λ
(a₀ = 0 ≠ a₁) — Bayes-consistent when α equals the data's intrinsic dimension.

- `duals`: `Dual` objects (Hermite, ReLU, erf, sine, monomial), their kind and α,
  `consistent_dual`;
- `kernels`: NNGP/NTK at depth L and the depth-∞ Koenigs kernel, in float64 and log space;
- `classifiers`: scikit-learn estimators (`InfiniteDepthClassifier`,
  `SingularKernelClassifier`, `HilbertKernelClassifier`);
- `data`: the paper's Dirichlet tasks on the sphere with their Bayes rule and risk.
"""

from theory.singular.classifiers import (
    HilbertKernelClassifier,
    InfiniteDepthClassifier,
    SingularKernelClassifier,
)
from theory.singular.duals import (
    Dual,
    activation_dual,
    consistent_dual,
    erf_dual,
    hermite_dual,
    monomial_dual,
    polynomial_dual,
    relu_dual,
    sine_alpha,
    sine_dual,
)
from theory.singular.kernels import (
    kernels_at_depths,
    koenigs_from_correlation,
    koenigs_from_gap,
    koenigs_kernel,
    log_koenigs_kernel,
    nngp_at_depth,
    ntk_at_depth,
)

__all__ = [
    "Dual",
    "HilbertKernelClassifier",
    "InfiniteDepthClassifier",
    "SingularKernelClassifier",
    "activation_dual",
    "consistent_dual",
    "erf_dual",
    "hermite_dual",
    "koenigs_from_correlation",
    "koenigs_from_gap",
    "kernels_at_depths",
    "koenigs_kernel",
    "log_koenigs_kernel",
    "monomial_dual",
    "nngp_at_depth",
    "ntk_at_depth",
    "polynomial_dual",
    "relu_dual",
    "sine_alpha",
    "sine_dual",
]
