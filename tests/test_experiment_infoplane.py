"""experiments.infoplane: `run` on a tiny config, the stacked estimates, `plot`, `summary`, CLI."""

from __future__ import annotations

import numpy as np
import pytest

import experiments._common as common
from experiments import infoplane
from theory import information as ti

_P = 2118 / 4096  # the Tishby labels: 2118 positives of 4096
H_Y = -(_P * np.log2(_P) + (1 - _P) * np.log2(1 - _P))  # 0.999157 bits

TINY = dict(
    training=dict(epochs=30, seeds=2, n_records=3),
    estimators=dict(kde_seeds=1),
    comparison=dict(activations=("tanh",)),
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = common.with_overrides(infoplane.Config(), TINY)
    store = common.ResultStore("infoplane", "tiny", cfg, root=tmp_path_factory.mktemp("results"))
    return cfg, infoplane.run(cfg, store), store


@pytest.mark.slow
def test_run_records_every_estimator_and_layer(tiny):
    cfg, r, store = tiny
    epochs = r["epochs"]
    assert epochs.tolist() == [0, 1, 5, 30]
    # tanh and ReLU are always trained (the first two figures); the comparison adds L2 runs
    assert [infoplane._key(a, lam) for a, lam in infoplane._units(cfg)] == [
        "tanh",
        "relu",
        "tanh_l2",
    ]
    for key in ("tanh", "relu", "tanh_l2"):
        for est in ("bin", "fixed", "ebab"):
            mi = r[f"{key}/{est}"]
            assert mi.shape == (2, 4, 6, 2)
            i_xt, i_ty = mi[..., 0], mi[..., 1]
            # plug-in estimates on 4096 equiprobable inputs: 0 ≤ I(T;Y) ≤ min(H(T), H(Y)),
            # H(T) ≤ log2 4096 = 12 (float64 sums: 1e-9)
            assert np.all(i_xt <= 12 + 1e-9) and np.all(i_ty >= -1e-9)
            assert np.all(i_ty <= np.minimum(i_xt, H_Y) + 1e-9)
        assert r[f"{key}/train_acc"].shape == (2, 4)
    # the fixed-noise KDE only for the two networks of Saxe et al.'s figure, the adaptive KDE
    # for every network without L2, each on the first `kde_seeds` seeds
    assert r["tanh/kde"].shape == r["relu/kde"].shape == (1, 4, 6, 2)
    assert "tanh_l2/kde" not in r and "tanh_l2/akde" not in r
    assert r["relu/akde"].shape == (1, 4, 6, 2)
    # 30 epochs of Adam fit the data beyond chance (H(Y) ≈ 1 bit: chance is ~52 %)
    assert np.all(r["tanh/train_acc"][:, -1] > 0.6)
    # the L2 run differs from the plain one with the same seeds (same init, same batches)
    assert not np.allclose(r["tanh/ebab"][:, -1], r["tanh_l2/ebab"][:, -1])
    np.testing.assert_array_equal(r["tanh/ebab"][:, 0], r["tanh_l2/ebab"][:, 0])
    # the pieces are stored, and a second run loads them all
    n = store.n_computed
    again = infoplane.run(cfg, store)
    assert store.n_computed == n and store.n_loaded == 3
    np.testing.assert_array_equal(again["relu/kde"], r["relu/kde"])


@pytest.mark.slow
def test_stacked_padded_estimates_equal_per_layer_calls():
    """`_estimate` pads the layers with zero units and runs each estimator once; the result is
    each estimator called on each layer alone (float32 distances in the KDE: 1e-5 bits)."""
    _, y = ti.tishby_dataset()
    rng = np.random.default_rng(0)
    layers = [
        np.maximum(0.7 * rng.normal(size=(2, 1, 4096, w)), 0).astype(np.float32)
        for w in (10, 3)  # the widest layer and a padded one (each width compiles anew)
    ]
    est = infoplane.Estimators()
    out = infoplane._estimate(layers, y, est, 1, kde=True, akde=True)
    for j, h in enumerate(layers):
        for s in range(2):
            t = h[s, 0]
            ref = {
                "bin": ti.binned_mi(t, y, ti.tishby_edges(est.n_edges)),
                "fixed": ti.binned_mi(t, y, ti.fixed_width_edges(t, est.bin_width)),
                "ebab": ti.adaptive_binned_mi(t, y, est.ebab_bins),
            }
            if s == 0:
                ref["kde"] = ti.kde_mi(t, y, est.kde_noise_var).upper
                ref["akde"] = ti.adaptive_kde_mi(t, y, est.akde_scale).upper
            for k, v in ref.items():
                np.testing.assert_allclose(out[k][s, 0, j], np.array(v), atol=1e-5, err_msg=k)


def test_compression_and_record_epochs():
    mi = np.zeros((2, 4, 1, 2))
    mi[0, :, 0, 0] = [1.0, 5.0, 4.0, 3.5]  # peak 5, final 3.5: compression 1.5
    mi[1, :, 0, 0] = [1.0, 2.0, 3.0, 4.0]  # rises throughout: no compression
    np.testing.assert_allclose(infoplane.compression(mi)[:, 0], [1.5, 0.0])
    e = infoplane.record_epochs(8000, 30)
    assert e[0] == 0 and e[1] == 1 and e[-1] == 8000 and np.all(np.diff(e) > 0)


@pytest.mark.slow
def test_plot_and_summary(tiny):
    cfg, r, _ = tiny
    figs = infoplane.plot(r, cfg)
    assert set(figs) == {
        "infoplane_tishby",
        "infoplane_saxe",
        "infoplane_chelombiev",
        "infoplane_compression",
    }
    out = infoplane.summary(r, cfg)
    assert set(out["configurations"]) == {"tanh", "relu", "tanh_l2"}
    assert len(out["configurations"]["tanh"]["bin"]["final_i_xt"]) == 6
    assert set(out["spearman_compression_vs_generalisation"]["test_acc"]) == set(
        infoplane.LAYER_NAMES
    )


def test_cli_rejects_bad_flags():
    for argv in (["--activations", "swish"], ["--seeds", "3", "--kde-seeds", "4"]):
        with pytest.raises(SystemExit) as e:
            infoplane.main(argv)
        assert e.value.code == 2
