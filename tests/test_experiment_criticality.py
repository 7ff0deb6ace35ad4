"""experiments.criticality at the --quick settings: the figures' claims, within Monte Carlo
standard errors, the plots and summary, the CLI.

One quick run (module fixture, ~30 s on 2 cores, most of it compiling one sampler per
setting) feeds every check; ``main(["--quick"])`` then reuses its cached pieces. The checks
that need that run are in the slow suite (the default suite keeps the theory's own tests in
tests/test_criticality.py, the Monte Carlo kernel check and the CLI's refusals here).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import experiments._common as common
from experiments import criticality as crit

RUN = "quick"
# Monte Carlo tolerance: |estimate − exact| <= Z standard errors. With a fixed seed each check
# is one draw; a standard normal exceeds 4 with probability 6e-5 per comparison.
Z = 4.0


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("criticality_results")


@pytest.fixture(scope="module")
def cfg():
    return common.with_overrides(crit.Config(), crit.QUICK)


@pytest.fixture(scope="module")
def res(cfg, root):
    return crit.run(cfg, common.ResultStore(crit.NAME, RUN, cfg, root=root))


@pytest.mark.slow
def test_critical_points(res):
    np.testing.assert_allclose(res["crit_relu"][:2], [0, 2], atol=1e-12)
    assert np.isnan(res["crit_relu"][2])  # every K is a fixed point
    np.testing.assert_allclose(res["crit_tanh"], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(res["crit_gelu"], [0.17292, 1.98306, 3.5616], atol=1e-4)
    np.testing.assert_allclose(res["crit_swish"], [0.55514, 1.98800, 14.320], atol=1e-3)


@pytest.mark.slow
def test_kernel_theory(res, cfg):
    ls = np.arange(1, cfg.kernel.k_depth + 1)
    relu = res["kernel_relu_theory"]
    np.testing.assert_allclose(relu[0], 1, rtol=1e-12)  # critical: K⁽ˡ⁾ = K⁽¹⁾
    for j, f in enumerate(cfg.kernel.k_scales, start=1):  # off: (C_W/2)^(l−1)
        np.testing.assert_allclose(relu[j], f ** (ls - 1), rtol=1e-10)
    # tanh at criticality: K⁽ˡ⁾ ≈ 1/(2l); the relative gap closes like log(l)/l
    two_l_k = 2 * ls * res["kernel_tanh_theory"][0]
    assert abs(two_l_k[-1] - 1) < 0.15 and abs(two_l_k[-1] - 1) < abs(two_l_k[9] - 1)
    # tanh: C_W × 0.8 vanishes, C_W × 1.25 goes to a fixed point K* > 0
    assert res["kernel_tanh_theory"][1, -1] < 1e-3 < res["kernel_tanh_theory"][2, -1]


@pytest.mark.slow
def test_half_stability(res):
    """K* is a double root of F(K) − K: GELU's F − K < 0 on both sides, a stable fixed point
    below (≈ 0.85 K*); Swish's > 0 on both sides, a stable fixed point just above (≈ 1.02 K*)."""
    for name, side in (("gelu", -1), ("swish", 1)):
        k_star = res[f"crit_{name}"][2]
        x = res[f"stability_{name}_flow_k"] / k_star
        step = res[f"stability_{name}_flow_step"]
        near = (np.abs(x - 1) > 1e-3) & (np.abs(x - 1) < 0.01)
        assert np.all(np.sign(step[near]) == side), name
        stable = float(res[f"stability_{name}_stable_k"]) / k_star
        if name == "gelu":
            assert 0.8 < stable < 0.9
        else:
            assert 1.0 < stable < 1.05
        # trajectories: the attracted side moves toward K*, the other side away from it
        runs = res[f"stability_{name}_theory"]  # started at factors f of K*, ascending
        lo, hi = runs[0], runs[-1]  # f = 0.5 and 2
        assert lo[0] < lo[-1] and hi[0] > hi[-1]
        for mid in runs[1:-1]:  # f = 0.95: GELU's repelled side drifts down, Swish's rises
            if name == "gelu":
                assert mid[-1] < mid[0]
            else:
                assert mid[0] < mid[-1] < k_star
        if name == "gelu":
            assert hi[-1] > k_star and lo[-1] < stable * k_star
        else:
            assert lo[-1] < k_star and hi[-1] > stable * k_star


@pytest.mark.slow
def test_vertex_relu_monte_carlo_matches_exact(res, cfg):
    for n in cfg.vertex.vx_widths:
        mc, se = res[f"vertex_relu_n{n}_excess"][1:], res[f"vertex_relu_n{n}_se"][1:]
        exact = res[f"vertex_relu_n{n}_exact"][1:]
        assert np.all(np.abs(mc - exact) <= Z * se), (mc, exact, se)
        # exact (1 + 5/n)^(L−1) − 1 against its leading order 5(L − 1)/n
        ls = np.arange(2, cfg.vertex.vx_depth + 1)
        np.testing.assert_allclose(exact, (1 + 5 / n) ** (ls - 1) - 1, rtol=1e-12)


@pytest.mark.slow
def test_vertex_tanh_monte_carlo_near_leading_order(res, cfg):
    """tanh: the leading order V/(nK²) is the excess kurtosis up to O(1/n²); allow Z s.e. plus
    a relative 30 % (the next order, (L/n)² terms, at L/n <= 0.5)."""
    for n in cfg.vertex.vx_widths:
        mc, se = res[f"vertex_tanh_n{n}_excess"][1:], res[f"vertex_tanh_n{n}_se"][1:]
        lead = res[f"vertex_tanh_n{n}_leading"][1:]
        assert np.all(lead > 0) and np.all(np.diff(lead) > 0)
        assert np.all(np.abs(mc - lead) <= Z * se + 0.3 * lead), (mc, lead, se)


@pytest.mark.slow
def test_ntk(res, cfg):
    t = crit.ntk_table(res, cfg)
    # E[Θ] = Θ_∞ exactly for ReLU at any width
    assert np.all(np.abs(t["mean_ratio"] - 1) <= Z * t["mean_ratio_se"]), t
    # fluctuations grow with β and are of the leading order's size
    assert np.all(t["log_ratio"] > 0) and np.all(np.diff(t["log_ratio"]) > 0)
    assert np.all(
        np.abs(t["log_ratio"] - t["leading"]) <= Z * t["log_ratio_se"] + 0.5 * t["leading"]
    )
    slope, se, _ = crit.ntk_slope(t)
    assert 2 < slope < 8 and se > 0


@pytest.mark.slow
def test_correlation(res):
    g = res["relu_gap"]
    ls = np.arange(1, g.size + 1)
    ratio = g * 2 * ls**2 / (9 * math.pi**2)  # → 1 from below, slowly
    assert 0.8 < ratio[-1] < 1 and ratio[-1] > ratio[len(g) // 2]
    k_star, _, chi = res["tanh_fixed_point"]
    assert k_star > 0 and 0 < chi < 1
    assert crit.tanh_factor(res) == pytest.approx(chi, rel=1e-3)


@pytest.mark.slow  # 13 s; tests/test_criticality.py checks the theory by Monte Carlo by default
def test_kernel_monte_carlo_matches_theory():
    """E[(1/n)Σz²] against K⁽ˡ⁾: exact for ReLU at C_b = 0 (the mean is preserved at any
    width); for tanh the finite-width correction to the mean is O(1/n): allowed as 2K/n."""
    kc = crit.Kernel(k_width=64, k_networks=400, k_mc_depth=8)
    idx = crit.mc_depths(kc.k_mc_depth) - 1
    for name, c_w, corr in (("relu", 2.5, 0.0), ("tanh", 1.0, 2 / kc.k_width)):
        th = crit.cr.kernel_recursion(crit.activation(name), 0.0, c_w, 1.0, kc.k_mc_depth)[idx]
        mc, se = crit._mc_kernel(name, 0.0, c_w, 1.0, kc, crit._key(1, 99))
        assert np.all(np.abs(mc - th) <= Z * se + corr * th), (name, mc, th, se)


@pytest.mark.slow
def test_plot_and_summary(res, cfg):
    figs = crit.plot(res, cfg)
    assert set(figs) == {
        "criticality_kernel",
        "criticality_vertex",
        "criticality_ntk",
        "criticality_correlation",
    }
    for fig in figs.values():
        common.pyplot().close(fig)
    s = crit.summary(res, cfg)
    assert s["critical_points"]["GELU"]["K_star"] == pytest.approx(3.5616, abs=1e-4)
    assert s["kernel_max_abs_z_(MC-theory)/SE"]["relu"] is None  # --quick: theory only
    assert s["vertex_relu_max_abs_z_(MC-exact)/SE_all"] <= Z
    assert s["ntk_mean_ratio_max_abs_z_(MC-1)/SE"] <= Z
    json.dumps(s)  # serialisable for the settings file


@pytest.mark.slow
def test_main_quick_writes_figures(res, cfg, root, monkeypatch):
    monkeypatch.setattr(common, "RESULTS_DIR", root)
    monkeypatch.setattr(common, "FIGS_DIR", root / "figs")
    stems = ("criticality_kernel", "criticality_vertex", "criticality_ntk")

    def small_plot(results, cfg):  # plot() itself is tested above; saving it costs ~10 s
        plt = common.pyplot()
        return {stem: plt.subplots(figsize=(1, 1))[0] for stem in stems}

    monkeypatch.setattr(crit, "plot", small_plot)
    out = crit.main(["--quick"])  # pieces cached by the fixture's run
    assert out == root / crit.NAME / RUN  # non-default runs stay in results/
    meta = json.loads((out / "criticality_settings.json").read_text())
    assert meta["pieces"]["computed"] == 0
    assert "ntk_fitted_slope_of_log_ratio_vs_beta" in meta["summary"]
    for stem in stems:
        assert (out / f"{stem}.png").stat().st_size > 0 and (out / f"{stem}.pdf").exists()
    assert not (root / "figs").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--k-width", "0"],
        ["--k-mc-depth", "200"],  # deeper than --k-depth
        ["--ntk-betas", "0.001"],  # no depth >= 1 at any width
        ["--no-such-flag"],
    ],
)
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        crit.main(argv)
    assert exc.value.code == 2


def test_helpers():
    np.testing.assert_array_equal(crit.mc_depths(32), [1, 2, 4, 8, 16, 32])
    np.testing.assert_array_equal(crit.mc_depths(12), [1, 2, 4, 8, 12])
    pts = crit.ntk_points(crit.Ntk(ntk_widths=(16, 64), ntk_betas=(0.125, 1.0), ntk_max_depth=32))
    assert pts == [(16, 2), (16, 16), (64, 8)]
    assert crit.ntk_count(crit.Ntk(ntk_networks=100), 16, 16) == 400
