"""experiments.ibc: `run` on the quick preset, `plot`, and the command line."""

from __future__ import annotations

import numpy as np
import pytest

import experiments._common as common
import theory.complexity as tc
from experiments import ibc


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    cfg = ibc.Config(**ibc.QUICK)
    store = common.ResultStore("ibc", "quick", cfg, root=tmp_path_factory.mktemp("results"))
    return cfg, ibc.run(cfg, store), store


def test_run_results(quick_results):
    cfg, r, store = quick_results
    assert store.n_computed == 2 + len(cfg.mc_n)  # digits, MNIST, one piece per n
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
    assert r["scaling_log10_bits"].shape == (len(cfg.scaling_dims), cfg.sweep_points)
    # data: plausible estimates (digits m̂ ≈ 8–9, MNIST subset m̂ ≈ 10–14 at k = 5)
    for name, lo, hi in (("digits", 5, 12), ("mnist", 8, 16)):
        assert lo < float(r[f"{name}_m_mle"]) < hi, name
        assert r[f"{name}_m_by_k"].shape == (len(cfg.k_values),)
        assert int(r[f"{name}_num_classes"]) == 10
        assert 0 < float(r[f"{name}_delta_evt"]) <= float(r[f"{name}_evt_sample_min"])
        assert np.isfinite(r[f"{name}_log10_bits"])
    assert int(r["mnist_n"]) == cfg.mnist_points
    # Monte Carlo: below the bound, and consistent with the closed form where sampled
    assert r["mc_p_hat"].shape == (len(cfg.mc_n), cfg.mc_num_errors)
    ok = np.isfinite(r["mc_bits_hat"])
    assert np.all(r["mc_bits_hat"][ok] < r["mc_bound"][ok])
    sigma = np.sqrt(r["mc_p_exact"] * (1 - r["mc_p_exact"]) / cfg.mc_samples)
    well_sampled = r["mc_p_exact"] * cfg.mc_samples > 50  # normal approximation holds
    assert np.all(
        np.abs(r["mc_p_hat"] - r["mc_p_exact"])[well_sampled] <= 4.5 * sigma[well_sampled]
    )


def test_plot_returns_figures(quick_results):
    cfg, r, _ = quick_results
    figs = ibc.plot(r, cfg)
    assert set(figs) == {"ibc_tasks", "ibc_sweeps", "ibc_scaling", "ibc_data", "ibc_montecarlo"}
    for fig in figs.values():
        assert fig.axes
        common.pyplot().close(fig)


def test_config_validation_names_the_flag():
    with pytest.raises(ValueError, match="--mc-samples"):
        ibc.Config(mc_samples=0)
    with pytest.raises(ValueError, match="--mnist-points"):
        ibc.Config(mnist_points=6000)
    with pytest.raises(ValueError, match="--mc-n"):
        ibc.Config(mc_n=(40,))
    with pytest.raises(SystemExit):
        ibc.main(["--data-error", "2"])


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
    assert meta["pieces"] == {"loaded": 2 + len(cfg.mc_n), "computed": 0}
    for stem in stems:
        assert (out / f"{stem}.png").exists() and (out / f"{stem}.pdf").exists()
