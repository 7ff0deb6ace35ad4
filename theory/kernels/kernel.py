"""The `Kernel` state carried through a network description, and input validation.

A `Kernel` holds, for two batches of inputs ``x1`` (n1 points) and ``x2`` (n2 points),
the covariances of a layer's pre-activations in the infinite-width limit:

============  ==========  ==========================================================
field         shape       meaning
============  ==========  ==========================================================
``nngp``      (n1, n2)    K(x1_i, x2_j) = E[z(x1_i) z(x2_j)]  (NNGP kernel)
``ntk``       (n1, n2)    Θ(x1_i, x2_j), or None when only the NNGP is asked for
``cov1``      (n1,)       K(x1_i, x1_i)
``cov2``      (n2,)       K(x2_j, x2_j), or None when x2 is x1
``width``     static      channel count of the finite network at this point (needed by
                          the standard parameterization, Sohl-Dickstein et al. 2020)
``is_gaussian`` static    the pre-activations are a centred GP (true after a Dense)
``diag_offset`` ()        for a tile of a symmetric kernel: entry (r, c) pairs a point
                          with itself iff r + diag_offset == c; None elsewhere
============  ==========  ==========================================================

Conventions follow neural-tangents: the input kernel is ``x1·x2ᵀ / d`` and the NTK is 0
before the first trainable layer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Kernel:
    """Infinite-width covariances of one layer (see module docstring for the fields)."""

    nngp: jax.Array
    ntk: jax.Array | None
    cov1: jax.Array
    cov2: jax.Array | None
    width: int = dataclasses.field(metadata=dict(static=True))
    is_gaussian: bool = dataclasses.field(default=False, metadata=dict(static=True))
    diag_offset: jax.Array | None = None

    def replace(self, **kw: Any) -> Kernel:
        return dataclasses.replace(self, **kw)

    def var2(self) -> jax.Array:
        return self.cov1 if self.cov2 is None else self.cov2

    def outer_vars(self) -> tuple[jax.Array, jax.Array]:
        """``(q11, q22)`` broadcastable against ``nngp``: shapes (n1, 1) and (1, n2)."""
        return self.cov1[:, None], self.var2()[None, :]

    def self_pairs(self) -> tuple[jax.Array, jax.Array] | None:
        """Indices (rows, cols) of the entries that pair a point with itself, or None.

        Untiled symmetric kernel: the diagonal. Tile of a symmetric kernel: (r, r + offset),
        with out-of-range columns (tiles off the diagonal) set past the end, so that
        ``.at[rows, cols].set(..., mode="drop")`` skips them.
        """
        n1, n2 = self.nngp.shape
        rows = jnp.arange(n1)
        if self.diag_offset is not None:
            cols = rows + self.diag_offset
            return rows, jnp.where((cols >= 0) & (cols < n2), cols, n2)
        if self.cov2 is None:
            return rows, rows
        return None


def check_inputs(x1: Any, x2: Any = None, name1: str = "x1", name2: str = "x2"):
    """Validate a pair of input batches; return them as arrays of a common float dtype."""
    x1 = _check_matrix(x1, name1)
    if x2 is not None:
        x2 = _check_matrix(x2, name2)
        if x1.shape[1] != x2.shape[1]:
            raise ValueError(
                f"{name1} and {name2} must have the same feature dimension, got "
                f"{name1}.shape={x1.shape} and {name2}.shape={x2.shape}"
            )
        dtype = jnp.result_type(x1.dtype, x2.dtype)
        x1, x2 = x1.astype(dtype), x2.astype(dtype)
    return x1, x2


def _check_matrix(x: Any, name: str) -> jax.Array:
    if isinstance(x, jax.core.Tracer):
        arr = x
    else:
        if not hasattr(x, "shape"):
            x = np.asarray(x)
        arr = x
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_points, n_features), got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must have at least one point (row), got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one feature, got shape {arr.shape}")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        if jnp.issubdtype(arr.dtype, jnp.integer) or arr.dtype == bool:
            arr = jnp.asarray(arr, dtype=jnp.result_type(float))
        else:
            raise TypeError(f"{name} must be a real floating-point array, got dtype {arr.dtype}")
    if not isinstance(arr, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(arr))):
        raise ValueError(f"{name} contains NaN or inf")
    return jnp.asarray(arr)


def input_kernel(x1: jax.Array, x2: jax.Array | None, compute_ntk: bool) -> Kernel:
    """The kernel of the raw inputs: ``x1 x2ᵀ / d`` (neural-tangents' convention)."""
    d = x1.shape[1]
    y = x1 if x2 is None else x2
    nngp = jnp.dot(x1, y.T, precision=jax.lax.Precision.HIGHEST) / d  # (n1, n2)
    cov1 = jnp.sum(x1 * x1, axis=1) / d  # (n1,)
    cov2 = None if x2 is None else jnp.sum(x2 * x2, axis=1) / d
    ntk = jnp.zeros_like(nngp) if compute_ntk else None
    return Kernel(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, width=d, is_gaussian=False)
