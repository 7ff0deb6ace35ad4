"""experiments.attention: the pieces on a tiny config, the Match3 embedding, the cost exponent."""

from __future__ import annotations

import math

import numpy as np
import pytest

import experiments._common as common
from experiments import attention

TINY = dict(
    degree=dict(deg_b_max=2.0),
    error=dict(err_degrees=(2, 6), err_n=8, err_draws=1, err_b_max=2.5),
    runtime=dict(rt_exact_ns=(16, 32, 64), rt_poly_ns=(16, 32, 64), rt_repeats=1),
    match3=dict(m3_n=16, m3_queries=3, m3_degrees=(4,), m3_modulus=17),
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = common.with_overrides(attention.Config(), TINY)
    store = common.ResultStore("attention", "tiny", cfg, root=tmp_path_factory.mktemp("results"))
    return cfg, attention.run(cfg, store)


@pytest.mark.slow  # the tiny run (fixture) costs 12 s; CI's slow suite runs it
def test_tiny_run_shows_the_trade_off(tiny):
    cfg, r = tiny
    # the certified degree grows with B, faster for tensor (B³) than matrix (B²) scores
    g_m, g_t = r["deg_matrix_degree"], r["deg_tensor_degree"]
    big = r["deg_b"] >= 1  # B³ ≥ B² from B = 1 on
    assert np.all(np.diff(g_t) >= 0) and np.all(g_t[big] >= g_m[big]) and g_t[-1] > g_t[0]
    # float32 reaches ε = 1e-3 at B = 1 (tensor: R = 1) but not at B = 2 (R = 8)
    b = r["deg_b"]
    assert r["deg_tensor_f32_ok"][np.argmin(np.abs(b - 1.0))]
    assert not r["deg_tensor_f32_ok"][np.argmin(np.abs(b - 2.0))]
    # measured error within the certified bound (plus float64 roundoff of outputs of order
    # B²: 1e-14) wherever the bound is below 1
    ok = r["err_bound"] < 1
    assert np.all(r["err_max"][ok] <= r["err_bound"][ok] + 1e-14)
    # and at the largest B the low degree fails badly (the blow-up)
    assert r["err_max"][0, -1] > 1e-2
    # Match3: the exact mass on matching pairs rises from ~matches/n² to most of the mass
    m = r["m3_exact"].mean(0)
    assert m[0] < 0.5 < m[-1]


@pytest.mark.slow  # the tiny run (fixture) costs 12 s; CI's slow suite runs it
def test_plot_and_summary(tiny):
    cfg, r = tiny
    figs = attention.plot(r, cfg)
    assert set(figs) == {
        "attention_degree",
        "attention_error",
        "attention_runtime",
        "attention_match3",
    }
    s = attention.summary(r, cfg)
    assert s["poly_rank"] == math.comb(8 + s["poly_degree"], s["poly_degree"])
    assert set(s["cb_where_exponent_crosses_3"]) == {"1e+03", "1e+06", "1e+12", "1e+24", "1e+96"}


def test_match3_embedding_scores():
    """⟨q_i, k1_j1 ∘ k2_j2⟩ = b³ Σ_f cos(2πf s/M): b³ F at a match, −b³/2 otherwise; entries
    within b."""
    m, b = 13, 1.7
    x = np.array([3, 5, 5, 0, 12])
    q, k1, k2 = attention.match3_embed(x, m, b)
    assert np.max(np.abs(np.concatenate([q, k1, k2]))) <= b + 1e-12
    scores = np.einsum("l,al,bl->ab", q[0], k1, k2)
    s = (x[0] + x[:, None] + x[None, :]) % m
    f = (m - 1) // 2
    np.testing.assert_allclose(scores, np.where(s == 0, b**3 * f, -(b**3) / 2), atol=1e-9)


def test_cost_exponent():
    # small C_b: far below the naive exponent 3; large C_b: above it; monotone in between
    e = [attention.cost_exponent(1e12, c) for c in (0.1, 0.5, 0.8, 1.2)]
    assert e[0] < 2 < 3 < e[-1] and all(a <= b for a, b in zip(e, e[1:]))


def test_cli_rejects_an_even_modulus():
    with pytest.raises(SystemExit) as exc:
        attention.main(["--m3-modulus", "10"])
    assert exc.value.code == 2
