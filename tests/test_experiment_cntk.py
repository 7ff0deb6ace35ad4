"""experiments.cntk at the --quick settings: the run, its figure and settings, the tiled
kernels against the whole kernel, the regression against a direct solve, and --plot-only.

One quick run (4×4 images, 40 training and 20 test images; module fixture: 32 s, so ``slow``)
feeds the figure checks; the tiled-kernel checks compile their own small kernels (7 s each).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import experiments._common as common
from experiments import cntk


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cntk")
    return root / "results", root / "figs"


@pytest.fixture(scope="module")
def quick_run(dirs):
    results, figs = dirs
    mp = pytest.MonkeyPatch()
    mp.setattr(common, "RESULTS_DIR", results)
    mp.setattr(common, "FIGS_DIR", figs)
    mp.setenv("THEORY_NO_PROGRESS", "1")
    try:
        out = cntk.main(["--quick"])
        yield out
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def cfg():
    return common.with_overrides(cntk.Config(), cntk.QUICK)


@pytest.mark.slow  # the quick run: 32 s (2 cores, load ≈ 3), compiling 5 kernels × 2 shapes
def test_figure_settings_and_accuracies(quick_run, cfg, dirs):
    out = quick_run
    assert (out / "cntk_accuracy.png").stat().st_size > 10_000
    assert (out / "cntk_accuracy.pdf").exists()
    meta = json.loads((out / "cntk_settings.json").read_text())
    acc = meta["summary"]["accuracy"]
    assert len(acc) == 2 * len(cntk.ARCHS)
    for curve in acc.values():
        assert curve and all(0.0 <= a <= 1.0 for a in curve.values())
    # FC and CNN-GP go to max(train_sizes), the full-covariance kernels to full_train_max
    assert set(acc["FC NTK"]) == {str(n) for n in cfg.data.train_sizes}
    assert set(acc["CNTK-GAP NTK"]) == {str(cfg.data.full_train_max)}
    timing = meta["summary"]["timing_seconds_per_1e6_entries"]
    assert all(row["ours_s_per_1e6"] > 0 for row in timing.values())


@pytest.mark.slow  # needs the quick run
def test_plot_only_reuses_results(quick_run, dirs, monkeypatch, capsys):
    results, figs = dirs
    monkeypatch.setattr(common, "RESULTS_DIR", results)
    monkeypatch.setattr(common, "FIGS_DIR", figs)
    png = quick_run / "cntk_accuracy.png"
    before = png.stat().st_mtime_ns
    out = cntk.main(["--quick", "--plot-only"])
    assert out == quick_run
    assert "loading finished run" in capsys.readouterr().err
    assert png.stat().st_mtime_ns >= before


def test_plot_only_without_run_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    with pytest.raises(SystemExit) as e:
        cntk.main(["--quick", "--side", "2", "--plot-only"])
    assert e.value.code == 2


def _digits(cfg):
    return cntk.load_digits(cfg.data)


def test_data_split(cfg):
    d = _digits(cfg)
    n = max(cfg.data.train_sizes)
    assert d["x_train"].shape == (n, cfg.data.side, cfg.data.side, 1)
    assert d["x28_test"].shape == (cfg.data.n_test, 784)
    # every prefix of 10·m training images holds m of each class; the test set is balanced
    np.testing.assert_array_equal(np.bincount(d["y_train"][:20], minlength=10), 2)
    np.testing.assert_array_equal(np.bincount(d["y_test"], minlength=10), cfg.data.n_test // 10)
    # standardized per image: the input kernel x·x/d is 1 on the diagonal
    x = d["x_train"].reshape(n, -1)
    np.testing.assert_allclose((x * x).mean(axis=1), 1, rtol=1e-5)
    # train and test are disjoint images
    tr = {row.tobytes() for row in d["x28_train"]}
    assert not any(row.tobytes() in tr for row in d["x28_test"])


# 6-10 s each (2 cores, load ≈ 3): both slow (ResultStore's resume is checked by default in
# tests/test_common.py)
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["cnngp", "gap"])
def test_tiles_equal_whole_kernel_and_resume(arch, cfg, tmp_path):
    """The tile-assembled kernels equal kernel_fn on the whole inputs (float32: both sum
    the same terms per entry, so 1e-6 relative), including ragged, padded edge tiles; a
    second pass loads every tile from the store and gives the same arrays."""
    d = _digits(cfg)
    kf = cntk.build(cntk.specs(cfg.nets)[arch])
    x_tr, x_te = cntk.inputs(arch, d, "train")[:25], cntk.inputs(arch, d, "test")[:13]
    store = common.ResultStore("cntk_t", "t", cfg, root=tmp_path)

    def cached(key, compute):
        return store.cached(key, compute, depends=("tiles", arch))

    k = cntk.tiled_kernels(kf, x_tr, x_te, 10, cached, arch, bar=False)
    whole_tr = kf(x_tr, None, get=("nngp", "ntk"))
    whole_te = kf(x_te, x_tr, get=("nngp", "ntk"))
    for g in ("nngp", "ntk"):
        for which, ref in (("train", whole_tr), ("test", whole_te)):
            ref = np.asarray(getattr(ref, g), np.float64)
            np.testing.assert_allclose(k[f"{g}_{which}"], ref, rtol=1e-6, atol=1e-6 * ref.max())
    assert store.n_computed == 6 + 2 * 3 and store.n_loaded == 0  # 3·4/2 + 2·3 tiles
    again = cntk.tiled_kernels(kf, x_tr, x_te, 10, cached, arch, bar=False)
    assert store.n_loaded == 12
    for key in ("nngp_train", "ntk_test"):
        np.testing.assert_array_equal(again[key], k[key])


def test_regression_matches_direct_solve():
    """Kernel ridge regression on a random SPD kernel equals the explicit formula; with the
    test points equal to the training points and a tiny ridge it interpolates, accuracy 1."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((60, 80))
    k = a @ a.T / 80
    y = np.arange(60) % 10
    # test points = the first 30 training points, which every prefix of >= 30 contains
    acc = cntk.kernel_regression_accuracy(k, k[:30], y, y[:30], [30, 60], 1e-8)
    np.testing.assert_array_equal(acc, [1.0, 1.0])
    y_te = rng.integers(0, 10, 20)
    kt = rng.standard_normal((20, 60))
    lam = 1e-2 * np.trace(k) / 60
    f = kt @ np.linalg.solve(k + lam * np.eye(60), np.eye(10)[y] - 0.1)
    want = np.mean(f.argmax(1) == y_te)
    assert cntk.kernel_regression_accuracy(k, kt, y, y_te, [60], 1e-2)[0] == want


def test_bad_config_names_flag():
    with pytest.raises(ValueError, match="--crop"):
        cntk.Data(crop=24, side=5)
    with pytest.raises(ValueError, match="--full-train-max"):
        cntk.Data(full_train_max=5000)
    with pytest.raises(ValueError, match="--n-test"):
        cntk.Data(n_test=55)


@pytest.mark.slow
def test_reference_timing_agrees(cfg):
    """neural-tangents on a 4×6 block of each quick kernel: its kernels agree with ours to
    1e-4 relative (the run's own check), and its timings are positive."""
    if not cntk.REF_PYTHON.exists():
        pytest.skip("reference venv absent")
    d = _digits(cfg)
    tm = cntk.Timing(timing_n_diag=6, timing_n_full=4, timing_repeats=1)
    blocks = cntk.timing_blocks(d, cfg.data, tm)
    sp = cntk.specs(cfg.nets)
    ours_rows, ours = cntk.time_ours({a: cntk.build(sp[a]) for a in blocks}, blocks, 1)
    rows, theirs = cntk.time_reference(sp, blocks, 1)
    errs = cntk.agreement(ours, theirs)
    assert len(errs) == 2 * len(cntk.ARCHS) and max(errs.values()) <= cntk.AGREE_RTOL
    assert all(rows[a]["steady_s"] > 0 for a in blocks)
