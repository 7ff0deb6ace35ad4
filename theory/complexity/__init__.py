"""Inductive-bias complexity: how much information a task demands beyond its training data.

Boopathy et al. (2023), "Model-agnostic measure of generalization difficulty", ICML, §3:

    Ĩ = −log₂ P(test error ≤ ε | the hypothesis fits the training data),

for hypotheses drawn uniformly from band-limited functions on the data manifold. For
classification (§4–5; data = C copies of an m-sphere of radius R, resolution δ, n points,
D = C − 1 outputs bounded by B):

    M = 2πR/δ,   K = (√((m−1)² + 4M²) − (m−1)) / 2,
    E = binom(m+K, m) + binom(m+K−1, m),
    W = √(m/6) · (C |S^m| R^m / n)^(1/m),   L_f = K √D / R,
    dim Θ_q = 2 D C E − n D,
    Ĩ = dim Θ_q · log₂( B √(D C) · L_f · W / ε ).

It grows exponentially with m and polynomially with the resolution 1/δ. Modules:

- `measure`: the closed forms (classification, RL on a torus, meta-learning), float64 in
  log space, with a term-by-term breakdown;
- `estimators`: m (MLE, TwoNN), δ (sampled, extreme-value) and R from data, with a tiled JAX
  nearest-neighbour search;
- `tables`: the paper's tasks and sweeps;
- `montecarlo`: a sampling check of the definition on a torus.
"""

from theory.complexity.estimators import (
    ResolutionEstimate,
    TaskEstimate,
    evt_resolution,
    mle_from_distances,
    mle_intrinsic_dimension,
    mle_intrinsic_dimension_by_k,
    nearest_neighbors,
    neighbor_distances,
    sample_resolution,
    task_complexity,
    twonn_from_distances,
    twonn_intrinsic_dimension,
)
from theory.complexity.measure import (
    IBC,
    ComplexityTerms,
    classification_terms,
    eigenfunction_count,
    inductive_bias_complexity,
    log_ball_volume,
    log_sphere_area,
    meta_inductive_bias_complexity,
    meta_terms,
    rl_inductive_bias_complexity,
    rl_terms,
)
from theory.complexity.montecarlo import (
    TorusMonteCarlo,
    mse_success_probability,
    torus_features,
    torus_frequencies,
    torus_monte_carlo,
)
from theory.complexity.tables import (
    ALL_TASKS,
    CARTPOLE_TASKS,
    CIFAR10,
    IMAGE_TASKS,
    IMAGENET,
    MNIST,
    MUJOCO_TASKS,
    OMNIGLOT,
    SVHN,
    ClassificationTask,
    MetaTask,
    RLTask,
    omniglot_episodes,
    sweep,
)

__all__ = [
    "IBC",
    "ComplexityTerms",
    "inductive_bias_complexity",
    "classification_terms",
    "rl_inductive_bias_complexity",
    "rl_terms",
    "meta_inductive_bias_complexity",
    "meta_terms",
    "eigenfunction_count",
    "log_sphere_area",
    "log_ball_volume",
    "nearest_neighbors",
    "neighbor_distances",
    "mle_from_distances",
    "twonn_from_distances",
    "mle_intrinsic_dimension",
    "mle_intrinsic_dimension_by_k",
    "twonn_intrinsic_dimension",
    "sample_resolution",
    "evt_resolution",
    "ResolutionEstimate",
    "TaskEstimate",
    "task_complexity",
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
    "ALL_TASKS",
    "omniglot_episodes",
    "sweep",
    "torus_frequencies",
    "torus_features",
    "mse_success_probability",
    "TorusMonteCarlo",
    "torus_monte_carlo",
]
