"""The information plane: the Tishby data set and mutual-information estimators, in bits.

Shwartz-Ziv & Tishby (2017, arXiv:1703.00810) follow every layer T of a network in the plane
(I(X;T), I(T;Y)) during training; Saxe et al. (2018, ICLR) and Chelombiev, Houghton &
O'Donnell (2019, ICLR) revisit it with other activations and estimators. For a deterministic
layer on N distinct equiprobable inputs, I(X;T) = H(T), so what these estimators measure is
how the layer clusters the inputs at the estimator's scale (binning width, KDE noise).

- `data`: `tishby_dataset` (4096 12-bit inputs, icosahedron labels), `ANTIPODES`, `NEIGHBOURS`;
- `estimators`: `binned_mi` with edge helpers `tishby_edges`, `fixed_width_edges`,
  `range_edges`; `adaptive_binned_mi` (EBAB); `kde_mi` (Kolchinsky–Tracey upper and
  Bhattacharyya lower bounds, a `KDEMI`); `adaptive_kde_mi`;
- `training`: the 12-10-7-5-4-3-2 network trained with optax's Adam, seeds vmapped, every
  layer on all 4096 inputs handed to a ``record`` hook (e.g. the estimators) at chosen epochs.

The experiment `experiments.infoplane` (``make fig-infoplane``) reproduces the three papers'
figures with these pieces; `benchmarks.information` (in ``make bench``) times the estimators.
"""

from theory.information.data import ANTIPODES, NEIGHBOURS, icosahedron_edges, tishby_dataset
from theory.information.estimators import (
    KDEMI,
    adaptive_binned_mi,
    adaptive_kde_mi,
    binned_mi,
    fixed_width_edges,
    kde_mi,
    range_edges,
    tishby_edges,
)
from theory.information.training import ACTIVATIONS, LAYERS, TrainConfig, train

__all__ = [
    "ACTIVATIONS",
    "ANTIPODES",
    "KDEMI",
    "LAYERS",
    "NEIGHBOURS",
    "TrainConfig",
    "adaptive_binned_mi",
    "adaptive_kde_mi",
    "binned_mi",
    "fixed_width_edges",
    "icosahedron_edges",
    "kde_mi",
    "range_edges",
    "tishby_dataset",
    "tishby_edges",
    "train",
]
