r"""Classifiers of infinitely wide networks at finite and infinite depth, as scikit-learn
estimators (Radhakrishnan, Belkin & Uhler 2023, Thms. 1–3).

An infinitely wide network trained to interpolate on (X, Y) (Y one-hot) predicts
f(x) = K(x, X) K(X, X)⁻¹ Y with its NNGP or NTK kernel K, and the class argmaxₖ fₖ(x). With a
normalised dual the training kernel at depth L is K(X, X) = I + c^L Φ(X, X) + o(c^L) off the
diagonal (singular duals), so

    f(x) = c^L Φ(x, X) Y + O(c^{2L})   ⇒   argmaxₖ Σ_{j: yⱼ = k} Φ(x, xⱼ)         (L → ∞):

a Nadaraya–Watson rule with the singular kernel Φ ≍ ‖x − z‖^(−α). For a₀ ≠ 0 every
off-diagonal entry tends to the attracting fixed point ξ* and f(x) → ξ* 1ᵀ K⁻¹ Y ∝ class
counts: majority vote. For a₀ = a₁ = 0 the entry with the largest Böttcher coordinate wins —
on data with xᵀz ≥ 0, the nearest neighbour. The NTK has the same limit (slower: it needs
depth ≫ 1/‖x − z‖²).

A test point equal to a training point (Φ = ∞) gets that point's label (a vote among exact
copies if the training set repeats it), without NaN. `predict_proba` returns the normalised
non-negative class scores (the share of kernel weight per class; not calibrated).
"""

from __future__ import annotations

import math
import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.neighbors import NearestNeighbors
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from theory.complexity.estimators import mle_from_distances
from theory.singular import kernels as sk
from theory.singular.duals import Dual

# test rows per tile: (tile × n_train) float64 work arrays; 512 rows ran 3.0 s against 2048
# rows' 3.6 s (predict, n = 6000, 2 shared cores)
_TILE = 512


def _sphere(x, normalize: bool, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if normalize:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise ValueError(f"{name}: a zero row cannot be normalised onto the sphere")
        x = x / norms
    return sk.check_sphere(x, name)


def _vote(weights_sign, weights_log, onehot):
    """Class scores Σⱼ sⱼ e^{lⱼ − max l} Yⱼ per row, and exact-match votes where l = +inf."""
    exact = jnp.isinf(weights_log) & (weights_log > 0)
    any_exact = jnp.any(exact, axis=1, keepdims=True)
    finite = jnp.where(exact, -jnp.inf, weights_log)
    top = jnp.max(finite, axis=1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    w = weights_sign * jnp.exp(finite - top)
    scores = w @ onehot
    exact_scores = (exact * weights_sign) @ onehot
    return jnp.where(any_exact, exact_scores, scores)


def _proba(scores: np.ndarray) -> np.ndarray:
    pos = np.maximum(scores, 0)
    total = pos.sum(axis=1, keepdims=True)
    k = scores.shape[1]
    return np.where(total > 0, pos / np.where(total > 0, total, 1), 1.0 / k)


def interpolation_coefficients(K: np.ndarray, onehot: np.ndarray, depth) -> np.ndarray:
    """A = (K/max diag K)⁻¹ Y for the interpolating kernel regression f(x) = K(x, X)K⁻¹Y.

    The NTK's diagonal grows like λ^L while test entries shrink like c^L: K(x, X)K⁻¹Y
    underflows (1e-170 · 1e-170) long before either factor does. So the solve uses K/max diag
    and `interpolation_scores` scales each test row by its own maximum: the argmax (and the
    normalised scores) do not change under positive per-row factors. An ill-conditioned K
    warns naming the cause; a non-finite A raises FloatingPointError."""
    K = K / np.max(np.diag(K))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", scipy.linalg.LinAlgWarning)
        try:
            coef = scipy.linalg.solve(K, onehot, assume_a="pos")
        except (np.linalg.LinAlgError, ValueError):
            coef = scipy.linalg.solve(K, onehot)
    if any(issubclass(w.category, scipy.linalg.LinAlgWarning) for w in caught):
        warnings.warn(
            f"X: the depth-{depth} training kernel is ill-conditioned (near-duplicate "
            "points, or a depth at which distinct points' kernel rows coincide): the "
            "interpolating coefficients are inaccurate; depth='inf' has no solve",
            scipy.linalg.LinAlgWarning,
            stacklevel=3,
        )
    if not np.all(np.isfinite(coef)):
        raise FloatingPointError("the training kernel could not be inverted (non-finite)")
    return coef


def interpolation_scores(k: np.ndarray, coef: np.ndarray, depth) -> np.ndarray:
    """Class scores (k/rowmax|k|) A of test rows k = K(x, X), with A from
    `interpolation_coefficients`; FloatingPointError if a row underflowed to all zeros."""
    if np.any(np.all(k == 0, axis=1)):
        raise FloatingPointError(
            f"the depth-{depth} kernel underflows to 0 for some test points (c^L below "
            "1e-308): use a smaller depth or depth='inf'"
        )
    return (k / np.max(np.abs(k), axis=1, keepdims=True)) @ coef


class _KernelVoteClassifier(ClassifierMixin, BaseEstimator):
    """Shared fit/predict plumbing: subclasses implement ``_scores(X) -> (n, n_classes)``."""

    _on_sphere = True  # False: any points of ℝᵈ, on the sphere only when normalize=True

    def _points(self, X):
        return _sphere(X, self.normalize, "X") if self._on_sphere or self.normalize else X

    def _validate_train(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, ensure_min_samples=1)
        check_classification_targets(y)
        self.classes_, yi = np.unique(y, return_inverse=True)
        self.X_fit_ = X = self._points(X)
        self.onehot_ = np.eye(len(self.classes_))[yi]
        return X

    def _validate_test(self, X):
        check_is_fitted(self, "X_fit_")
        return self._points(validate_data(self, X, dtype=np.float64, reset=False))

    def decision_function_scores(self, X) -> np.ndarray:
        """The (n, n_classes) class scores whose argmax is the prediction."""
        X = self._validate_test(X)
        if len(self.classes_) == 1:
            return np.ones((len(X), 1))
        return np.concatenate(
            [self._scores(X[i : i + _TILE]) for i in range(0, len(X), _TILE)], axis=0
        )

    def predict(self, X):
        scores = self.decision_function_scores(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_proba(self, X):
        return _proba(self.decision_function_scores(X))


# ------------------------------------------------------------------ singular kernel


class SingularKernelClassifier(_KernelVoteClassifier):
    r"""Nadaraya–Watson classification with the singular kernel K(x, z) = ‖x − z‖^(−α):

        ŷ(x) = argmaxₖ Σ_{j: yⱼ = k} ‖x − xⱼ‖^(−α),

    evaluated in log space (no overflow for any α). Inputs anywhere in ℝᵈ (no sphere needed);
    ``normalize=True`` projects them onto the unit sphere first. α = d is Devroye, Györfi &
    Krzyżak's Hilbert kernel estimate (weakly Bayes-consistent for any data density on ℝᵈ;
    α = m on data of intrinsic dimension m)."""

    _on_sphere = False

    def __init__(self, alpha: float = 1.0, normalize: bool = False):
        self.alpha = alpha
        self.normalize = normalize

    def fit(self, X, y):
        return self._fit(X, y, self.alpha)

    def _fit(self, X, y, a):
        if isinstance(a, bool) or not (isinstance(a, numbers.Real) and math.isfinite(a) and a > 0):
            raise ValueError(f"alpha must be a positive finite number, got {a!r}")
        self._validate_train(X, y)
        self.alpha_ = float(a)
        return self

    def _scores(self, X):
        with jax.enable_x64(True):
            eps = sk._half_sq_dist(jnp.asarray(X), jnp.asarray(self.X_fit_), 1.0)
            log_w = jnp.where(eps > 0, -self.alpha_ / 2 * jnp.log(2 * eps), jnp.inf)
            return np.asarray(_vote(jnp.ones_like(log_w), log_w, jnp.asarray(self.onehot_)))


class HilbertKernelClassifier(SingularKernelClassifier):
    r"""The Hilbert kernel estimate: `SingularKernelClassifier` with α = intrinsic dimension.
    ``alpha=None`` estimates it at fit time from the training inputs by the Levina–Bickel
    MLE with k = ``k_neighbors`` over the distinct training points,

        1/m̂ = (1/N) Σᵢ (1/(k−1)) Σ_{j<k} ln(Tₖ(xᵢ)/Tⱼ(xᵢ))     (Levina & Bickel 2004,
                                                         pooled as MacKay & Ghahramani 2005),

    Tⱼ(x) the distance to the j-th nearest neighbour (`theory.complexity.mle_from_distances`
    on scikit-learn's exact float64 k-NN distances); ``alpha_`` holds the value used."""

    def __init__(self, alpha: float | None = None, normalize: bool = False, k_neighbors: int = 10):
        self.alpha = alpha
        self.normalize = normalize
        self.k_neighbors = k_neighbors

    def fit(self, X, y):
        if self.alpha is not None:
            return super().fit(X, y)
        k = self.k_neighbors
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 2:
            raise ValueError(f"k_neighbors must be an integer ≥ 2, got {k!r}")
        X_arr, y_arr = validate_data(self, X, y, dtype=np.float64, ensure_min_samples=1)
        check_classification_targets(y_arr)
        if self.normalize:
            X_arr = _sphere(X_arr, True, "X")
        uniq = np.unique(X_arr, axis=0)
        k = min(int(k), len(uniq) - 1)
        if k < 2:
            raise ValueError(
                "X: estimating the intrinsic dimension needs at least 3 distinct points, got "
                f"{len(uniq)} (n_samples = {len(X_arr)}); pass alpha explicitly"
            )
        # Levina–Bickel on float64 neighbour distances (scikit-learn's exact k-NN search)
        dist, _ = NearestNeighbors(n_neighbors=k).fit(uniq).kneighbors()  # each without itself
        return self._fit(X, y, mle_from_distances(dist, k))


# ------------------------------------------------------------------ deep networks


class InfiniteDepthClassifier(_KernelVoteClassifier):
    r"""The classifier of an infinitely wide network with normalised dual ``dual``, trained to
    interpolate, at depth ``depth`` (an int, or ``'inf'`` for the limit), with its ``'nngp'``
    or ``'ntk'`` kernel.

    - finite depth: kernel regression f(x) = K(x, X) K(X, X)⁻¹ Y in float64 (duplicate training
      points make K singular: ValueError);
    - ``depth='inf'``: by the dual's kind — singular: Nadaraya–Watson with the Koenigs kernel Φ
      (`theory.singular.koenigs_kernel`; NNGP and NTK share it); majority vote; nearest
      neighbour in the Böttcher coordinate (the largest |xᵀz|, with the sign of the limit:
      for an odd dual an antipodal neighbour votes against its class); linear duals have no
      limit (ValueError).

    Inputs must be unit vectors (``normalize=True`` projects them).
    """

    def __init__(
        self, dual: Dual | None = None, depth="inf", kernel: str = "nngp", normalize=False
    ):
        self.dual = dual
        self.depth = depth
        self.kernel = kernel
        self.normalize = normalize

    def _check_params(self):
        if not isinstance(self.dual, Dual):
            raise TypeError(f"dual must be a theory.singular.Dual, got {type(self.dual).__name__}")
        if self.kernel not in ("nngp", "ntk"):
            raise ValueError(f"kernel must be 'nngp' or 'ntk', got {self.kernel!r}")
        if self.depth == "inf":
            if self.dual.kind == "linear":
                raise ValueError(
                    f"dual: {self.dual.name} is linear (φ̌(ξ) = ξ): its kernel is xᵀz at every "
                    "depth and has no infinite-depth limit"
                )
            return "inf"
        d = self.depth
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0:
            raise ValueError(f"depth must be an integer ≥ 0 or 'inf', got {d!r}")
        return int(d)

    def fit(self, X, y):
        depth = self._check_params()
        X = self._validate_train(X, y)
        self.kind_ = self.dual.kind
        if depth == "inf":
            if self.kind_ == "nearest_neighbor" and self.dual.weights is None:
                raise ValueError("dual: the nearest-neighbour limit needs a power-series dual")
            return self
        dup = sk.duplicate_rows(X)
        if dup.size:
            hint = (
                " (n_features = 1: the sphere S⁰ has only the two points ±1)"
                if X.shape[1] == 1
                else ""
            )
            raise ValueError(
                f"X has {dup.size} duplicate rows (first: row {dup[0]}){hint}: the "
                f"depth-{depth} kernel matrix is singular; remove them or use depth='inf'"
            )
        fn = sk.ntk_at_depth if self.kernel == "ntk" else sk.nngp_at_depth
        self.coef_ = interpolation_coefficients(
            np.asarray(fn(X, None, self.dual, depth)), self.onehot_, depth
        )
        return self

    def _scores(self, X):
        depth = self._check_params()
        if depth != "inf":
            fn = sk.ntk_at_depth if self.kernel == "ntk" else sk.nngp_at_depth
            k = np.asarray(fn(X, self.X_fit_, self.dual, depth))
            return interpolation_scores(k, self.coef_, depth)
        if self.kind_ == "majority_vote":
            # f_L interpolates at every depth, so a training point keeps its label in the limit
            with jax.enable_x64(True):
                eps = sk._half_sq_dist(jnp.asarray(X), jnp.asarray(self.X_fit_), 1.0)
                log_w = jnp.where(eps == 0, jnp.inf, 0.0)
                return np.asarray(_vote(jnp.ones_like(log_w), log_w, jnp.asarray(self.onehot_)))
        with jax.enable_x64(True):
            a, b = jnp.asarray(X), jnp.asarray(self.X_fit_)
            if self.kind_ == "singular":
                sign, log_abs = sk._log_koenigs_points(self.dual, a, b)
            else:
                sign, score = sk._bottcher_points(self.dual, a, b)
                best = jnp.max(score, axis=1, keepdims=True)
                winner = jnp.where(jnp.isposinf(score), jnp.inf, 0.0)
                log_abs = jnp.where(score == best, winner, -jnp.inf)
            if self.dual.parity == "odd":
                # φ̌^{∘L}(−1) = −1 at every depth: an exact antipode votes against its class.
                # Set here because the kernels' Φ(x, −x) carries sign +1 (not −1 as documented).
                sign = jnp.where(sk._half_sq_dist(a, b, -1.0) == 0, -1.0, sign)
            return np.asarray(_vote(sign, log_abs, jnp.asarray(self.onehot_)))
