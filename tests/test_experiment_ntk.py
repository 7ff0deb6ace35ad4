"""experiments.ntk: Jacot et al. (2018) Figs. 1–3 at the --quick settings.

One quick run (module fixture) feeds every check; ``main`` then reuses its cached pieces.
"""

import numpy as np
import pytest

import experiments._common
from experiments import ntk
from experiments._common import ResultStore

RUN = "t"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("ntk_results")


@pytest.fixture(scope="module")
def cfg():
    return ntk.Config(**ntk.QUICK)


@pytest.fixture(scope="module")
def res(cfg, root):
    return ntk.run(cfg, ResultStore("ntk", RUN, cfg, root=root))


def test_shapes_and_finite(res, cfg):
    for w in cfg.widths:
        for k in ("theta_0", "theta_t"):
            assert res[f"fig1_{k}_w{w}"].shape == (cfg.inits, cfg.n_gamma)
    assert res["fig1_theta_inf"].shape == (cfg.n_gamma,)
    for w in cfg.fig2_widths:
        assert res[f"fig2_f_t_w{w}"].shape == (cfg.fig2_inits, cfg.n_gamma)
    assert res["fig2_gp_percentiles"].shape == (3, cfg.n_gamma)
    n_t = cfg.fig3_steps // 10 + 1
    for w in cfg.fig3_widths:
        assert res[f"fig3_g_w{w}"].shape == (cfg.fig3_trials, n_t)
    assert res["fig3_parity_proj"].shape == (n_t, 4)
    assert res["fig3_pc23"].shape == (cfg.fig3_n, 2)
    for k, v in res.items():
        assert np.all(np.isfinite(v)), k


def test_finite_ntk_scatters_around_the_limit_and_tightens_with_width(res, cfg):
    inf = res["fig1_theta_inf"]
    narrow, wide = min(cfg.widths), max(cfg.widths)
    rms = {w: np.sqrt(np.mean((res[f"fig1_theta_0_w{w}"] - inf) ** 2)) for w in (narrow, wide)}
    # Fluctuations scale like 1/√n: √(500/50) ≈ 3.2; demand at least a factor 1.7.
    assert rms[wide] < rms[narrow] / 1.7
    # The average over inits is centred on Θ∞ (4 inits: SE ≈ sd/2 ≈ 8% of Θ∞ at n = 500).
    mean = res[f"fig1_theta_0_w{wide}"].mean(0)
    assert np.linalg.norm(mean - inf) < 0.2 * np.linalg.norm(inf)
    # Training moves the kernel less at larger width (lazy training).
    move = {
        w: np.abs(res[f"fig1_theta_t_w{w}"] - res[f"fig1_theta_0_w{w}"]).mean()
        for w in (narrow, wide)
    }
    assert move[wide] < move[narrow]


def test_trained_networks_fit_the_training_points(res, cfg):
    y = res["fig2_y_train"]
    for w in cfg.fig2_widths:
        np.testing.assert_allclose(
            res[f"fig2_f_train_w{w}"], np.broadcast_to(y, (cfg.fig2_inits, 4)), atol=1e-3
        )
    # The infinite-width law at the training points after t = η·steps: mean y, no variance.
    x = ntk.circle(res["fig2_train_gamma"])
    _, _, kernel_fn = ntk.network(1, cfg)
    mean, cov = ntk.trained_gp(cfg, kernel_fn, x, y[:, None], x, cfg.lr * cfg.fig2_steps)
    np.testing.assert_allclose(mean, y, atol=1e-3)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), 0.0, atol=1e-3)


def test_trained_functions_follow_the_infinite_width_gaussian(res, cfg):
    lo, _, hi = res["fig2_gp_percentiles"]
    f = res[f"fig2_f_t_w{max(cfg.fig2_widths)}"]
    inside = np.mean((f >= lo) & (f <= hi))
    # 80% expected; 10 correlated curves, so a wide band.
    assert 0.55 < inside < 0.98, inside


def test_convergence_follows_the_principal_components(res, cfg):
    lam = res["fig3_eigenvalues"]
    assert np.all(np.diff(lam) <= 0) and lam[-1] > 0
    # Target f0 + 0.5 f(2): the residual starts as 0.5 f(2) and decays along it.
    for w in cfg.fig3_widths:
        g, h = res[f"fig3_g_w{w}"], res[f"fig3_h_w{w}"]
        np.testing.assert_allclose(g[:, 0], 0.5, atol=1e-3)
        assert np.all(g[:, -1] < 0.25 * g[:, 0])
        assert np.all(h.max(1) < 0.3 * g[:, 0])  # close to the straight line
    # Parity targets: the top component (largest λ) is learned first, the theory in order.
    p = np.abs(res["fig3_parity_proj"])
    rel = p / p[0]
    i = 1  # t = 10 η
    assert rel[i, 0] < 0.5 and np.all(rel[i, 1:] > 0.6), rel[i]
    th = np.abs(res["fig3_parity_theory"]) / p[0]
    assert np.all(np.diff(th[-1]) >= 0)  # slower decay for smaller eigenvalues


def test_main_quick_writes_figures(res, root, monkeypatch):
    monkeypatch.setattr(experiments._common, "RESULTS_DIR", root)
    monkeypatch.setattr(experiments._common, "FIGS_DIR", root / "figs")
    out = ntk.main(["--quick", "--run", RUN])  # pieces cached by the fixture's run
    for stem in ("ntk_fig1", "ntk_fig2", "ntk_fig3"):
        assert (out / f"{stem}.png").stat().st_size > 10_000
        assert (out / f"{stem}.pdf").exists()
    assert not (root / "figs").exists()  # non-default runs stay out of paper_figs


@pytest.mark.parametrize(
    "argv",
    [["--widths", "-3"], ["--lr", "abc"], ["--fig3-inputs", "png"], ["--depth", "1"]],
)
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        ntk.main(argv)
    assert e.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_trained_gp_at_long_times_is_the_ntk_ensemble_posterior(cfg):
    """Our A_t-based law at t → ∞ equals Lee et al. (2019) eq. 16 (predict's closed form)."""
    import jax

    from theory.kernels.predict import ntk_ensemble_posterior

    x, xs = ntk.circle(ntk.FIG2_ANGLES), ntk.circle(np.linspace(-3, 3, 7))
    y = ntk.target(x)
    _, _, kernel_fn = ntk.network(1, cfg)
    mean, cov = ntk.trained_gp(cfg, kernel_fn, x, y, xs, 1e7)
    k_xx, th_xx = ntk.infinite_kernels(kernel_fn, x)
    k_sx, th_sx = ntk.infinite_kernels(kernel_fn, xs, x)
    k_ss, _ = ntk.infinite_kernels(kernel_fn, xs)
    with jax.enable_x64(True):
        ref = ntk_ensemble_posterior(th_xx, th_sx, k_xx, k_sx, k_ss, y)
        np.testing.assert_allclose(mean, np.asarray(ref.mean)[:, 0], atol=1e-8)
        np.testing.assert_allclose(cov, np.asarray(ref.covariance), atol=1e-8)
