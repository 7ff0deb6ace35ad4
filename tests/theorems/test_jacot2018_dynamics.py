"""Jacot, Gabriel & Hongler (2018), §5: least-squares training in function space.

Claim: under gradient flow on the MSE with a fixed kernel Θ, the residual f − y decays along the
kernel's principal components independently, component i at rate η λ_i (in neural-tangents'
normalisation, exp(−η λ_i t / |Y|) with |Y| = y_train.size); gradient descent with finite step η
follows the flow with an O(η) error.
"""

import numpy as np

import theory.kernels.predict as predict

EXACT = 1e-10  # float64 identities (eigendecomposition, expm1), relative to the initial residual
N, N_OUT = 8, 2
SPECTRUM = np.logspace(1, -3, N)  # λ_i from 10 to 1e-3: rates differ by four decades


def spread_kernel(seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((N, N)))
    k = q @ np.diag(SPECTRUM) @ q.T
    return (k + k.T) / 2


def test_residual_decays_along_principal_components_at_rate_exp_minus_eta_lambda_t(x64):
    rng = np.random.default_rng(1)
    k = spread_kernel()
    y, f0 = rng.standard_normal((N, N_OUT)), rng.standard_normal((N, N_OUT))
    lr = 0.7
    times = np.array([0.0, 0.3, 3.0, 30.0, 300.0, 3000.0, np.inf])

    # Residuals predicted by the closed-form flow, projected on Θ's eigenvectors.
    residual_t = np.asarray(predict.gradient_descent_mse(k, y, lr)(times, f0)) - y
    projections = np.asarray(predict.project_onto_principal_components(k, residual_t))
    theory = predict.principal_component_decay(k, f0 - y, times, lr)

    # The theorem with numpy's own eigenvalues: v_iᵀ r(t) = exp(−η λ_i t/|Y|) v_iᵀ r(0).
    lam = np.sort(np.linalg.eigvalsh(k))[::-1]
    np.testing.assert_allclose(theory.eigenvalues, lam, rtol=1e-12)
    decay = np.exp(-lr * lam[None, :] * times[:, None] / y.size)  # (T, N)
    want = decay[..., None] * np.asarray(theory.projection_0)  # (T, N, K)
    scale = np.max(np.abs(theory.projection_0))
    np.testing.assert_allclose(projections, want, rtol=0, atol=EXACT * scale)
    np.testing.assert_allclose(theory.projection_t, want, rtol=0, atol=EXACT * scale)
    np.testing.assert_allclose(theory.decay, decay, rtol=EXACT, atol=0)

    # Principal components converge first: at t = 3, the top component has shrunk by
    # e^{−0.7·10·3/16} ≈ 0.27 while the bottom one is unchanged to 1e-3.
    assert decay[2, 0] < 0.3 and decay[2, -1] > 0.999


def test_discrete_gradient_descent_approaches_the_flow_at_rate_O_eta(x64):
    rng = np.random.default_rng(2)
    k = spread_kernel(seed=3)
    y, f0 = rng.standard_normal((N, N_OUT)), rng.standard_normal((N, N_OUT))
    horizon = 4.0  # absolute time η·steps, at which the top component has decayed by e^{-2.5}
    flow = np.asarray(predict.gradient_descent_mse(k, y, learning_rate=1.0)(horizon, f0))

    def gradient_descent(eta):
        # f ← f − (η/|Y|) Θ (f − y): gradient descent on L = ‖f − y‖²/(2|Y|) in function space.
        f = f0.copy()
        for _ in range(round(horizon / eta)):
            f = f - (eta / y.size) * k @ (f - y)
        return f

    etas = [0.2, 0.1, 0.05, 0.025]
    errors = [np.max(np.abs(gradient_descent(eta) - flow)) for eta in etas]
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert errors[-1] < 1e-2 * np.max(np.abs(f0 - y))
    assert np.all((ratios >= 1.7) & (ratios <= 2.3)), ratios
