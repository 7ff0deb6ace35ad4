"""experiments.ibc: `run` on the quick preset, `plot`, and the command line.

The quick run costs ~30 s on 2 cores, so the checks that need it are in the slow suite; the
default suite keeps the configuration checks here and the library's own tests
(tests/test_complexity.py, tests/theorems/test_boopathy2023.py).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import experiments._common as common
import theory.complexity as tc
from experiments import ibc


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    cfg = common.with_overrides(ibc.Config(), ibc.QUICK)
    store = common.ResultStore("ibc", "quick", cfg, root=tmp_path_factory.mktemp("results"))
    return cfg, ibc.run(cfg, store), store


@pytest.mark.slow
def test_run_results(quick_results):
    cfg, r, store = quick_results
    mc = cfg.montecarlo
    assert store.n_computed == 3 + len(mc.mc_n)  # digits, MNIST, MNIST by n, one per n
    # tasks: every paper task, MNIST value as the closed form, ordering claims
    names = list(r["task_names"])
    assert names == [t.name for t in tc.ALL_TASKS]
    logs = dict(zip(names, r["task_log10_bits"]))
    np.testing.assert_allclose(10 ** logs["MNIST"], 1.4848e16, rtol=1e-4)
    assert logs["MNIST"] < logs["CIFAR-10"] < logs["ImageNet"] < logs[tc.OMNIGLOT.name]
    # sweeps are monotone in the direction the paper states
    assert np.all(np.diff(r["sweep_m_log10_bits"]) > 0)
    for p in ("delta", "error", "n"):
        assert np.all(np.diff(r[f"sweep_{p}_log10_bits"]) < 0), p
    assert np.all(np.diff(r["sweep_num_classes_log10_bits"]) > 0)
    # scaling: slope of log Ĩ in log(1/δ) is ≈ m (within 3%: the log factor's share)
    np.testing.assert_allclose(r["scaling_slopes"], r["scaling_dims"], rtol=0.03)
    assert r["scaling_log10_bits"].shape == (len(cfg.sweeps.scaling_dims), cfg.sweeps.sweep_points)
    # slope in m: the least-squares fit reproduces the curve's own secant where it is straight,
    # and the curves bend (slope over the last ten m below the first ten's for every M)
    lm, m = r["scaling_m_log10_bits"], r["scaling_m"]
    first = (m >= 2) & (m <= 10)  # Ĩ is clipped to 0 (log = -inf) at m = 1, M = 100
    assert np.all(np.isfinite(lm[:, first]))
    secant = (lm[:, first][:, -1] - lm[:, first][:, 0]) / (m[first][-1] - m[first][0])
    np.testing.assert_allclose(r["scaling_m_slope_first10"], secant, rtol=0.1)
    assert np.all(r["scaling_m_slope_last10"] < r["scaling_m_slope_first10"])
    assert np.all(np.diff(r["scaling_m_slope"]) > 0)  # larger M: steeper in m
    # data: plausible estimates (digits m̂ ≈ 8–9, MNIST subset m̂ ≈ 10–14 at k = 5)
    for name, lo, hi in (("digits", 5, 12), ("mnist", 8, 16)):
        assert lo < float(r[f"{name}_m_mle"]) < hi, name
        assert r[f"{name}_m_by_k"].shape == (len(cfg.data.k_values),)
        assert int(r[f"{name}_num_classes"]) == 10
        assert 0 < float(r[f"{name}_delta_evt"]) <= float(r[f"{name}_evt_sample_min"])
        assert np.isfinite(r[f"{name}_log10_bits"])
    assert int(r["mnist_n"]) == cfg.data.mnist_points
    # MNIST by n: nested subsets, so δ (a minimum) never rises and R (a maximum) never falls;
    # the largest subset is the full sample
    sizes = r["mnist_by_n_n"]
    assert sizes.tolist() == list(cfg.data.subset_sizes()) and sizes[-1] == cfg.data.mnist_points
    assert np.all(np.diff(r["mnist_by_n_delta_sample"]) <= 0)
    assert np.all(np.diff(r["mnist_by_n_radius"]) >= 0)
    assert r["mnist_by_n_delta_sample"][-1] == r["mnist_delta_sample"]
    assert r["mnist_by_n_m_mle"][-1] == pytest.approx(float(r["mnist_m_mle"]), rel=1e-12)
    # like-with-like rows: the paper's own (n, m, R, δ) give its MNIST value; ours give ours
    np.testing.assert_allclose(r["compare_log10_bits"][0], logs["MNIST"], rtol=1e-12)
    np.testing.assert_allclose(r["compare_log10_bits"][3], r["mnist_log10_bits"], rtol=1e-12)
    assert r["compare_n"].tolist() == [60000, cfg.data.mnist_points, 60000, cfg.data.mnist_points]
    # Monte Carlo: below the bound, and consistent with the closed form where sampled
    assert r["mc_p_hat"].shape == (len(mc.mc_n), mc.mc_num_errors)
    ok = np.isfinite(r["mc_bits_hat"])
    assert np.all(r["mc_bits_hat"][ok] < r["mc_bound"][ok])
    sigma = np.sqrt(r["mc_p_exact"] * (1 - r["mc_p_exact"]) / mc.mc_samples)
    well_sampled = r["mc_p_exact"] * mc.mc_samples > 50  # normal approximation holds
    assert np.all(
        np.abs(r["mc_p_hat"] - r["mc_p_exact"])[well_sampled] <= 4.5 * sigma[well_sampled]
    )


@pytest.mark.slow
def test_plot_returns_figures(quick_results):
    cfg, r, _ = quick_results
    figs = ibc.plot(r, cfg)
    assert set(figs) == {"ibc_tasks", "ibc_sweeps", "ibc_scaling", "ibc_data", "ibc_montecarlo"}
    for fig in figs.values():
        assert fig.axes
        common.pyplot().close(fig)


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        (dict(montecarlo=dict(mc_samples=0)), "--mc-samples must be > 0"),
        (dict(data=dict(mnist_points=6000)), "--mnist-points must be in [3, 5000]"),
        (dict(data=dict(k_values=(3, 1))), "--k-values needs one or more values, each >= 2"),
        (dict(data=dict(data_error=1.0)), "--data-error must be in (0, 1)"),
        (dict(data=dict(mnist_points=40, mnist_subsets=4)), "--mnist-points / 2^"),
        (dict(data=dict(evt_k=10, evt_pairs=20)), "--evt-k must be below --evt-pairs"),
        (dict(montecarlo=dict(mc_n=(40,))), "--mc-n values must be below d = 29"),
    ],
)
def test_config_validation_names_the_flag(kwargs, flag):
    with pytest.raises(ValueError, match=re.escape(flag)):
        common.with_overrides(ibc.Config(), kwargs)


@pytest.mark.slow
def test_main_quick_writes_results_and_figures(tmp_path, monkeypatch, quick_results):
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(common, "FIGS_DIR", tmp_path / "figs")
    # Reuse the fixture's pieces so the CLI run loads them instead of recomputing, and draw
    # one small figure per stem: `plot` itself is covered above, and saving ten full figures
    # (PNG + PDF) costs ~30 s of text layout on 2 cores.
    cfg, _, store = quick_results
    pieces = tmp_path / "results" / "ibc" / "quick" / store.pieces.name
    pieces.parent.mkdir(parents=True)
    pieces.symlink_to(store.pieces, target_is_directory=True)
    stems = ("ibc_tasks", "ibc_sweeps", "ibc_scaling", "ibc_data", "ibc_montecarlo")

    def small_plot(results, cfg):
        plt = common.pyplot()
        return {stem: plt.subplots(figsize=(1, 1))[0] for stem in stems}

    monkeypatch.setattr(ibc, "plot", small_plot)
    out = ibc.main(["--quick"])
    assert out == tmp_path / "results" / "ibc" / "quick"  # non-default runs stay in results/
    saved = common.load_npz(tmp_path / "results" / "ibc" / "quick.npz")
    np.testing.assert_array_equal(saved["task_log10_bits"], quick_results[1]["task_log10_bits"])
    meta = common.ResultStore("ibc", "quick", cfg).metadata()
    assert meta["pieces"] == {"loaded": 3 + len(cfg.montecarlo.mc_n), "computed": 0}
    assert meta["config"]["data"]["mnist_points"] == cfg.data.mnist_points  # settings saved
    for stem in stems:
        assert (out / f"{stem}.png").exists() and (out / f"{stem}.pdf").exists()
