r"""Training the information-plane network, many seeds at once, recording every layer.

Shwartz-Ziv & Tishby (2017), §3: a fully connected 12-10-7-5-4-3-2 network with a softmax
output, trained with cross-entropy on the 4096-input Tishby data set; the hidden activation is
tanh in the original, ReLU in Saxe et al. (2018), and others in Chelombiev, Houghton & O'Donnell
(2019). The layers' activations on **all 4096 inputs** are what the information plane needs,
at log-spaced epochs (storing every epoch of 10⁴ would take gigabytes): `train` runs the
epochs between two recording points in compiled chunks of `CHUNK` epochs, calls
``record(layers)`` (e.g. the MI estimators of `theory.information`) on the layers at each
recording point, and keeps only what ``record`` returns. Seeds run together under `jax.vmap`.

Optimiser: optax's Adam (learning rate 4e-4 in the original), L2 by
`optax.add_decayed_weights` on the hidden layers' weights (λ‖W‖²/2 added to the loss ⇔
gradient + λW; not on biases or the output layer, as in Chelombiev et al.'s code).
Initialisation: W ~ truncated normal with standard deviation 1/√fan_in, b = 0 (the original
code's `tf.truncated_normal(stddev=1/sqrt(fan_in))`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

LAYERS = (12, 10, 7, 5, 4, 3, 2)

ACTIVATIONS: dict[str, Callable] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "elu": jax.nn.elu,
    "softsign": jax.nn.soft_sign,
    "softplus": jax.nn.softplus,
    "centred_softplus": lambda z: jax.nn.softplus(z) - math.log(2.0),
    "linear": lambda z: z,
}


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (the original study's defaults).

    activation: hidden activation, a key of `ACTIVATIONS`; learning_rate: Adam's; batch_size:
    minibatch size, or None for full batch; train_fraction: share of the 4096 inputs used for
    training; split: 'random' (a fresh permutation per seed) or 'original' (the first rows,
    unshuffled, as the original code does: train p(y = 1) ≈ 0.44, test ≈ 0.84); l2: weight of
    λ‖W‖²/2 over the hidden layers' weights (0: none); layers: widths from input to output.
    """

    activation: str = "tanh"
    learning_rate: float = 4e-4
    batch_size: int | None = 256
    train_fraction: float = 0.8
    split: str = "random"
    l2: float = 0.0
    layers: tuple[int, ...] = LAYERS

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if self.batch_size is not None and (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise ValueError(
                f"batch_size must be a positive integer or None, got {self.batch_size!r}"
            )
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must lie in (0, 1], got {self.train_fraction!r}")
        if self.split not in ("random", "original"):
            raise ValueError(f"split must be 'random' or 'original', got {self.split!r}")
        if not (math.isfinite(self.l2) and self.l2 >= 0):
            raise ValueError(f"l2 must be a non-negative number, got {self.l2!r}")
        if len(self.layers) < 2 or any(int(w) < 1 for w in self.layers):
            raise ValueError(f"layers must be ≥ 2 positive widths, got {self.layers!r}")


def init_params(key, layers: Sequence[int]) -> list[tuple[jax.Array, jax.Array]]:
    """[(W, b)] with W ~ truncated normal (±2 s.d.) of s.d. 1/√fan_in, b = 0."""
    params = []
    for k, (fan_in, fan_out) in zip(
        jax.random.split(key, len(layers) - 1), zip(layers, layers[1:])
    ):
        w = jax.random.truncated_normal(k, -2.0, 2.0, (fan_in, fan_out)) / math.sqrt(fan_in)
        params.append((w, jnp.zeros((fan_out,))))
    return params


def forward(params, x, activation: str) -> list[jax.Array]:
    """Every layer's output for inputs x: the hidden activations, then the softmax output."""
    act = ACTIVATIONS[activation]
    outs, h = [], x
    for i, (w, b) in enumerate(params):
        z = h @ w + b
        h = jax.nn.softmax(z) if i == len(params) - 1 else act(z)
        outs.append(h)
    return outs


def _loss(params, x, y, activation):
    logits_in = x
    for i, (w, b) in enumerate(params):
        z = logits_in @ w + b
        logits_in = z if i == len(params) - 1 else ACTIVATIONS[activation](z)
    return optax.softmax_cross_entropy_with_integer_labels(logits_in, y).mean()


def split_indices(n: int, cfg: TrainConfig, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices: the first ⌊f n⌉ rows ('original'), or a random permutation
    drawn from ``np.random.default_rng([seed, 1])`` ('random')."""
    n_train = int(round(cfg.train_fraction * n))
    if cfg.split == "original":
        order = np.arange(n)
    else:
        if seed is None:
            raise ValueError("seed must be an integer for split='random'")
        order = np.random.default_rng([int(seed), 1]).permutation(n)
    return order[:n_train], order[n_train:]


# Epochs per compiled chunk: the minibatch orders of a chunk (seeds × CHUNK × n_train int32)
# are drawn on the host and passed in; one compilation serves every chunk.
CHUNK = 64


@functools.lru_cache(maxsize=32)
def _compiled(cfg: TrainConfig, n_batches: int, batch: int, record: Callable):
    """The jitted, seed-vmapped pieces of `train` for one configuration (cached)."""
    n_hidden = len(cfg.layers) - 2
    opt = optax.adam(cfg.learning_rate)
    if cfg.l2 > 0:
        mask = [(i < n_hidden, False) for i in range(len(cfg.layers) - 1)]
        opt = optax.chain(optax.add_decayed_weights(cfg.l2, mask=mask), opt)

    def one_epoch(state, x, y, order):
        def step(carry, idx):
            params, opt_state = carry
            grads = jax.grad(_loss)(params, x[idx], y[idx], cfg.activation)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        state, _ = jax.lax.scan(step, state, order.reshape(n_batches, batch))
        return state

    @jax.jit
    def run_chunk(states, x, y, orders, count):
        # orders: (seeds, CHUNK, n_batches · batch); epochs 0 … count − 1 of the chunk
        def one(state, order):
            return jax.lax.fori_loop(0, count, lambda e, s: one_epoch(s, x, y, order[e]), state)

        return jax.vmap(one)(states, orders)

    @jax.jit
    def init(keys):
        def one(key):
            params = init_params(key, cfg.layers)
            return params, opt.init(params)

        return jax.vmap(one)(keys)

    @jax.jit
    def observe(params, x, y, tr, te):
        def one(params, tr, te):
            layers = forward(params, x, cfg.activation)
            pred = jnp.argmax(layers[-1], axis=1)
            out = dict(record(layers))
            out["train_loss"] = _loss(params, x[tr], y[tr], cfg.activation)
            out["train_acc"] = jnp.mean(pred[tr] == y[tr])
            out["test_acc"] = jnp.mean(pred[te] == y[te]) if te.shape[0] else jnp.nan
            return out

        return jax.vmap(one)(params, tr, te)

    return init, run_chunk, observe


def _layers_record(layers):
    return {f"layer{i}": h for i, h in enumerate(layers)}


def train(
    cfg: TrainConfig,
    x,
    y,
    seeds: Sequence[int],
    record_epochs: Sequence[int],
    record: Callable | None = None,
) -> dict[str, np.ndarray]:
    """Train one network per seed (vmapped) and record at the given epochs.

    ``record(layers)`` gets the list of every layer's outputs on all inputs, each of shape
    (n, width), for one seed, and returns a dict of arrays (default: the layers themselves,
    ``layer0`` …); it is traced under `jax.jit` and vmapped over seeds. Returns, for each
    recorded key, an array of shape (len(seeds), len(record_epochs), ...), plus
    ``train_loss``/``train_acc``/``test_acc`` of shape (seeds, epochs recorded). Epoch 0 is the
    initialisation; epoch e is after e passes over the training set.

    Randomness per seed s: the initial weights from ``jax.random.PRNGKey(s)``; the split and
    every epoch's minibatch order from numpy's ``default_rng([s, 1])`` and ``default_rng([s,
    2])`` (one fresh permutation of the training rows per epoch; the last partial batch is
    dropped). A run is the same whatever ``record_epochs`` and whichever other seeds run
    beside it. A non-finite training loss at a recording point raises FloatingPointError.
    """
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.int32)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be (n, d) and y (n,), got {x.shape} and {y.shape}")
    if x.shape[1] != cfg.layers[0]:
        raise ValueError(f"x has {x.shape[1]} features but cfg.layers[0] = {cfg.layers[0]}")
    epochs = [int(e) for e in record_epochs]
    if not epochs or epochs[0] < 0 or any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise ValueError(f"record_epochs must be increasing non-negative integers, got {epochs}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must be non-empty")
    n = x.shape[0]
    splits = [split_indices(n, cfg, s) for s in seeds]
    n_train = len(splits[0][0])
    batch = n_train if cfg.batch_size is None else min(cfg.batch_size, n_train)
    n_batches = n_train // batch
    init, run_chunk, observe = _compiled(
        cfg, n_batches, batch, _layers_record if record is None else record
    )
    train_idx = np.stack([s[0] for s in splits]).astype(np.int32)
    test_idx = jnp.asarray(np.stack([s[1] for s in splits]).astype(np.int32))
    rngs = [np.random.default_rng([s, 2]) for s in seeds]

    def orders(count):
        out = np.zeros((len(seeds), CHUNK, n_batches * batch), np.int32)
        for i, (rng, tr) in enumerate(zip(rngs, train_idx)):
            for e in range(count):
                out[i, e] = tr[rng.permutation(n_train)[: n_batches * batch]]
        return jnp.asarray(out)

    states = init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    results: list[dict] = []
    done = 0
    for epoch in epochs:
        while done < epoch:
            count = min(CHUNK, epoch - done)
            states = run_chunk(states, x, y, orders(count), count)
            done += count
        out = jax.device_get(observe(states[0], x, y, jnp.asarray(train_idx), test_idx))
        bad = ~np.isfinite(out["train_loss"])
        if bad.any():
            raise FloatingPointError(
                f"training diverged: non-finite loss at epoch {epoch} for seeds "
                f"{[s for s, b in zip(seeds, bad) if b]} (lower learning_rate?)"
            )
        results.append(out)
    return {k: np.stack([r[k] for r in results], axis=1) for k in results[0]}
