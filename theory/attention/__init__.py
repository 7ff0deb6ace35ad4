"""Attention: exact softmax and tensor attention and their fast approximations.

Alman & Song (ICLR 2024, "How to capture higher-order correlations? Generalizing matrix softmax
attention to Kronecker computation") define tensor attention D⁻¹ exp(Q (K1 ⊘ K2)ᵀ/d) (V1 ⊘ V2)
and show an n^(1+o(1)) algorithm (the polynomial method) when every entry is bounded by
B = o((log n)^(1/3)), while for B = Ω((log n)^(1/3)) nothing beats n^(3−o(1)) under SETH.

- `exact`: `softmax_attention`, `tensor_attention` (naive, or blocked with an online softmax:
  memory O(block² · n), never the n × n² matrix; differentiable);
- `poly`: `poly_attention`, `poly_tensor_attention`, `poly_multi_attention` (order t) by
  explicit monomial feature maps of rank C(d + g, g); `degree_for(B, ε)` from a certified
  bound; `critical_bound(n, t)` = (ln n)^(1/t), the entry bound between the regimes;
  `exp_polynomial`, `monomial_features`, `rank`, `roundoff_floor`; `multi_attention` (exact
  order t, naive);
- `random_features`: `performer_attention` (FAVOR+ positive random features, Choromanski et
  al. 2021), `performer_features`, `random_feature_matrix`;
- `fft`: `rpe_kernelized_attention` (kernelized attention with a relative-position Toeplitz
  bias by FFT in O(n log n), Luo et al. 2021) and its O(n²) reference
  `rpe_kernelized_attention_direct`.

Scale: s = 1/d by default everywhere (the paper's exp(QKᵀ/d)); `jax.nn.dot_product_attention`
defaults to 1/√d.
"""

from theory.attention.exact import softmax_attention, tensor_attention, tensor_attention_flops
from theory.attention.fft import (
    fft_length,
    rpe_kernelized_attention,
    rpe_kernelized_attention_direct,
)
from theory.attention.poly import (
    ExpPoly,
    PolyInfo,
    critical_bound,
    degree_for,
    exp_polynomial,
    monomial_features,
    multi_attention,
    poly_attention,
    poly_multi_attention,
    poly_tensor_attention,
    rank,
    roundoff_floor,
)
from theory.attention.random_features import (
    performer_attention,
    performer_features,
    random_feature_matrix,
)

__all__ = [
    "ExpPoly",
    "PolyInfo",
    "critical_bound",
    "degree_for",
    "exp_polynomial",
    "fft_length",
    "monomial_features",
    "multi_attention",
    "performer_attention",
    "performer_features",
    "poly_attention",
    "poly_multi_attention",
    "poly_tensor_attention",
    "random_feature_matrix",
    "rank",
    "roundoff_floor",
    "rpe_kernelized_attention",
    "rpe_kernelized_attention_direct",
    "softmax_attention",
    "tensor_attention",
    "tensor_attention_flops",
]
