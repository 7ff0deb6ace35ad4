"""Tensor attention and the polynomial method: the bounded-entry trade-off (Alman & Song).

Alman & Song (ICLR 2024) prove an n^(1+o(1)) algorithm for tensor attention when every entry of
Q, K1, K2, V1, V2 is bounded by B = o((log n)^(1/3)) (replace exp by a low-degree polynomial and
factor it), and that for B = Ω((log n)^(1/3)) no algorithm beats n^(3−o(1)) under SETH. The
paper has no experiments; these figures make the trade-off visible with
`theory.attention` (paper_figs/attention_*.png/.pdf):

- attention_degree: the degree g and rank r = C(d + g, g) the certified polynomial needs for
  ε = 1e-3 against B, matrix (scores in [−B², B²]) and tensor (in [−B³, B³]) attention, d = 8;
  where float32 cannot reach ε at all (roundoff u·e^(2R) > ε/10) is shaded;
- attention_error: ‖poly − exact‖∞ of tensor attention at fixed degrees against B (float64),
  beside the certified bound: the sharp blow-up past the bounded regime;
- attention_runtime: time against n (log-log) of exact blocked tensor attention (slope 3), the
  polynomial method (slope ≈ 1) and exact matrix attention (slope 2), the crossover marked; and
  the cost exponent log_n(n·r·d) of the polynomial method against C_b for B = C_b (ln n)^(1/3),
  d = ⌈ln n⌉, ε = 1/n, crossing 3 (the naive exponent) at a finite C_b for every n;
- attention_match3: a planted-triple task (Sanford, Hsu & Telgarsky's Match3 flavour): a token
  whose value x_i satisfies x_i + x_j1 + x_j2 ≡ 0 (mod M) for one planted pair; with
  Fourier embeddings of norm B per coordinate the score of a pair is B³ cos(2π(x_i + x_j1 +
  x_j2)/M)/d, so tensor attention puts its mass on the planted pair only once
  B³/d ≳ ln(n²) — exactly where the polynomial method needs large degree. Exact against
  polynomial (fixed degrees) mass on the planted pair, against B.

    python -m experiments.attention [--quick] [--flags]   (--help lists them)
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np

from experiments._common import ConfigBase, Interval, Positive, progress, pyplot, run_experiment
from theory import attention as ta
from theory.attention.poly import (
    certified_degree,
    exp_polynomial,
)

NAME = "attention"


# ------------------------------------------------------------------------ config


@dataclass(frozen=True)
class Degree(ConfigBase):
    """attention_degree: degree and rank for a target accuracy"""

    deg_eps: Annotated[float, Interval(gt=0, lt=1)] = 1e-3
    """relative accuracy ε asked of the polynomial"""
    deg_d: Annotated[int, Positive] = 8
    """head dimension d of the rank C(d + g, g)"""
    deg_b_max: Annotated[float, Positive] = 3.0
    """largest entry bound B drawn"""


@dataclass(frozen=True)
class Error(ConfigBase):
    """attention_error: error at fixed degree against B"""

    err_degrees: Annotated[tuple[int, ...], Interval(ge=1)] = (2, 4, 8, 12)
    """polynomial degrees g"""
    err_n: Annotated[int, Interval(ge=2)] = 48
    """tokens n (exact tensor attention in float64: n³ scores)"""
    err_d: Annotated[int, Positive] = 4
    """head dimension d"""
    err_draws: Annotated[int, Positive] = 5
    """random draws per B (the maximum error over draws is drawn)"""
    err_b_max: Annotated[float, Positive] = 3.0
    """largest B"""


@dataclass(frozen=True)
class Runtime(ConfigBase):
    """attention_runtime: time against n, and the asymptotic cost exponent"""

    rt_exact_ns: Annotated[tuple[int, ...], Interval(ge=8)] = (32, 64, 128, 256, 512, 1024, 2048)
    """n of exact tensor attention (n³ scores)"""
    rt_poly_ns: Annotated[tuple[int, ...], Interval(ge=8)] = (
        32,
        64,
        128,
        256,
        512,
        1024,
        2048,
        4096,
        8192,
        16384,
    )
    """n of the polynomial method and of exact matrix attention"""
    rt_d: Annotated[int, Positive] = 8
    """head dimension d"""
    rt_eps: Annotated[float, Interval(gt=0, lt=1)] = 1e-3
    """accuracy of the polynomial method (B = 1: scores in [−1, 1])"""
    rt_repeats: Annotated[int, Positive] = 3
    """timed calls per point (median; after one warm-up call)"""


@dataclass(frozen=True)
class Match3(ConfigBase):
    """attention_match3: mass on a planted triple"""

    m3_n: Annotated[int, Interval(ge=4)] = 64
    """tokens n (n² key pairs)"""
    m3_modulus: Annotated[int, Interval(ge=3)] = 101
    """M (odd): values x_j are residues mod M; d = 2(M − 1) embedding coordinates"""
    m3_queries: Annotated[int, Positive] = 40
    """planted instances averaged"""
    m3_degrees: Annotated[tuple[int, ...], Interval(ge=1)] = (4, 8, 16)
    """degrees of the polynomial method compared with exact attention"""
    m3_b_max: Annotated[float, Positive] = 4.0
    """largest B"""


@dataclass(frozen=True)
class Config(ConfigBase):
    degree: Degree = field(default_factory=Degree)
    error: Error = field(default_factory=Error)
    runtime: Runtime = field(default_factory=Runtime)
    match3: Match3 = field(default_factory=Match3)
    seed: Annotated[int, Interval(ge=0)] = 0
    """seed of every random draw"""

    def check(self):
        if self.match3.m3_modulus % 2 == 0:
            raise ValueError(f"--m3-modulus must be odd, got {self.match3.m3_modulus}")


QUICK = dict(
    error=dict(err_degrees=(2, 6), err_n=16, err_draws=2),
    runtime=dict(rt_exact_ns=(32, 64, 128), rt_poly_ns=(32, 128, 512), rt_repeats=1),
    match3=dict(m3_n=24, m3_queries=6, m3_degrees=(4, 8), m3_modulus=31),
)


# ------------------------------------------------------------------------ computation


def _b_grid(b_max: float, n: int = 40) -> np.ndarray:
    return np.linspace(b_max / n, b_max, n)


def _degree(cfg: Degree) -> dict:
    bs = _b_grid(cfg.deg_b_max, 60)
    out = {"deg_b": bs}
    for name, order in (("matrix", 2), ("tensor", 3)):
        g = np.array([ta.degree_for(b, cfg.deg_eps, order=order) for b in bs])
        out[f"deg_{name}_degree"] = g
        out[f"deg_{name}_rank"] = np.array([ta.rank(cfg.deg_d, int(x)) for x in g], float)
        floor = np.array([ta.roundoff_floor(b**order, jnp.float32) for b in bs])
        out[f"deg_{name}_f32_ok"] = 10 * floor <= cfg.deg_eps
    return out


def _draw(rng, n, d, b, count=5):
    return [rng.uniform(-b, b, size=(n, d)) for _ in range(count)]


def _error(cfg: Error, seed: int) -> dict:
    bs = _b_grid(cfg.err_b_max, 30)
    rng = np.random.default_rng(seed)
    err = np.zeros((len(cfg.err_degrees), len(bs)))
    bound = np.zeros_like(err)
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # negative denominators: measured
        for j, b in enumerate(progress(bs, desc="error vs B")):
            for _ in range(cfg.err_draws):
                q, k1, k2, v1, v2 = _draw(rng, cfg.err_n, cfg.err_d, b)
                exact = np.asarray(ta.tensor_attention(q, k1, k2, v1, v2))
                for i, g in enumerate(cfg.err_degrees):
                    out, info = ta.poly_tensor_attention(
                        q, k1, k2, v1, v2, degree=g, return_info=True
                    )
                    e = np.max(np.abs(np.asarray(out) - exact))
                    err[i, j] = max(err[i, j], e if np.isfinite(e) else np.inf)
                    bound[i, j] = max(bound[i, j], info.output_bound)
    return {"err_b": bs, "err_max": err, "err_bound": bound}


def _time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _runtime(cfg: Runtime, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    d = cfg.rt_d

    def inputs(n):
        return [jnp.asarray(a, jnp.float32) for a in _draw(rng, n, d, 1.0)]

    exact = []
    for n in progress(cfg.rt_exact_ns, desc="exact tensor"):
        xs = inputs(n)
        exact.append(_time(lambda xs=xs: ta.tensor_attention(*xs), cfg.rt_repeats))
    poly, matrix = [], []
    for n in progress(cfg.rt_poly_ns, desc="poly, matrix"):
        xs = inputs(n)
        poly.append(
            _time(lambda xs=xs: ta.poly_tensor_attention(*xs, eps=cfg.rt_eps), cfg.rt_repeats)
        )
        q, k, _, v, _ = xs
        matrix.append(_time(lambda q=q, k=k, v=v: ta.softmax_attention(q, k, v), cfg.rt_repeats))
    _, info = ta.poly_tensor_attention(*inputs(64), eps=cfg.rt_eps, return_info=True)
    return {
        "rt_exact_n": np.array(cfg.rt_exact_ns),
        "rt_exact_s": np.array(exact),
        "rt_poly_n": np.array(cfg.rt_poly_ns),
        "rt_poly_s": np.array(poly),
        "rt_matrix_s": np.array(matrix),
        "rt_poly_degree": np.array(info.degree),
        "rt_poly_rank": np.array(info.rank),
    }


def cost_exponent(n: float, c_b: float) -> float:
    """log_n(n · r · d) of the polynomial method at B = c_b (ln n)^(1/3), d = ⌈ln n⌉, ε = 1/n:
    the scores lie in [−B³, B³] = [−c_b³ ln n, c_b³ ln n] (scale 1/d), g is the certified
    degree and r = C(d + g, g)."""
    ln_n = math.log(n)
    d = math.ceil(ln_n)
    g = certified_degree(c_b**3 * ln_n, 1 / n)[0]
    log_r = math.lgamma(d + g + 1) - math.lgamma(d + 1) - math.lgamma(g + 1)
    return 1 + (log_r + math.log(d)) / ln_n


def _exponents() -> dict:
    cbs = np.linspace(0.05, 1.5, 59)
    ns = np.array([1e3, 1e6, 1e12, 1e24, 1e96])
    return {
        "exp_cb": cbs,
        "exp_n": ns,
        "exp_value": np.array([[cost_exponent(n, c) for c in cbs] for n in ns]),
    }


def match3_embed(x, modulus: int, b: float):
    """Embeddings with ⟨q_i, k1_j1 ∘ k2_j2⟩ = b³ Σ_{f=1}^{F} cos(2πf (x_i + x_j1 + x_j2)/M),
    F = (M − 1)/2, d = 4F; every entry within b.

    Per frequency f, with a = e^(iθ_i), β = e^(iθ_j1), γ = e^(iθ_j2) (θ = 2πf x/M):
    Re(aβγ) = a_r β_r γ_r − a_r β_i γ_i − a_i β_r γ_i − a_i β_i γ_r, four triple products:
    q = b(a_r, −a_r, −a_i, −a_i), k1 = b(β_r, β_i, β_r, β_i), k2 = b(γ_r, γ_i, γ_i, γ_r).
    For M odd, Σ_{f ≤ F} cos(2πf s/M) is F at s ≡ 0 and −1/2 otherwise.
    """
    f = np.arange(1, (modulus - 1) // 2 + 1)
    th = 2 * np.pi * np.outer(np.asarray(x), f) / modulus  # (n, F)
    c, s = np.cos(th), np.sin(th)
    q = b * np.concatenate([c, -c, -s, -s], axis=1)
    k1 = b * np.concatenate([c, s, c, s], axis=1)
    k2 = b * np.concatenate([c, s, s, c], axis=1)
    return q, k1, k2


def _match3(cfg: Match3, seed: int) -> dict:
    """Mass of tensor attention (query: token 0) on the key pairs that complete a match, for
    exact attention and for the degree-g Taylor polynomial P applied to the same scores (the
    factorisation U0 (U1 ⊘ U2)ᵀ = P(scores) is exact, so this is the polynomial method's
    attention matrix)."""
    rng = np.random.default_rng(seed)
    bs = _b_grid(cfg.m3_b_max, 40)
    exact = np.zeros((cfg.m3_queries, len(bs)))
    poly = np.zeros((len(cfg.m3_degrees), cfg.m3_queries, len(bs)))
    matches = np.zeros(cfg.m3_queries)
    m, n = cfg.m3_modulus, cfg.m3_n
    for t in progress(range(cfg.m3_queries), desc="match3"):
        x = rng.integers(0, m, size=n)
        j1, j2 = rng.choice(np.arange(1, n), size=2, replace=False)
        x[0] = (-(x[j1] + x[j2])) % m  # token 0 is the query; (j1, j2) a planted pair
        hit = (x[0] + x[:, None] + x[None, :]) % m == 0
        matches[t] = hit.sum()
        q, k1, k2 = match3_embed(x, m, 1.0)
        base = np.einsum("l,al,bl->ab", q[0], k1, k2) / q.shape[1]  # scores at B = 1
        for j, b in enumerate(bs):
            x3 = b**3 * base  # every entry scales by B: scores by B³
            w = np.exp(x3 - x3.max())
            exact[t, j] = w[hit].sum() / w.sum()
            for i, g in enumerate(cfg.m3_degrees):
                p = np.polynomial.polynomial.polyval(x3, exp_polynomial(1.0, degree=g).coeffs)
                poly[i, t, j] = p[hit].sum() / p.sum()
    return {"m3_b": bs, "m3_exact": exact, "m3_poly": poly, "m3_matches": matches}


def run(cfg: Config, store) -> dict[str, np.ndarray]:
    out = {}
    out.update(store.cached("degree", lambda: _degree(cfg.degree), depends=cfg.degree))
    out.update(
        store.cached("error", lambda: _error(cfg.error, cfg.seed), depends=(cfg.error, cfg.seed))
    )
    out.update(
        store.cached(
            "runtime", lambda: _runtime(cfg.runtime, cfg.seed), depends=(cfg.runtime, cfg.seed)
        )
    )
    out.update(store.cached("exponents", _exponents, depends="v2"))
    out.update(
        store.cached(
            "match3", lambda: _match3(cfg.match3, cfg.seed), depends=(cfg.match3, cfg.seed)
        )
    )
    return out


# ------------------------------------------------------------------------ analysis


def fitted_slope(ns, ts, last: int = 3) -> float:
    """Least-squares slope of log t on log n over the ``last`` largest sizes."""
    ns, ts = np.asarray(ns, float)[-last:], np.asarray(ts, float)[-last:]
    return float(np.polyfit(np.log(ns), np.log(ts), 1)[0])


def crossover(r) -> float:
    """The measured n from which the polynomial method is faster than exact tensor attention:
    the last crossing of the two measured curves (log-log interpolation between the sizes
    timed for both); nan if it never becomes faster."""
    ns = np.intersect1d(r["rt_exact_n"], r["rt_poly_n"])
    te = np.interp(ns, r["rt_exact_n"], r["rt_exact_s"])
    tp = np.interp(ns, r["rt_poly_n"], r["rt_poly_s"])
    diff = np.log(tp) - np.log(te)  # < 0: poly faster
    if diff[-1] >= 0:
        return math.nan
    slower = np.nonzero(diff >= 0)[0]
    if not len(slower):
        return float(ns[0])
    i = slower[-1]
    t = diff[i] / (diff[i] - diff[i + 1])
    return float(np.exp(np.log(ns[i]) + t * (np.log(ns[i + 1]) - np.log(ns[i]))))


def match3_threshold(r, cfg: Config) -> float:
    """B where the matching pairs' weight e^(B³/4) × matches equals the n² others' (≈ 1 each):
    (4 ln(n²/matches))^(1/3), matches averaged over the instances."""
    return (4 * math.log(cfg.match3.m3_n**2 / r["m3_matches"].mean())) ** (1 / 3)


def summary(r, cfg: Config) -> dict:
    b_threshold = match3_threshold(r, cfg)
    return {
        "exact_slope": fitted_slope(r["rt_exact_n"], r["rt_exact_s"]),
        "poly_slope": fitted_slope(r["rt_poly_n"], r["rt_poly_s"]),
        "matrix_slope": fitted_slope(r["rt_poly_n"], r["rt_matrix_s"]),
        "crossover_n": crossover(r),
        "poly_degree": int(r["rt_poly_degree"]),
        "poly_rank": int(r["rt_poly_rank"]),
        "tensor_degree_at_B": {
            f"{b:.2f}": int(g) for b, g in zip(r["deg_b"][9::10], r["deg_tensor_degree"][9::10])
        },
        "match3_B_where_exact_mass_exceeds_half": float(
            r["m3_b"][np.argmax(r["m3_exact"].mean(0) > 0.5)]
        ),
        "match3_B_threshold_(4 ln(n^2/matches))^(1/3)": b_threshold,
        "match3_mean_matching_pairs": float(r["m3_matches"].mean()),
        "cb_where_exponent_crosses_3": {
            f"{n:.0e}": float(r["exp_cb"][np.argmax(v > 3)]) if np.any(v > 3) else None
            for n, v in zip(r["exp_n"], r["exp_value"])
        },
    }


# ------------------------------------------------------------------------ plots


def plot(r, cfg: Config) -> dict:
    plt = pyplot()
    figs = {}

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for name, style in (("matrix", "C0"), ("tensor", "C3")):
        b, g = r["deg_b"], r["deg_" + name + "_degree"]
        ok = r["deg_" + name + "_f32_ok"]
        label = "matrix: scores in [−B², B²]" if name == "matrix" else "tensor: [−B³, B³]"
        axes[0].plot(b, g, color=style, label=label)
        axes[1].semilogy(b, r["deg_" + name + "_rank"], color=style, label=label)
        if np.any(~ok):
            b0 = b[np.argmax(~ok)]
            for ax in axes:
                ax.axvline(b0, color=style, ls=":", lw=1)
    axes[0].set_xlabel("entry bound B")
    axes[0].set_ylabel(f"certified degree g for ε = {cfg.degree.deg_eps:g}")
    axes[1].set_xlabel("entry bound B")
    axes[1].set_ylabel(f"rank r = C(d + g, g), d = {cfg.degree.deg_d}")
    axes[0].legend(fontsize=8)
    axes[1].set_title("dotted: beyond it float32 cannot reach ε (roundoff u·e^(2R) > ε/10)")
    fig.suptitle("The polynomial method: degree and rank against the entry bound B", fontsize=10)
    figs["attention_degree"] = fig

    fig, ax = plt.subplots(figsize=(6.5, 4.5), layout="constrained")
    for i, g in enumerate(cfg.error.err_degrees):
        color = f"C{i}"
        ax.semilogy(r["err_b"], r["err_max"][i], color=color, label=f"degree {g}: measured")
        ax.semilogy(r["err_b"], r["err_bound"][i], color=color, ls="--", lw=0.8)
    ax.set_ylim(1e-17, 1e3)
    bc = ta.critical_bound(cfg.error.err_n, 3)
    ax.axvline(bc, color="0.4", ls=":")
    ax.annotate(
        f"(ln n)^(1/3) = {bc:.2f}",
        (bc, 1e-16),
        fontsize=8,
        xytext=(3, 0),
        textcoords="offset points",
    )
    ax.set_xlabel("entry bound B (Q, K1, K2, V1, V2 ~ U[−B, B])")
    ax.set_ylabel("max |poly − exact| (float64)")
    ax.set_title(
        f"tensor attention, n = {cfg.error.err_n}, d = {cfg.error.err_d}; dashed: certified bound",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    figs["attention_error"] = fig

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    ax = axes[0]
    se, sp, sm = (
        fitted_slope(r["rt_exact_n"], r["rt_exact_s"]),
        fitted_slope(r["rt_poly_n"], r["rt_poly_s"]),
        fitted_slope(r["rt_poly_n"], r["rt_matrix_s"]),
    )
    ax.loglog(
        r["rt_exact_n"], r["rt_exact_s"], "o-", color="C3", label=f"exact tensor (slope {se:.2f})"
    )
    ax.loglog(
        r["rt_poly_n"],
        r["rt_poly_s"],
        "s-",
        color="C0",
        label=f"poly tensor, degree {int(r['rt_poly_degree'])}, rank {int(r['rt_poly_rank'])} "
        f"(slope {sp:.2f})",
    )
    ax.loglog(
        r["rt_poly_n"], r["rt_matrix_s"], "^-", color="C2", label=f"exact matrix (slope {sm:.2f})"
    )
    nc = crossover(r)
    ax.axvline(nc, color="0.5", ls=":")
    ax.annotate(f"poly faster from n ≈ {nc:.0f}", (nc, ax.get_ylim()[1]), fontsize=8, va="top")
    ax.set_xlabel("n")
    ax.set_ylabel("seconds (2 CPU cores)")
    ax.set_title(f"B = 1, d = {cfg.runtime.rt_d}, ε = {cfg.runtime.rt_eps:g}", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[1]
    for i, n in enumerate(r["exp_n"]):
        ax.plot(r["exp_cb"], r["exp_value"][i], color=f"C{i}", label=f"n = {n:.0e}")
    ax.axhline(3, color="k", lw=0.8, ls="--")
    ax.axhline(1, color="k", lw=0.5, ls=":")
    ax.set_ylim(0.9, 6)
    ax.set_xlabel("C_b, with B = C_b (ln n)^(1/3)")
    ax.set_ylabel("cost exponent log_n(n · r · d)")
    ax.set_title("d = ⌈ln n⌉, ε = 1/n: the exponent crosses 3 (naive) at a finite C_b", fontsize=9)
    ax.legend(fontsize=8)
    figs["attention_runtime"] = fig

    fig, ax = plt.subplots(figsize=(6.5, 4.5), layout="constrained")
    b = r["m3_b"]
    for i, g in enumerate(cfg.match3.m3_degrees):
        m = r["m3_poly"][i].mean(0)
        ax.plot(b, m, color=f"C{i}", lw=2.5, label=f"polynomial, degree {g}")
    ax.plot(
        b,
        r["m3_exact"].mean(0),
        color="k",
        lw=1.2,
        ls="--",
        label="exact tensor attention",
        zorder=5,
    )
    n = cfg.match3.m3_n
    bt = match3_threshold(r, cfg)
    ax.axvline(bt, color="0.5", ls=":")
    ax.annotate("B³/4 = ln(n²/matches)", (bt, 0.02), fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("entry bound B")
    ax.set_ylabel("attention mass on the planted pair(s)")
    ax.set_title(
        f"Match3: n = {n} tokens, values mod {cfg.match3.m3_modulus}, "
        f"{cfg.match3.m3_queries} instances",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    figs["attention_match3"] = fig
    return figs


def main(argv=None):
    return run_experiment(NAME, Config, QUICK, run, plot, argv, doc=__doc__, summary=summary)


if __name__ == "__main__":
    main()
