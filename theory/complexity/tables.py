"""The tasks of Boopathy et al. (2023), §5, as data, and one-parameter sweeps of them.

Each task is a frozen dataclass holding the paper's parameters; ``task.terms()`` gives the
`ComplexityTerms` breakdown and ``task.ibc()`` the bits. Because the closed forms
broadcast, a sweep is the same task with one field replaced by an array (`sweep`).

Sources of the parameters: the paper's §5 and its public code
(github.com/FieteLab/inductive-bias-complexity, ``task_difficulty.py``); each constant below
cites which, and the one assumption (Omniglot's per-alphabet character counts) says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from theory.complexity.measure import (
    IBC,
    ComplexityTerms,
    classification_terms,
    meta_terms,
    rl_terms,
)

__all__ = [
    "ClassificationTask",
    "RLTask",
    "MetaTask",
    "MNIST",
    "SVHN",
    "CIFAR10",
    "IMAGENET",
    "IMAGE_TASKS",
    "CARTPOLE_TASKS",
    "MUJOCO_TASKS",
    "OMNIGLOT",
    "OMNIGLOT_CHARACTERS_PER_ALPHABET",
    "omniglot_episodes",
    "ALL_TASKS",
    "sweep",
]


@dataclass(frozen=True)
class ClassificationTask:
    """C-way classification (Boopathy et al. 2023, §5.1); see `classification_terms`."""

    name: str
    n: float  # training points
    m: float  # intrinsic dimension
    radius: float  # R, largest training-point norm (pixels scaled to [0, 1])
    delta: float  # δ, smallest distance between classes
    num_classes: float  # C
    error: float  # ε
    kind: str = "image classification"

    def terms(self) -> ComplexityTerms:
        return classification_terms(
            self.n, self.m, self.radius, self.delta, self.num_classes, self.error
        )

    def ibc(self) -> IBC:
        return self.terms().ibc()


@dataclass(frozen=True)
class RLTask:
    """A policy on an m-torus of observations (Boopathy et al. 2023, §5.2); see `rl_terms`."""

    name: str
    m: float  # observation dimension
    action_dim: float  # D
    n: float  # observations (time steps) seen in training
    delta: float  # δ, spatial resolution
    error: float  # ε
    kind: str = "reinforcement learning"

    def terms(self) -> ComplexityTerms:
        return rl_terms(self.m, self.action_dim, self.n, self.delta, self.error)

    def ibc(self) -> IBC:
        return self.terms().ibc()


@dataclass(frozen=True)
class MetaTask:
    """N-way one-shot meta-learning (Boopathy et al. 2023, §5.3); see `meta_terms`."""

    name: str
    n: float  # training episodes
    m_within: float  # m₀, image dimension within an alphabet
    m_across: float  # m₁, image dimension across alphabets
    radius: float  # R
    delta: float  # δ
    error: float  # ε
    ways: float = 20  # N
    kind: str = "meta-learning"

    def terms(self) -> ComplexityTerms:
        return meta_terms(
            self.n, self.m_within, self.m_across, self.radius, self.delta, self.error, self.ways
        )

    def ibc(self) -> IBC:
        return self.terms().ibc()


# ------------------------------------------------------------ image classification
# (n, R, m, C, δ, ε) as passed in the paper's code (task_difficulty.py, `task_data` and the
# per-data-set calls): R and δ measured on the training sets with pixels in [0, 1], m the
# rounded MLE estimate. ImageNet's values are hard-coded there, not measured in the script.
MNIST = ClassificationTask("MNIST", 60000, 14, 17.179045827183984, 2.3987084824335305, 10, 1e-3)
SVHN = ClassificationTask("SVHN", 73257, 19, 53.86932485133339, 1.5766998174969105, 10, 1e-2)
CIFAR10 = ClassificationTask("CIFAR-10", 50000, 27, 54.9156786783691, 2.7506414616587023, 10, 1e-2)
IMAGENET = ClassificationTask("ImageNet", 1280901, 48, 943.5923, 65.0, 1000, 0.1)
IMAGE_TASKS = (MNIST, SVHN, CIFAR10, IMAGENET)

# ---------------------------------------------------------- reinforcement learning
# Simplified cart-pole with T observations of the pole angle and velocity: m = 2T, D = 1,
# n = 100 episodes × 100 steps, δ = 0.001 rad, ε = 1 mistake per 1000 steps (paper's code).
CARTPOLE_TASKS = tuple(RLTask(f"Cart-pole T={T}", 2 * T, 1, 1e4, 1e-3, 1e-3) for T in range(1, 6))
# MuJoCo (m observation dims, D action dims) as in the paper's code, n = 10⁶ steps,
# δ = ε = 10⁻³. Note: the paper's Hopper uses (15, 4), not Gym's Hopper-v3 (11, 3).
MUJOCO_TASKS = (
    RLTask("Reacher", 6, 2, 1e6, 1e-3, 1e-3),
    RLTask("Hopper", 15, 4, 1e6, 1e-3, 1e-3),
    RLTask("Half-Cheetah", 17, 6, 1e6, 1e-3, 1e-3),
)

# ------------------------------------------------------------------- meta-learning
# Omniglot characters per alphabet, background (30 alphabets, 964 characters) then evaluation
# (20 alphabets, 659). ASSUMPTION: the paper's code counts them from the image folders, which
# are not reproduced here; these counts are the data set's (they sum to the published 964 and
# 659), and which split the paper globbed is not stated — we use both. n enters Ĩ only through
# dim Θ_q = dim Θ − n D with dim Θ ~ 1e145 ≫ n D ~ 1e62, so Ĩ does not depend on this choice.
OMNIGLOT_CHARACTERS_PER_ALPHABET = (
    20, 29, 26, 41, 40, 24, 46, 14, 26, 34, 33, 22, 26, 43, 24,
    48, 22, 16, 52, 47, 40, 26, 40, 41, 33, 14, 42, 23, 17, 55,
    20, 26, 26, 26, 26, 26, 45, 45, 41, 26, 47, 40, 30, 45, 46, 28, 23, 25, 42, 26,
)  # fmt: skip


def omniglot_episodes(characters_per_alphabet=OMNIGLOT_CHARACTERS_PER_ALPHABET, ways=20):
    """Number of distinct N-way one-shot episodes: Σ_alphabets binom(max(c, N), N) · N^N.

    One episode picks N characters of one alphabet and one of the 20 drawers per character
    (20 drawers per character in Omniglot, N^N with N = 20); alphabets with fewer than N
    characters count once, as in the paper's code.
    """
    c = np.maximum(np.asarray(characters_per_alphabet, dtype=np.float64), ways)
    log_binom = gammaln(c + 1) - gammaln(ways + 1) - gammaln(c - ways + 1)
    return float(np.sum(np.exp(log_binom + ways * np.log(20.0))))


# m₀ = 22, m₁ = 29, R = 49.406, δ = 5.4772, ε = 0.01: the paper's code (20-way one-shot).
OMNIGLOT = MetaTask(
    "Omniglot 20-way 1-shot",
    omniglot_episodes(),
    22,
    29,
    49.4064773081425,
    5.477225575051661,
    0.01,
)

ALL_TASKS = (*IMAGE_TASKS, *CARTPOLE_TASKS, *MUJOCO_TASKS, OMNIGLOT)


def sweep(task, parameter: str, values) -> ComplexityTerms:
    """``task``'s `ComplexityTerms` with ``parameter`` replaced by the array ``values``.

    Example: ``sweep(IMAGENET, "m", np.arange(10, 101))`` (Boopathy et al. 2023, §5.1,
    the ImageNet sweeps against m, δ, C, ε and n).
    """
    names = {f.name for f in dataclasses.fields(task)} - {"name", "kind"}
    if parameter not in names:
        raise ValueError(f"parameter must be one of {sorted(names)}, got {parameter!r}")
    return dataclasses.replace(task, **{parameter: np.asarray(values, dtype=np.float64)}).terms()
