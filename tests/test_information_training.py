"""theory.information.training: the 12-10-7-5-4-3-2 network, vmapped seeds, recording."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from theory.information.training import TrainConfig, split_indices, train


def _tishby():
    """The data set from its definition (kept independent of theory.information.data)."""
    adj = {
        0: [1, 3, 5, 10, 11], 1: [0, 2, 3, 4, 11], 2: [1, 3, 4, 8, 9], 3: [0, 1, 2, 8, 10],
        4: [1, 2, 6, 9, 11], 5: [0, 6, 7, 10, 11], 6: [4, 5, 7, 9, 11], 7: [5, 6, 8, 9, 10],
        8: [2, 3, 7, 9, 10], 9: [2, 4, 6, 7, 8], 10: [0, 3, 5, 7, 8], 11: [0, 1, 4, 5, 6],
    }  # fmt: skip
    anti = [(0, 9), (1, 7), (2, 5), (3, 6), (4, 10), (8, 11)]
    x = ((np.arange(4096)[:, None] >> np.arange(11, -1, -1)) & 1).astype(np.float32)
    k = x.sum(1)
    n_adj = sum(x[:, i] * x[:, j] for i in adj for j in adj[i] if j > i)
    n_anti = sum(x[:, i] * x[:, j] for i, j in anti)
    y = (30 * k - 3 * k * k + 8 * n_adj - 4 * n_anti >= 120).astype(int)
    return x, y


X, Y = _tishby()


@pytest.fixture(scope="module")
def tanh_run():
    return train(TrainConfig(), X, Y, seeds=[0, 1], record_epochs=[0, 30, 300])


@pytest.mark.slow  # the two-seed training run (fixture) costs 15 s; CI's slow suite runs it;
# training is exercised by default in the L2, divergence and bad-settings tests below
def test_training_fits_and_records_every_layer(tanh_run):
    r = tanh_run
    widths = [10, 7, 5, 4, 3, 2]
    for i, w in enumerate(widths):
        assert r[f"layer{i}"].shape == (2, 3, 4096, w)
    # softmax output: rows sum to 1; tanh layers within [−1, 1]
    np.testing.assert_allclose(r["layer5"].sum(-1), 1.0, atol=1e-5)
    assert np.all(np.abs(r["layer0"]) <= 1.0)
    # the loss falls from ln 2 ≈ 0.69 and the net fits: 300 epochs of Adam at 4e-4 reach
    # ≥ 85 % training accuracy for both seeds (measured 0.92 and 0.95)
    loss = r["train_loss"]
    assert np.all(loss[:, 0] > 0.6) and np.all(loss[:, -1] < 0.35)
    assert np.all(np.diff(loss, axis=1) < 0)
    assert np.all(r["train_acc"][:, -1] >= 0.85)


@pytest.mark.slow  # 9 s: a second training run
def test_vmapped_seeds_equal_separate_runs(tanh_run):
    alone = train(TrainConfig(), X, Y, seeds=[1], record_epochs=[0, 30, 300])
    np.testing.assert_allclose(alone["layer2"][0], tanh_run["layer2"][1], atol=2e-5)
    np.testing.assert_allclose(alone["train_loss"][0], tanh_run["train_loss"][1], rtol=1e-5)


@pytest.mark.slow  # 8 s
def test_original_split_and_custom_record():
    cfg = TrainConfig(split="original", activation="relu", batch_size=None)
    tr, te = split_indices(4096, cfg, None)
    assert tr.tolist() == list(range(3277)) and te[0] == 3277
    # the original unshuffled split: train p(y = 1) ≈ 0.44, test ≈ 0.84
    assert abs(Y[tr].mean() - 0.44) < 0.01 and abs(Y[te].mean() - 0.84) < 0.01

    def record(layers):
        return {"mean_abs": jnp.stack([jnp.mean(jnp.abs(h)) for h in layers])}

    r = train(cfg, X, Y, seeds=[3], record_epochs=[0, 5], record=record)
    assert r["mean_abs"].shape == (1, 2, 6)
    assert np.all(r["mean_abs"] >= 0)


@pytest.mark.slow  # 10 s
def test_l2_shrinks_the_activations():
    """λ‖W‖²/2 with λ = 0.5 pulls the weights (and tanh activations) towards 0."""
    plain = train(TrainConfig(), X, Y, seeds=[0], record_epochs=[200])
    decayed = train(TrainConfig(l2=0.5), X, Y, seeds=[0], record_epochs=[200])
    assert np.mean(np.abs(decayed["layer1"])) < 0.5 * np.mean(np.abs(plain["layer1"]))


def test_bad_settings_name_the_argument():
    with pytest.raises(ValueError, match="activation"):
        TrainConfig(activation="swish")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="split"):
        TrainConfig(split="shuffled")
    with pytest.raises(ValueError, match="l2"):
        TrainConfig(l2=-1.0)
    with pytest.raises(ValueError, match="record_epochs"):
        train(TrainConfig(), X, Y, seeds=[0], record_epochs=[5, 3])
    with pytest.raises(ValueError, match="y"):
        train(TrainConfig(), X, Y[:10], seeds=[0], record_epochs=[1])


def test_divergence_is_an_error_not_a_nan():
    """Finite inputs of 3e38 overflow float32 in the first layer (±inf, then inf − inf = NaN
    further on): the non-finite loss is a clear error, not NaNs in the results."""
    cfg = TrainConfig(activation="linear", batch_size=None)
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        train(cfg, X * np.float32(3e38), Y, seeds=[0], record_epochs=[0, 1])
