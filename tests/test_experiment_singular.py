"""experiments.singular: `run` on a tiny config, `plot`, `summary`, and the command line."""

from __future__ import annotations

import numpy as np
import pytest

import experiments._common as common
from experiments import singular

TINY = dict(
    taxonomy=dict(
        tax_train=21, tax_test=40, tax_seeds=1, tax_max_depth=60, relu_train=11, relu_test=20,
        relu_max_depth=200,
    ),
    dirichlet=dict(dims=(3,), n_train=150, n_test=150),
    consistency=dict(cons_sizes=(16, 64), cons_draws=2, cons_grid=501, cons_alphas=(0.5, 1.0)),
    digits=dict(digits_train=300),
)  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = common.with_overrides(singular.Config(), TINY)
    store = common.ResultStore("singular", "tiny", cfg, root=tmp_path_factory.mktemp("results"))
    return cfg, singular.run(cfg, store)


@pytest.mark.slow  # the quick run's fixture takes ~2.5 min on 2 cores
def test_run_results_are_consistent(tiny):
    cfg, r = tiny
    # taxonomy: agreements are fractions; the 1-NN dual reaches 1-NN well inside 60 layers
    names = list(r["tax_names"])
    assert len(names) == len(singular.TAX_REPS)
    for i in range(len(names)):
        a = r[f"tax{i}_agree"]
        assert a.shape[0] == cfg.taxonomy.tax_seeds
        assert np.all((a[~np.isnan(a)] >= 0) & (a[~np.isnan(a)] <= 1))
    nn = names.index("He₂: ξ² → 1-NN")
    assert np.nanmax(r[f"tax{nn}_agree"]) == 1.0
    # Dirichlet: Bayes is the best rule (on 150 test points within 3 binomial s.d.), the
    # matched α = 2 duals are listed and compared with Hilbert
    labels = [str(s) for s in r["dir3_labels"]]
    acc = dict(zip(labels, r["dir3_accuracy"]))
    sd = np.sqrt(0.25 / cfg.dirichlet.n_test)
    assert all(acc["Bayes"] >= v - 3 * sd for v in acc.values())
    assert acc["majority vote"] < acc["Bayes"]
    differ = dict(zip(labels, r["dir3_differ_from_hilbert"]))
    assert differ["sine (α=2)"] <= differ["sine (α=8)"]
    # consistency: exact risks are at least the Bayes risk (minus the quadrature bound)
    for task in singular.CONS_TASKS:
        risk, bound = r[f"cons_{task}_risk"], r[f"cons_{task}_bound"]
        assert risk.shape == (2, 2, 3)
        assert np.all(risk >= float(r[f"cons_{task}_bayes"]) - bound)
    # Koenigs profile: a finite ratio for every paper dual, except at ε = 1 (ξ = 0, Φ = 0)
    assert r["koenigs_eps"][-1] == 1.0
    assert np.all(np.isfinite(r["koenigs_log_ratio"][:, :-1]))
    assert np.all(r["koenigs_log_ratio"][:, -1] == -np.inf)
    # digits: m̂ of MNIST on the sphere is ~10–14; 1-NN beats majority vote
    assert 6 < float(r["digits_m_hat"]) < 20
    d = dict(zip([str(s) for s in r["digits_labels"]], r["digits_accuracy"]))
    assert d["1-NN"] > d["majority vote"] + 0.3


@pytest.mark.slow  # the quick run's fixture takes ~2.5 min on 2 cores
def test_plot_and_summary(tiny):
    cfg, r = tiny
    figs = singular.plot(r, cfg)
    assert set(figs) == {
        "singular_taxonomy",
        "singular_dirichlet",
        "singular_consistency",
        "singular_koenigs",
        "singular_digits",
    }
    out = singular.summary(r, cfg)
    assert out["digits m_hat"] == pytest.approx(float(r["digits_m_hat"]))
    assert "dirichlet d=3 accuracy" in out


def test_cli_rejects_bad_flags():
    with pytest.raises(SystemExit) as e:
        singular.main(["--dims", "4"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        singular.main(["--digits-train", "5000"])
    assert e.value.code == 2
