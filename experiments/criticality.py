"""Criticality and finite-width corrections: RYH ch. 4–5 and Hanin & Nica (2019).

Roberts, Yaida & Hanin, *The Principles of Deep Learning Theory* (2022; "RYH"), and Hanin &
Nica (2019), "Finite depth and width corrections to the neural tangent kernel". The networks
are `theory.kernels.criticality`'s (NTK parameterization, C_b, C_W, first-layer kernel K⁽¹⁾ =
K1, equal widths n); the Monte Carlo draws finite networks with its exact-in-distribution
Gaussian sampler (`sample_networks`). Critical points, computed by `critical_initialization`:
ReLU (C_b 0, C_W 2, every K), tanh (0, 1, K* = 0), GELU (0.17292, 1.98306, K* = 3.5616),
Swish (0.55514, 1.98800, K* = 14.320). Figures (paper_figs/criticality_*.png/.pdf):

- criticality_kernel: top row, K⁽ˡ⁾ against depth l (log-log) for tanh, ReLU, GELU, Swish at
  the critical (C_b, C_W) and with C_W scaled by 0.8 and 1.25 at the critical C_b, from
  K⁽¹⁾ = 1: lines K⁽ˡ⁺¹⁾ = C_b + C_W ⟨σ²⟩_{K⁽ˡ⁾} (`kernel_recursion`), points the Monte Carlo
  mean over networks of the layer's (1/n) Σ_i z_i² (width n, ± 1 standard error). Off
  criticality the kernel vanishes or explodes geometrically (ReLU: (C_W/2)^(l−1); tanh at
  0.8) or goes to another fixed point (tanh at 1.25: K* > 0; GELU and Swish at 0.8, whose
  C_b > 0 keeps K away from 0); at criticality tanh follows the power law K⁽ˡ⁾ ≈ 1/(2l)
  (dashed) and ReLU stays at K⁽¹⁾, while GELU and Swish, started at K⁽¹⁾ = 1 far below their
  K*, drift slowly upwards (GELU towards its stable point near 3.03). Bottom row, GELU and
  Swish at criticality started at K⁽¹⁾ = f·K* for f = 0.5, 0.95 (between GELU's stable point
  and K*) and 2, K⁽ˡ⁾/K* to depth 1000 (theory) with Monte
  Carlo points, and one layer's change F(K) − K, F(K) = C_b + C_W⟨σ²⟩_K, near K*. What the
  recursion shows: K* is a double root of F(K) − K (F(K*) = K*, F'(K*) = χ_∥ = 1), so it is
  half-stable. GELU: F(K) − K < 0 on both sides (F'' < 0): kernels above K* decrease to it by
  a power law, kernels below drift away from it, down to a second, stable fixed point at
  K ≈ 0.85 K* ≈ 3.04. Swish, the mirror image: F(K) − K > 0 on both sides near K*
  (F'' > 0, small): kernels below K* rise to it by a power law, kernels just above it rise
  away to a stable fixed point at K ≈ 1.02 K*, where F − K turns negative (so kernels
  started well above K*, e.g. 2K*, come down to that point, not to K*). The drift is slow
  (|F − K| ~ 1e-5 K* at 0.9 K*), hence the depth 1000. The Monte Carlo points (n = 128)
  leave these lines by O(l/n) at l ~ 32 (Swish from 2K*, at l = 32: 1.93 ± 0.08 K* at
  n = 128 against 1.98 K* at infinite width and 1.92 K* for K + δK at n = 128): a
  finite-width shift of the mean, which the marginal flow (χ_∥ = 1) does not damp. Dotted,
  in both rows: K⁽ˡ⁾ + δK⁽ˡ⁾, the kernel with its 1/n shift at the Monte Carlo width
  (`vertex_recursion`'s ``K_correction``:
  δK⁽ˡ⁺¹⁾ = χ_∥δK⁽ˡ⁾ + (C_W V̂⁽ˡ⁾/8K²)⟨σ²He₄(z/√K)⟩), which accounts for that shift: the
  largest |MC − theory|/s.e. over all points falls from 5.1 (tanh) and 4.6 (GELU) against
  the infinite-width K to at most 2.3 against K + δK (the summary's z-scores). ReLU's mean is
  exact at any width (δK = 0).
- criticality_vertex: the excess kurtosis E[z⁴]/(3E[z²]²) − 1 of layer L against L/n, widths
  n ∈ {8, 16, 32, 64}, L ≤ 16, coloured by width: Monte Carlo (`kurtosis_estimate`, ± 1 s.e.)
  against ReLU's exact (1 + 5/n)^(L−1) − 1 (`scale_invariant_kurtosis`, one line per width),
  its leading order 5(L − 1)/n and its large-n limit e^(5L/n) − 1, and tanh's leading-order
  normalized vertex V⁽ᴸ⁾/(n K⁽ᴸ⁾²) (`vertex_recursion`, K⁽¹⁾ = 1; ≈ (2/3) L/n at large L).
  At leading order the excess kurtosis is a function of L/n alone (5L/n, (2/3)L/n); at
  finite n the exact ReLU curves (1 + 5/n)^(L−1) − 1 still differ by width (at L/n = 1/2:
  3.3, 5.7, 7.8 for n = 8, 16, 32) and approach e^(5L/n) − 1 as n → ∞, so the collapse onto
  one function of L/n holds for L/n ≪ 1 and as n → ∞, and each width's points follow their
  own exact curve. Deep narrow ReLU nets (n = 8, L/n > 1) have heavy-tailed z⁴ (the kurtosis
  is driven by rare networks), so there the Monte Carlo estimate is biased low for any
  feasible sample count. tanh's points lie above its leading-order lines, by up to 46 % at
  n = 8 and 21 % at n = 16 (the summary's tanh_vertex_relative_excess): the next order,
  O((L/n)²), which the leading-order vertex omits.
- criticality_ntk: ReLU at criticality (C_b 0, C_W 2, K⁽¹⁾ = 1), Θ = Θ(x, x) of the scalar
  output (every W and b trained): left, E[Θ]/Θ_∞ against L/n with Θ_∞ = (L + 1)K⁽¹⁾ the
  infinite-width NTK (`ntk_recursion`); it is exactly 1 at any width (the points: within 2 s.e.
  but one, (n, L) = (32, 2) at +4.0 s.e.; Θ is right-skewed, and over 40 seeds that point's
  z-scores have mean 0.16 and s.d. 1.09, so it is a tail draw of this seed, measured, not a
  bias). Right, log(E[Θ²]/E[Θ]²)
  against β = L/n (β ∈ {1/16, 1/8, 1/4, 3/8, 1/2, 3/4, 1}) for widths {16, 32, 64, 128} and
  L ≤ 32, with the leading-order
  prediction log(1 + Var Θ/E[Θ]²) (`scale_invariant_ntk_variance`: ≈ (11/3)β at large L),
  the line 5β (Hanin & Nica's E[Θ²]/E[Θ]² ≈ e^(5β) for their network) and the slope of a
  weighted least-squares line fitted to the Monte Carlo points. Each point uses
  ntk_networks·(1 + 3β) networks (deep narrow nets have heavy tails). Measured (default
  run): slope 3.46 ± 0.04, between the leading order's initial slopes (11L + 7)/(3(L + 1))
  = 3.2–3.6 at these depths (→ 11/3 for L ≫ 1, drawn dash-dotted) and Hanin &
  Nica's 5 (their E[Θ²]/E[Θ]² ≍ e^(5β) holds up to universal multiplicative constants, so at
  β ≤ 1 a smaller slope is consistent with it; their NTK also counts bias gradients, which are
  0 here at b_std = 0); the leading order
  log(1 + Var/E²) bends down and undershoots the points from β ≈ 0.25 on, i.e. the ratio
  grows like an exponential in β, as Hanin & Nica find, not like 1 + cβ.
- criticality_correlation: 1 − ρ⁽ˡ⁾ of two inputs against l (`correlation_flow`). At
  criticality (log-log): ReLU from ρ⁽¹⁾ = 0.5 approaches 1 by the power law
  1 − ρ⁽ˡ⁾ ≈ 9π²/(2l²); tanh (C_b = 0, C_W = 1, K⁽¹⁾ = 1), whose kernel goes to K* = 0, does
  not approach 1 at all: 1 − ρ rises from 0.5 and levels off near 0.55 (slope 0.00 over
  l > 500), since near K = 0 tanh acts almost linearly and a linear network keeps
  correlations. Off criticality (semilog), tanh in the ordered phase (C_b = 0.1, C_W = 1,
  started at its stable K* > 0) approaches 1 geometrically, by the factor χ_⊥(K*) per layer,
  until 1 − ρ reaches float64 roundoff near l = 80 (where the curve stops); in the chaotic
  phase (C_b = 0, C_W = 1.5, χ_⊥(K*) > 1) ρ = 1 repels and ρ goes to a fixed point ρ* < 1.

    python -m experiments.criticality [--quick] [--flags]   (--help lists them)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Annotated

import jax
import numpy as np

from experiments._common import (
    ConfigBase,
    Interval,
    NonNegative,
    Positive,
    progress,
    pyplot,
    run_experiment,
)
from theory.kernels import criticality as cr
from theory.kernels import stax

NAME = "criticality"
ACTIVATIONS = ("tanh", "relu", "gelu", "swish")
LABEL = {"tanh": "tanh", "relu": "ReLU", "gelu": "GELU", "swish": "Swish"}


@functools.cache
def activation(name: str):
    """One stax layer per name, built once (the theory module caches compiled maps per layer)."""
    return {"tanh": stax.Tanh, "relu": stax.Relu, "gelu": stax.Gelu, "swish": stax.Swish}[name]()


# ------------------------------------------------------------------------ config


@dataclass(frozen=True)
class Kernel(ConfigBase):
    """criticality_kernel: K⁽ˡ⁾ against depth, at and off criticality"""

    k_depth: Annotated[int, Interval(ge=2)] = 100
    """depth of the theory curves (top row)"""
    k_scales: Annotated[tuple[float, ...], Positive] = (0.8, 1.25)
    """factors of the critical C_W drawn beside it (at the critical C_b)"""
    k_width: Annotated[int, Positive] = 128
    """width n of the Monte Carlo networks"""
    k_networks: Annotated[int, NonNegative] = 1000
    """Monte Carlo networks per curve (0: theory only, no points)"""
    k_mc_depth: Annotated[int, Interval(ge=1)] = 32
    """depth of the Monte Carlo networks (points at l = 1, 2, 4, ... up to it)"""
    k_start_factors: Annotated[tuple[float, ...], Positive] = (0.5, 0.95, 2.0)
    """GELU/Swish (bottom row): K⁽¹⁾ as multiples of K*, below and above it"""
    k_stability_depth: Annotated[int, Interval(ge=2)] = 1000
    """depth of the bottom row's theory curves"""


@dataclass(frozen=True)
class Vertex(ConfigBase):
    """criticality_vertex: excess kurtosis against L/n"""

    vx_widths: Annotated[tuple[int, ...], Positive] = (8, 16, 32, 64)
    """widths n"""
    vx_depth: Annotated[int, Interval(ge=2)] = 16
    """deepest layer L"""
    vx_networks: Annotated[int, Interval(ge=2)] = 20000
    """Monte Carlo networks per width and activation"""


@dataclass(frozen=True)
class Ntk(ConfigBase):
    """criticality_ntk: ReLU NTK mean and fluctuations against L/n"""

    ntk_widths: Annotated[tuple[int, ...], Positive] = (16, 32, 64, 128)
    """widths n"""
    ntk_betas: Annotated[tuple[float, ...], Positive] = (0.0625, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0)
    """aspect ratios β = L/n; depth L = round(β n), kept if 1 <= L <= --ntk-max-depth"""
    ntk_max_depth: Annotated[int, Interval(ge=1)] = 32
    """deepest L"""
    ntk_networks: Annotated[int, Interval(ge=2)] = 4000
    """base Monte Carlo networks per point; a point at β uses ntk_networks·(1 + 3β)"""


@dataclass(frozen=True)
class Correlation(ConfigBase):
    """criticality_correlation: 1 − ρ against depth"""

    corr_depth: Annotated[int, Interval(ge=2)] = 1000
    """depth of the ReLU curve (tanh stops where 1 − ρ reaches float64 roundoff)"""
    corr_rho1: Annotated[float, Interval(ge=-1, lt=1)] = 0.5
    """first-layer correlation ρ⁽¹⁾"""
    corr_tanh_cb: Annotated[float, Interval(ge=0)] = 0.1
    """C_b of the off-critical tanh network"""
    corr_tanh_cw: Annotated[float, Positive] = 1.0
    """C_W of the off-critical tanh network"""
    corr_chaos_cw: Annotated[float, Positive] = 1.5
    """C_W of the chaotic-phase tanh network (C_b = 0; χ_⊥(K*) > 1, ρ → ρ* < 1)"""


@dataclass(frozen=True)
class Config(ConfigBase):
    kernel: Kernel = field(default_factory=Kernel)
    vertex: Vertex = field(default_factory=Vertex)
    ntk: Ntk = field(default_factory=Ntk)
    correlation: Correlation = field(default_factory=Correlation)
    seed: Annotated[int, Interval(ge=0)] = 0
    """seed of every Monte Carlo draw"""

    def check(self):
        if self.kernel.k_mc_depth > self.kernel.k_depth:
            raise ValueError(
                f"--k-mc-depth must not exceed --k-depth, got {self.kernel.k_mc_depth} > "
                f"{self.kernel.k_depth}"
            )
        if not ntk_points(self.ntk):
            raise ValueError("--ntk-betas, --ntk-widths, --ntk-max-depth leave no depth L >= 1")


QUICK = dict(
    kernel=dict(k_networks=0, k_depth=40, k_stability_depth=200),
    vertex=dict(vx_widths=(16,), vx_depth=8, vx_networks=2000),
    ntk=dict(ntk_widths=(16,), ntk_betas=(0.25, 0.5), ntk_networks=400),
    correlation=dict(corr_depth=200),
)


# ------------------------------------------------------------------------ computation


def ntk_points(cfg: Ntk) -> list[tuple[int, int]]:
    """(width, depth) pairs of the NTK figure: L = round(β n) for each β, 1 <= L <= max."""
    out = []
    for n in cfg.ntk_widths:
        depths = sorted({round(b * n) for b in cfg.ntk_betas})
        out += [(n, d) for d in depths if 1 <= d <= cfg.ntk_max_depth]
    return out


def _key(seed: int, *tags: int):
    k = jax.random.key(seed)
    for t in tags:
        k = jax.random.fold_in(k, t)
    return k


def _critical() -> dict:
    out = {}
    for name in ACTIVATIONS:
        cp = cr.critical_initialization(activation(name))
        out[f"crit_{name}"] = np.array([cp.C_b, cp.C_W, np.nan if cp.K_star is None else cp.K_star])
    return out


def mc_depths(depth: int) -> np.ndarray:
    """1, 2, 4, ..., and ``depth``: the layers where Monte Carlo points are drawn."""
    d = [2**i for i in range(int(math.log2(depth)) + 1)]
    return np.array(sorted(set(d) | {depth}))


def _mc_kernel(name, c_b, c_w, k1, cfg: Kernel, key) -> tuple[np.ndarray, np.ndarray]:
    """Mean over networks of (1/n) Σ_i z_i² at the `mc_depths` layers, and its standard
    error (nan when ``k_networks`` is 0)."""
    if cfg.k_networks == 0:
        nan = np.full(mc_depths(cfg.k_mc_depth).size, np.nan)
        return nan, nan
    s = cr.sample_networks(
        activation(name), c_b, c_w, k1, cfg.k_mc_depth, cfg.k_width, cfg.k_networks, key=key
    )
    m2 = s.m2[:, mc_depths(cfg.k_mc_depth) - 1]
    return m2.mean(0), m2.std(0, ddof=1) / math.sqrt(m2.shape[0])


def _kernel(name: str, crit: np.ndarray, cfg: Kernel, seed: int) -> dict:
    """Top row: theory and Monte Carlo of K⁽ˡ⁾ for the critical C_W and its scalings."""
    c_b, c_w = crit[0], crit[1]
    scales = (1.0, *cfg.k_scales)
    theory, corrected, mean, se = [], [], [], []
    for j, f in enumerate(scales):
        theory.append(cr.kernel_recursion(activation(name), c_b, f * c_w, 1.0, cfg.k_depth))
        corrected.append(_corrected(name, c_b, f * c_w, 1.0, cfg))
        m, e = _mc_kernel(name, c_b, f * c_w, 1.0, cfg, _key(seed, ACTIVATIONS.index(name), j))
        mean.append(m)
        se.append(e)
    return {
        "theory": np.array(theory),
        "corrected": np.array(corrected),
        "mc": np.array(mean),
        "mc_se": np.array(se),
    }


def _corrected(name, c_b, c_w, k1, cfg: Kernel) -> np.ndarray:
    """K⁽ˡ⁾ + δK⁽ˡ⁾ at width ``k_width``, l = 1..k_mc_depth: the kernel with its 1/n shift
    (`vertex_recursion`'s ``K_correction``)."""
    v = cr.vertex_recursion(activation(name), c_b, c_w, k1, cfg.k_mc_depth, cfg.k_width)
    return v.K + v.K_correction


def _stability(name: str, crit: np.ndarray, cfg: Kernel, seed: int) -> dict:
    """Bottom row: GELU/Swish at criticality started below and above K*."""
    c_b, c_w, k_star = crit
    theory, corrected, mean, se = [], [], [], []
    for j, f in enumerate(cfg.k_start_factors):
        act = activation(name)
        theory.append(cr.kernel_recursion(act, c_b, c_w, f * k_star, cfg.k_stability_depth))
        corrected.append(_corrected(name, c_b, c_w, f * k_star, cfg))
        m, e = _mc_kernel(
            name, c_b, c_w, f * k_star, cfg, _key(seed, 10 + ACTIVATIONS.index(name), j)
        )
        mean.append(m)
        se.append(e)
    grid = k_star * np.linspace(0.8, 1.25, 361)
    step = np.array([_step(name, c_b, c_w, k) for k in grid])
    return {
        "flow_k": grid,
        "flow_step": step,
        "theory": np.array(theory),
        "corrected": np.array(corrected),
        "mc": np.array(mean),
        "mc_se": np.array(se),
        "stable_k": np.array(stable_fixed_point(name, c_b, c_w, grid, step)),
    }


def _step(name: str, c_b: float, c_w: float, k: float) -> float:
    """One layer's change F(K) − K of the kernel, F(K) = C_b + C_W⟨σ²⟩_K."""
    return float(np.diff(cr.kernel_recursion(activation(name), c_b, c_w, k, 2))[0])


def stable_fixed_point(name, c_b, c_w, grid, step) -> float:
    """The stable fixed point next to K* (where F(K) − K changes sign from + to −), refined by
    Brent's method; nan if the grid has none."""
    import scipy.optimize

    i = np.flatnonzero((step[:-1] > 0) & (step[1:] < 0))
    if not i.size:
        return math.nan
    i = i[0]
    return float(
        scipy.optimize.brentq(
            lambda k: _step(name, c_b, c_w, k), grid[i], grid[i + 1], xtol=1e-14, rtol=1e-14
        )
    )


def _vertex(name: str, width: int, crit: np.ndarray, cfg: Vertex, seed: int) -> dict:
    c_b, c_w = crit[0], crit[1]
    s = cr.sample_networks(
        activation(name),
        c_b,
        c_w,
        1.0,
        cfg.vx_depth,
        width,
        cfg.vx_networks,
        key=_key(seed, 20 + ACTIVATIONS.index(name), width),
    )
    r, se = cr.kurtosis_estimate(s)
    depths = np.arange(1, cfg.vx_depth + 1)
    if name == "relu":
        exact = np.array([cr.scale_invariant_kurtosis(int(d), width) - 1 for d in depths])
    else:
        exact = np.full(cfg.vx_depth, np.nan)
    lead = cr.vertex_recursion(activation(name), c_b, c_w, 1.0, cfg.vx_depth, width).normalized
    return {"excess": r - 1, "se": se, "exact": exact, "leading": lead}


def ntk_count(cfg: Ntk, width: int, depth: int) -> int:
    return int(round(cfg.ntk_networks * (1 + 3 * depth / width)))


def _ntk(width: int, depth: int, cfg: Ntk, seed: int) -> dict:
    s = cr.sample_networks(
        activation("relu"),
        0.0,
        2.0,
        1.0,
        depth,
        width,
        ntk_count(cfg, width, depth),
        key=_key(seed, 30, width, depth),
    )
    m = cr.ntk_moments_estimate(s)
    theta_inf = cr.ntk_recursion(activation("relu"), 0.0, 2.0, 1.0, depth)[-1]
    return {
        "mean_ratio": m["mean"] / theta_inf,
        "mean_ratio_se": m["mean_se"] / theta_inf,
        "log_ratio": m["log_ratio"],
        "log_ratio_se": m["log_ratio_se"],
        "leading": math.log1p(cr.scale_invariant_ntk_variance(depth, width)),
    }


def _correlation(cfg: Correlation) -> dict:
    relu = cr.correlation_flow(
        activation("relu"), 0.0, 2.0, 1.0, 1.0, cfg.corr_rho1, cfg.corr_depth
    )
    cb, cw = cfg.corr_tanh_cb, cfg.corr_tanh_cw
    fp = cr.fixed_point(activation("tanh"), cb, cw, 1.0)
    k = fp.K_star
    depth = min(cfg.corr_depth, 200)
    tanh = cr.correlation_flow(activation("tanh"), cb, cw, k, k, cfg.corr_rho1 * k, depth)
    tanh_crit = cr.correlation_flow(
        activation("tanh"), 0.0, 1.0, 1.0, 1.0, cfg.corr_rho1, cfg.corr_depth
    )
    chaos_fp = cr.fixed_point(activation("tanh"), 0.0, cfg.corr_chaos_cw, 1.0)
    kc = chaos_fp.K_star
    chaos = cr.correlation_flow(
        activation("tanh"), 0.0, cfg.corr_chaos_cw, kc, kc, cfg.corr_rho1 * kc, depth
    )
    return {
        "relu_gap": 1 - relu.rho,
        "tanh_crit_gap": 1 - tanh_crit.rho,
        "chaos_gap": 1 - chaos.rho,
        "chaos_fixed_point": np.array([kc, chaos_fp.chi_parallel, chaos_fp.chi_perpendicular]),
        "tanh_gap": 1 - tanh.rho,
        "tanh_fixed_point": np.array([k, fp.chi_parallel, fp.chi_perpendicular]),
    }


def run(cfg: Config, store) -> dict[str, np.ndarray]:
    out = dict(store.cached("critical", _critical, depends="critical-v1"))
    crit = {name: out[f"crit_{name}"] for name in ACTIVATIONS}
    kc, seed = cfg.kernel, cfg.seed
    for name in progress(ACTIVATIONS, desc="kernel"):
        fn = functools.partial(_kernel, name, crit[name], kc, seed)
        r = store.cached(f"kernel-{name}", fn, depends=(kc, seed, "dK-v1"))
        out.update({f"kernel_{name}_{k}": v for k, v in r.items()})
    for name in progress(("gelu", "swish"), desc="half-stability"):
        fn = functools.partial(_stability, name, crit[name], kc, seed)
        r = store.cached(f"stability-{name}", fn, depends=(kc, seed, "flow-v3"))
        out.update({f"stability_{name}_{k}": v for k, v in r.items()})
    vc = cfg.vertex
    units = [(name, n) for name in ("relu", "tanh") for n in vc.vx_widths]
    for name, n in progress(units, desc="vertex"):
        r = store.cached(
            f"vertex-{name}-n{n}",
            functools.partial(_vertex, name, n, crit[name], vc, seed),
            depends=(vc.vx_depth, vc.vx_networks, seed),
        )
        out.update({f"vertex_{name}_n{n}_{k}": v for k, v in r.items()})
    nc = cfg.ntk
    for n, d in progress(ntk_points(nc), desc="NTK (width, depth)"):
        r = store.cached(
            f"ntk-n{n}-L{d}",
            functools.partial(_ntk, n, d, nc, seed),
            depends=(ntk_count(nc, n, d), seed),
        )
        out.update({f"ntk_n{n}_L{d}_{k}": v for k, v in r.items()})
    out.update(
        store.cached("correlation", lambda: _correlation(cfg.correlation), depends=cfg.correlation)
    )
    return out


# ------------------------------------------------------------------------ analysis


def ntk_table(r, cfg: Config) -> dict[str, np.ndarray]:
    """The NTK points as arrays: width, depth, β and each estimate."""
    pts = ntk_points(cfg.ntk)
    keys = ("mean_ratio", "mean_ratio_se", "log_ratio", "log_ratio_se", "leading")
    out = {k: np.array([float(r[f"ntk_n{n}_L{d}_{k}"]) for n, d in pts]) for k in keys}
    out["width"] = np.array([n for n, _ in pts])
    out["depth"] = np.array([d for _, d in pts])
    out["beta"] = out["depth"] / out["width"]
    return out


def ntk_slope(t: dict[str, np.ndarray]) -> tuple[float, float, float]:
    """Weighted (1/s.e.²) least-squares line log(E[Θ²]/E[Θ]²) = a + b β: (b, s.e. of b, a)."""
    x, y, w = t["beta"], t["log_ratio"], 1 / t["log_ratio_se"] ** 2
    a = np.stack([np.ones_like(x), x], 1)
    cov = np.linalg.inv(a.T @ (w[:, None] * a))
    coef = cov @ (a.T @ (w * y))
    return float(coef[1]), float(math.sqrt(cov[1, 1])), float(coef[0])


def kernel_z(r, cfg: Config, corrected: bool = False) -> dict[str, float]:
    """max |MC − theory|/s.e. of K⁽ˡ⁾ per activation (top row, every C_W) and bottom row; with
    ``corrected``, against K + δK (the 1/n shift at the Monte Carlo width)."""
    idx = mc_depths(cfg.kernel.k_mc_depth) - 1
    out = {}
    for pre, names in (("kernel", ACTIVATIONS), ("stability", ("gelu", "swish"))):
        for name in names:
            if corrected:
                th = r[f"{pre}_{name}_corrected"][:, idx]
            else:
                th = r[f"{pre}_{name}_theory"][:, idx]
            z = np.abs(r[f"{pre}_{name}_mc"] - th) / r[f"{pre}_{name}_mc_se"]
            key = name if pre == "kernel" else f"{name}_stability"
            out[key] = float(np.max(z)) if cfg.kernel.k_networks else None
    return out


def vertex_z(r, cfg: Config, beta_max: float = math.inf) -> float:
    """max |MC − exact|/s.e. of ReLU's excess kurtosis over layers L >= 2 with L/n <= beta_max."""
    z = []
    for n in cfg.vertex.vx_widths:
        ls = np.arange(1, cfg.vertex.vx_depth + 1)
        keep = (ls >= 2) & (ls / n <= beta_max)
        d = r[f"vertex_relu_n{n}_excess"] - r[f"vertex_relu_n{n}_exact"]
        z.append(np.abs(d[keep]) / r[f"vertex_relu_n{n}_se"][keep])
    z = np.concatenate(z)
    return float(z.max()) if z.size else math.nan


def summary(r, cfg: Config) -> dict:
    t = ntk_table(r, cfg)
    slope, slope_se, icpt = ntk_slope(t)
    crit = {
        LABEL[name]: {
            "C_b": float(r[f"crit_{name}"][0]),
            "C_W": float(r[f"crit_{name}"][1]),
            "K_star": None if np.isnan(r[f"crit_{name}"][2]) else float(r[f"crit_{name}"][2]),
        }
        for name in ACTIVATIONS
    }
    k = np.arange(1, cfg.kernel.k_depth + 1)
    tanh = r["kernel_tanh_theory"][0]
    tfp = r["tanh_fixed_point"]
    gap = r["relu_gap"]
    lcorr = np.arange(1, gap.size + 1)
    return {
        "critical_points": crit,
        "kernel_max_abs_z_(MC-theory)/SE": kernel_z(r, cfg),
        "kernel_max_abs_z_(MC-(K+dK))/SE": kernel_z(r, cfg, corrected=True),
        "tanh_2lK_at_max_depth": float(2 * k[-1] * tanh[-1]),
        "gelu_swish_start_factors": list(cfg.kernel.k_start_factors),
        "gelu_swish_K_at_stability_depth_over_K_star": {
            LABEL[n]: [float(v[-1] / r[f"crit_{n}"][2]) for v in r[f"stability_{n}_theory"]]
            for n in ("gelu", "swish")
        },
        "gelu_swish_stable_fixed_point_next_to_K_star_over_K_star": {
            LABEL[n]: float(r[f"stability_{n}_stable_k"] / r[f"crit_{n}"][2])
            for n in ("gelu", "swish")
        },
        "vertex_relu_max_abs_z_(MC-exact)/SE_(L/n<=1)": vertex_z(r, cfg, 1.0),
        "vertex_relu_max_abs_z_(MC-exact)/SE_all": vertex_z(r, cfg),
        "tanh_vertex_relative_excess_(MC/leading-1)_max_per_width": {
            str(n): float(
                np.max(r[f"vertex_tanh_n{n}_excess"][1:] / r[f"vertex_tanh_n{n}_leading"][1:] - 1)
            )
            for n in cfg.vertex.vx_widths
        },
        "ntk_mean_ratio_max_abs_z_(MC-1)/SE": float(
            np.max(np.abs(t["mean_ratio"] - 1) / t["mean_ratio_se"])
        ),
        "ntk_log_ratio_max_abs_z_(MC-leading)/SE": float(
            np.max(np.abs(t["log_ratio"] - t["leading"]) / t["log_ratio_se"])
        ),
        "ntk_fitted_slope_of_log_ratio_vs_beta": slope,
        "ntk_fitted_slope_se": slope_se,
        "ntk_fitted_intercept": icpt,
        "ntk_leading_order_large_L_slope_11/3": 11 / 3,
        "relu_correlation_(1-rho)*2l^2/(9pi^2)_at_max_depth": float(
            gap[-1] * 2 * lcorr[-1] ** 2 / (9 * math.pi**2)
        ),
        "tanh_offcritical_K_star_chi_par_chi_perp": [float(x) for x in tfp],
        "tanh_offcritical_measured_factor_per_layer": float(tanh_factor(r)),
    }


def tanh_factor(r) -> float:
    """Geometric factor of 1 − ρ per layer of the off-critical tanh flow, from the last ten
    layers above 1e-10 (away from the float64 floor)."""
    g = r["tanh_gap"]
    ok = np.flatnonzero(g > 1e-10)
    i = ok[-10:]
    return float(np.exp(np.polyfit(i, np.log(g[i]), 1)[0]))


# ------------------------------------------------------------------------ plots


def _plot_kernel(r, cfg: Config, plt):
    kc = cfg.kernel
    fig = plt.figure(figsize=(15, 8), layout="constrained")
    grid = fig.add_gridspec(2, 4)
    ls = np.arange(1, kc.k_depth + 1)
    idx = mc_depths(kc.k_mc_depth)
    scales = (1.0, *kc.k_scales)
    for i, name in enumerate(ACTIVATIONS):
        ax = fig.add_subplot(grid[0, i])
        c_b, c_w = r[f"crit_{name}"][:2]
        for j, f in enumerate(scales):
            color = "k" if f == 1 else f"C{j - 1}"
            label = "critical" if f == 1 else f"C_W × {f:g}"
            label += f" (C_W = {f * c_w:.3g})"
            ax.loglog(ls, r[f"kernel_{name}_theory"][j], color=color, label=label, lw=1.3)
            lc = np.arange(1, kc.k_mc_depth + 1)
            ax.loglog(
                lc,
                r[f"kernel_{name}_corrected"][j],
                color=color,
                ls=":",
                lw=1.2,
            )
            ax.errorbar(
                idx,
                r[f"kernel_{name}_mc"][j],
                r[f"kernel_{name}_mc_se"][j],
                fmt="o",
                ms=4,
                color=color,
                mfc="white",
                capsize=2,
            )
        ax.plot([], [], color="0.4", ls=":", lw=1.2, label=f"K + δK (1/n, n = {kc.k_width})")
        if name == "tanh":
            ax.loglog(ls[2:], 1 / (2 * ls[2:]), "k--", lw=0.9, label="1/(2l)")
        ax.set_title(f"{LABEL[name]}, C_b = {c_b:.4g}", fontsize=10)
        ax.set_xlabel("layer l")
        if i == 0:
            ax.set_ylabel("K⁽ˡ⁾ (K⁽¹⁾ = 1)")
        ax.legend(fontsize=7.5, loc="best")
    for i, name in enumerate(("gelu", "swish")):
        ax = fig.add_subplot(grid[1, 2 * i])
        c_b, c_w, k_star = r[f"crit_{name}"]
        flow = fig.add_subplot(grid[1, 2 * i + 1])
        x, y = r[f"stability_{name}_flow_k"] / k_star, r[f"stability_{name}_flow_step"] / k_star
        flow.plot(x, y, color="C4")
        flow.set_yscale("symlog", linthresh=1e-9)
        flow.axhline(0, color="k", lw=0.8)
        flow.axvline(1, color="k", lw=0.8, ls="--")
        flow.set_xlabel("K / K*")
        flow.set_ylabel("(F(K) − K) / K*")
        flow.set_title(
            f"{LABEL[name]}: F(K) − K (> 0: K grows)\nsymlog; dotted: stable fixed point",
            fontsize=9,
        )
        ls2 = np.arange(1, kc.k_stability_depth + 1)
        for j, f in enumerate(kc.k_start_factors):
            color = f"C{j + 2}"
            ax.semilogx(
                ls2,
                r[f"stability_{name}_theory"][j] / k_star,
                color=color,
                label=f"K⁽¹⁾ = {f:g} K*: theory",
            )
            ax.semilogx(
                np.arange(1, kc.k_mc_depth + 1),
                r[f"stability_{name}_corrected"][j] / k_star,
                color=color,
                ls=":",
                lw=1.2,
            )
            if j == 0:
                ax.plot(
                    [], [], color="0.4", ls=":", lw=1.2, label=f"K + δK (1/n, n = {kc.k_width})"
                )
            ax.errorbar(
                idx,
                r[f"stability_{name}_mc"][j] / k_star,
                r[f"stability_{name}_mc_se"][j] / k_star,
                fmt="o",
                ms=4,
                color=color,
                mfc="white",
                capsize=2,
                label=f"Monte Carlo (K⁽¹⁾ = {f:g} K*), n = {kc.k_width}",
            )
        ax.axhline(1, color="k", lw=0.8, ls="--", label=f"K* = {k_star:.4g}")
        k2 = float(r[f"stability_{name}_stable_k"])
        flow.axvline(k2 / k_star, color="0.5", lw=0.8, ls=":")
        ax.axhline(k2 / k_star, color="0.5", lw=0.8, ls=":", label=f"stable K = {k2:.4g}")
        ax.set_xlabel("layer l")
        ax.set_ylabel("K⁽ˡ⁾ / K*")
        how = (
            "half-stable:\nattracts from above, repels below"
            if name == "gelu"
            else "half-stable:\nattracts from below, repels above"
        )
        ax.set_ylim(0.3, 3.1)
        ax.set_title(
            f"{LABEL[name]} (C_b = {c_b:.5g}, C_W = {c_w:.5g}): K* {how}",
            fontsize=9,
        )
        ax.legend(fontsize=6.5, ncol=2, loc="upper left")
    fig.suptitle(
        f"Kernel recursion K⁽ˡ⁺¹⁾ = C_b + C_W⟨σ²⟩ (lines) and Monte Carlo mean of (1/n)Σz² "
        f"(points ± 1 s.e., n = {kc.k_width}, {kc.k_networks} networks)",
        fontsize=11,
    )
    return fig


def _plot_vertex(r, cfg: Config, plt):
    vc = cfg.vertex
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    ls = np.arange(1, vc.vx_depth + 1)
    keep = ls >= 2
    for ax, name in zip(axes, ("relu", "tanh")):
        for i, n in enumerate(vc.vx_widths):
            color = f"C{i}"
            x = ls[keep] / n
            y = r[f"vertex_{name}_n{n}_excess"][keep]
            ax.errorbar(
                x,
                y,
                r[f"vertex_{name}_n{n}_se"][keep],
                fmt="o",
                ms=4,
                color=color,
                mfc="white",
                capsize=2,
                label=f"n = {n}: Monte Carlo",
            )
            if name == "relu":
                ax.plot(x, r[f"vertex_relu_n{n}_exact"][keep], color=color, lw=1.2)
            else:
                ax.plot(x, r[f"vertex_tanh_n{n}_leading"][keep], color=color, lw=1.2)
        what = "exact (1 + 5/n)^(L−1) − 1" if name == "relu" else "leading order V⁽ᴸ⁾/(nK⁽ᴸ⁾²)"
        ax.plot([], [], color="0.4", lw=1.2, label=f"solid: {what}, per width")
        beta = np.linspace(0, vc.vx_depth / min(vc.vx_widths), 200)
        if name == "relu":
            ax.plot(beta, 5 * beta, "k--", lw=0.9, label="leading order 5(L − 1)/n ≈ 5L/n")
            ax.plot(
                beta, np.expm1(5 * beta), "k:", lw=0.9, label="n → ∞ at fixed L/n: e^(5L/n) − 1"
            )
            ax.set_yscale("log")
            ax.set_title(
                "ReLU (C_W = 2): Monte Carlo on the exact finite-n curves (n = 8: L/n > 1 "
                "heavy-tailed, biased low)",
                fontsize=9,
            )
        else:
            ax.plot(beta, 2 * beta / 3, "k--", lw=0.9, label="(2/3) L/n")
            ax.set_title(
                "tanh (C_W = 1): Monte Carlo above the leading order by the next order, O((L/n)²)",
                fontsize=9,
            )
        ax.set_xlabel("L / n")
        ax.set_ylabel("excess kurtosis E[z⁴]/(3E[z²]²) − 1 of layer L")
        ax.legend(fontsize=7.5)
    fig.suptitle(
        "Finite-width non-Gaussianity: a function of L/n at leading order and as n → ∞ "
        f"({vc.vx_networks} networks per width, L = 2..{vc.vx_depth}, ± 1 s.e.)",
        fontsize=11,
    )
    return fig


def _plot_ntk(r, cfg: Config, plt):
    t = ntk_table(r, cfg)
    slope, slope_se, icpt = ntk_slope(t)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    for i, n in enumerate(cfg.ntk.ntk_widths):
        sel = t["width"] == n
        if not np.any(sel):
            continue
        color = f"C{i}"
        kw = dict(fmt="o", ms=4, color=color, mfc="white", capsize=2, label=f"n = {n}")
        axes[0].errorbar(t["beta"][sel], t["mean_ratio"][sel], t["mean_ratio_se"][sel], **kw)
        axes[1].errorbar(t["beta"][sel], t["log_ratio"][sel], t["log_ratio_se"][sel], **kw)
        ds = np.arange(1, t["depth"][sel].max() + 1)
        lead = [math.log1p(cr.scale_invariant_ntk_variance(int(d), n)) for d in ds]
        axes[1].plot(ds / n, lead, color=color, lw=1.1)
    axes[1].plot([], [], color="0.4", lw=1.1, label="solid: leading order log(1 + Var/E²), per n")
    axes[0].axhline(1, color="k", lw=0.9, ls="--", label="exact: 1 at every width")
    axes[0].set_xlabel("β = L / n")
    axes[0].set_ylabel("E[Θ] / Θ_∞,  Θ_∞ = (L + 1) K⁽¹⁾")
    axes[0].set_title("ReLU at criticality: the mean NTK is the infinite-width one", fontsize=10)
    axes[0].legend(fontsize=7.5)
    b = np.linspace(0, t["beta"].max() * 1.05, 100)
    axes[1].plot(b, 5 * b, "k--", lw=0.9, label="slope 5 (Hanin & Nica: e^(5β))")
    axes[1].plot(b, 11 * b / 3, "k-.", lw=0.9, label="slope 11/3 (1/n expansion, L ≫ 1)")
    axes[1].plot(
        b,
        icpt + slope * b,
        color="0.4",
        lw=0.9,
        ls=":",
        label=f"fit to Monte Carlo: slope {slope:.2f} ± {slope_se:.2f}",
    )
    axes[1].set_xlabel("β = L / n")
    axes[1].set_ylabel("log(E[Θ²] / E[Θ]²)")
    axes[1].set_title(
        "NTK fluctuations against β: Monte Carlo, 1/n expansion, Hanin & Nica", fontsize=10
    )
    axes[1].legend(fontsize=7.5)
    fig.suptitle(
        f"ReLU NTK Θ(x, x) at C_W = 2, C_b = 0 ({cfg.ntk.ntk_networks}·(1 + 3β) networks per "
        "point, ± 1 s.e.)",
        fontsize=11,
    )
    return fig


def _plot_correlation(r, cfg: Config, plt):
    cc = cfg.correlation
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    g = r["relu_gap"]
    ls = np.arange(1, g.size + 1)
    axes[0].loglog(ls, g, color="C0", label=f"ReLU, C_W = 2, ρ⁽¹⁾ = {cc.corr_rho1:g}")
    axes[0].loglog(ls[4:], 9 * math.pi**2 / (2 * ls[4:] ** 2), "k--", lw=0.9, label="9π²/(2l²)")
    gt = r["tanh_crit_gap"]
    lt = np.arange(1, gt.size + 1)
    slope_t = np.polyfit(np.log(lt[gt.size // 2 :]), np.log(gt[gt.size // 2 :]), 1)[0]
    axes[0].loglog(
        lt,
        gt,
        color="C1",
        label=f"tanh, C_W = 1, K⁽¹⁾ = 1 (K → 0): log-log slope {slope_t:.2f} over l > 500",
    )
    axes[0].set_xlabel("layer l")
    axes[0].set_ylabel("1 − ρ⁽ˡ⁾")
    axes[0].set_title(
        "at criticality: ReLU a power law; tanh (K* = 0 class) levels off", fontsize=10
    )
    axes[0].legend(fontsize=8)
    g = r["tanh_gap"]
    ok = g > 1e-13
    ls = np.arange(1, g.size + 1)
    k_star, _, chi = r["tanh_fixed_point"]
    axes[1].semilogy(
        ls[ok],
        g[ok],
        color="C1",
        label=f"tanh, C_b = {cc.corr_tanh_cb:g}, C_W = {cc.corr_tanh_cw:g}, "
        f"K⁽¹⁾ = K* = {k_star:.3g}",
    )
    axes[1].semilogy(
        ls[ok], g[0] * chi ** (ls[ok] - 1), "k--", lw=0.9, label=f"χ_⊥(K*)^(l−1), χ_⊥ = {chi:.3f}"
    )
    gc = r["chaos_gap"]
    kcs, _, chic = r["chaos_fixed_point"]
    lc = np.arange(1, gc.size + 1)
    axes[1].semilogy(
        lc[: ok.sum() + 20],
        gc[: ok.sum() + 20],
        color="C3",
        label=f"tanh, C_b = 0, C_W = {cc.corr_chaos_cw:g} (chaotic: χ_⊥(K*) = {chic:.3f} > 1): "
        f"ρ → ρ* = {1 - gc[-1]:.3f}",
    )
    axes[1].set_xlabel("layer l")
    axes[1].set_ylabel("1 − ρ⁽ˡ⁾")
    axes[1].set_title(
        f"off criticality: ordered, geometric (factor {tanh_factor(r):.3f}/layer, to float64 "
        "roundoff); chaotic, ρ → ρ* < 1",
        fontsize=10,
    )
    axes[1].legend(fontsize=8)
    fig.suptitle("Two inputs: how their correlation ρ⁽ˡ⁾ approaches its fixed point", fontsize=11)
    return fig


def plot(r, cfg: Config) -> dict:
    plt = pyplot()
    return {
        "criticality_kernel": _plot_kernel(r, cfg, plt),
        "criticality_vertex": _plot_vertex(r, cfg, plt),
        "criticality_ntk": _plot_ntk(r, cfg, plt),
        "criticality_correlation": _plot_correlation(r, cfg, plt),
    }


def main(argv=None):
    return run_experiment(NAME, Config, QUICK, run, plot, argv, doc=__doc__, summary=summary)


if __name__ == "__main__":
    main()
