"""Anomaly detectors fitted on healthy, robust-scaled windows: the scikit-learn reference.

Every detector learns what healthy ``z`` (the output of
:class:`~pdm.scoring.preprocess.Preprocess`) looks like and gives a *raw* score,
higher = more anomalous, in its own units. :func:`raw_scores` is the numpy /
scikit-learn reference that the ONNX graph built by
:func:`pdm.scoring.export.build_model` is tested against; the fitted estimator
is only ever used in memory (exported to ONNX, never pickled).

Detectors
---------
``mahalanobis``
    Squared Mahalanobis distance to the mean under a Ledoit–Wolf shrunk
    covariance. Healthy data are often ~100 windows of ~30 features, where the
    plain sample covariance is badly conditioned; shrinkage fixes that.
``gmm``
    Negative log-likelihood under a full-covariance Gaussian mixture, 1–4
    components chosen by BIC among the counts the data can support. When they
    support none (fewer than 5·d windows), one Gaussian whose covariance is
    Ledoit–Wolf shrunk: with n < 5·d windows the sample covariance's smallest
    eigenvalues are far too small (Marchenko–Pastur), and an unseen or clipped
    healthy window that moves along one of those directions scores as a fault
    would — the held-out scores then spread so widely that the threshold set
    from them hides real faults (docs/models.md, "Few healthy windows").
``pca``
    Negative log-likelihood under probabilistic PCA: Hotelling T² in the
    principal subspace plus the residual (reconstruction) error over the noise
    variance, up to constants.
``iforest``
    Isolation forest anomaly score ``2^(−E[h(x)]/c(ψ))`` in (0, 1].
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

__all__ = ["DETECTORS", "FittedDetector", "fit_detector", "raw_scores"]

#: Detector kinds.
DETECTORS: tuple[str, ...] = ("mahalanobis", "gmm", "pca", "iforest")

# z is unit-scaled (robust z-scores), so 1e-3 on the covariance diagonal is a
# 3 % floor on each component's standard deviation: enough to keep a component
# that collapsed onto a few windows from becoming singular, too little to blur
# the healthy distribution.
_GMM_REG_COVAR = 1e-3
_GMM_MAX_COMPONENTS = 4
# Windows per feature each mixture component needs: a full covariance has
# d(d+1)/2 parameters, and below ~5·d windows per component BIC happily picks
# components that model the noise of a short recording.
_GMM_WINDOWS_PER_FEATURE = 5
_GMM_N_INIT = 2
_PCA_VARIANCE = 0.90
_IFOREST_TREES = 100
_IFOREST_MAX_SAMPLES = 256
_MAHALANOBIS_MIN_WINDOWS = 8
_IFOREST_MIN_WINDOWS = 8


@dataclass(frozen=True)
class FittedDetector:
    """A fitted detector.

    Attributes
    ----------
    kind : str
        One of :data:`DETECTORS`.
    params : dict
        JSON-able hyperparameters and fitted facts (``n_features``, ``n_train``,
        and per kind e.g. ``shrinkage``, ``n_components``, ``bic``,
        ``explained_variance``, ``max_samples``), for the model card.
    estimator : object
        The fitted scikit-learn estimator (kept in memory only, never pickled).
    """

    kind: str
    params: dict[str, Any]
    estimator: Any

    @property
    def n_features(self) -> int:
        """Number of input features ``d``."""
        return int(self.params["n_features"])


def min_train_windows(kind: str, n_features: int) -> int:
    """Fewest training windows :func:`fit_detector` accepts for ``kind`` with ``n_features``."""
    if kind == "iforest":
        return _IFOREST_MIN_WINDOWS
    if kind == "mahalanobis":
        return _MAHALANOBIS_MIN_WINDOWS
    return n_features + 2


def fit_detector(kind: str, z: npt.ArrayLike, *, seed: int = 0) -> FittedDetector:
    """Fit a detector on robust-scaled healthy training windows.

    Parameters
    ----------
    kind : str
        One of :data:`DETECTORS`.
    z : array_like, shape (n, d)
        Healthy training windows after :meth:`Preprocess.transform`; finite.
    seed : int, optional
        Random state for the estimators that use one (gmm, pca, iforest), so a
        refit on the same data gives the same model.

    Returns
    -------
    FittedDetector

    Raises
    ------
    ValueError
        For an unknown ``kind``, a ``z`` that is not a finite 2-D array, or too
        few windows (``n < d + 2`` for gmm and pca, ``n < 8`` for iforest and
        mahalanobis, whose shrinkage needs no more windows than features).
    """
    if kind not in DETECTORS:
        raise ValueError(f"unknown detector {kind!r} (known: {', '.join(DETECTORS)})")
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 1:
        raise ValueError(f"training windows must be a 2-D array (n, d), got shape {z.shape}")
    n, d = z.shape
    bad = int(np.count_nonzero(~np.isfinite(z)))
    if bad:
        raise ValueError(
            f"training windows contain {bad} non-finite values: drop invalid windows "
            "and features that are not computed before fitting"
        )
    if kind == "iforest":
        if n < _IFOREST_MIN_WINDOWS:
            raise ValueError(
                f"detector 'iforest' needs at least {_IFOREST_MIN_WINDOWS} training windows, got {n}"
            )
    elif kind == "mahalanobis":
        # Ledoit-Wolf shrinks towards a scaled identity, so its precision exists
        # even with fewer windows than features; it still needs a handful.
        if n < _MAHALANOBIS_MIN_WINDOWS:
            raise ValueError(
                f"detector 'mahalanobis' needs at least {_MAHALANOBIS_MIN_WINDOWS} training "
                f"windows, got {n}"
            )
    elif n < d + 2:
        # Below d + 2 windows a covariance estimate of d features has no
        # degrees of freedom left to tell spread from noise.
        raise ValueError(
            f"detector {kind!r} needs at least d + 2 = {d + 2} training windows "
            f"for {d} features, got {n}"
        )
    base = {"n_features": d, "n_train": n, "seed": seed}
    if kind == "mahalanobis":
        return _fit_mahalanobis(z, base)
    if kind == "gmm":
        return _fit_gmm(z, base, seed)
    if kind == "pca":
        return _fit_pca(z, base, seed)
    return _fit_iforest(z, base, seed)


def raw_scores(det: FittedDetector, z: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Raw anomaly scores (n,) of robust-scaled windows; higher = more anomalous.

    This is the scikit-learn reference the exported ONNX graph reproduces.

    Parameters
    ----------
    det : FittedDetector
    z : array_like, shape (n, d)
        Windows after :meth:`Preprocess.transform`.

    Returns
    -------
    ndarray, shape (n,), float64
        mahalanobis: squared Mahalanobis distance; gmm and pca: negative
        log-likelihood; iforest: ``2^(−E[h(x)]/c(ψ))`` in (0, 1].
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != det.n_features:
        raise ValueError(
            f"windows must have shape (n, {det.n_features}) for this detector, got {z.shape}"
        )
    est = det.estimator
    if det.kind == "mahalanobis":
        out = est.mahalanobis(z)
    elif det.kind in ("gmm", "pca", "iforest"):
        out = -est.score_samples(z)
    else:
        raise ValueError(f"unknown detector {det.kind!r} (known: {', '.join(DETECTORS)})")
    return np.asarray(out, dtype=np.float64)


def _fit_mahalanobis(z: npt.NDArray[np.float64], base: dict[str, Any]) -> FittedDetector:
    est = LedoitWolf(store_precision=True, assume_centered=False).fit(z)
    return FittedDetector("mahalanobis", {**base, "shrinkage": float(est.shrinkage_)}, est)


def _fit_gmm(z: npt.NDArray[np.float64], base: dict[str, Any], seed: int) -> FittedDetector:
    n, d = z.shape
    # Only component counts the data can support compete on BIC.
    counts = [k for k in range(1, _GMM_MAX_COMPONENTS + 1) if n >= k * _GMM_WINDOWS_PER_FEATURE * d]
    if not counts:
        return _fit_gmm_shrunk(z, base)
    best: GaussianMixture | None = None
    bic: dict[str, float] = {}
    for k in counts:
        gm = GaussianMixture(
            n_components=k,
            covariance_type="full",
            reg_covar=_GMM_REG_COVAR,
            n_init=_GMM_N_INIT,
            random_state=seed,
        )
        with warnings.catch_warnings():
            # Non-convergence is recorded in params (``converged``), not printed.
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(z)
        bic[str(k)] = float(gm.bic(z))
        if best is None or bic[str(k)] < bic[str(best.n_components)]:
            best = gm
    assert best is not None
    params = {
        **base,
        "n_components": int(best.n_components),
        "candidates": counts,
        "bic": bic,
        "reg_covar": _GMM_REG_COVAR,
        "covariance": "full",
        "n_init": _GMM_N_INIT,
        "converged": bool(best.converged_),
    }
    return FittedDetector("gmm", params, best)


def _fit_gmm_shrunk(z: npt.NDArray[np.float64], base: dict[str, Any]) -> FittedDetector:
    """One Gaussian with a Ledoit–Wolf covariance, as a fitted ``GaussianMixture``.

    The mixture's own attributes are set (one component, full covariance), so scoring and
    the ONNX export treat it as any other gmm.
    """
    from scipy.linalg import cholesky, solve_triangular

    d = z.shape[1]
    lw = LedoitWolf(assume_centered=False).fit(z)
    cov = lw.covariance_ + _GMM_REG_COVAR * np.eye(d)
    # The precision's Cholesky factor, as scikit-learn computes it for 'full'.
    prec_chol = solve_triangular(cholesky(cov, lower=True), np.eye(d), lower=True).T
    gm = GaussianMixture(n_components=1, covariance_type="full", reg_covar=_GMM_REG_COVAR)
    gm.weights_ = np.ones(1)
    gm.means_ = lw.location_[None, :].copy()
    gm.covariances_ = cov[None, :, :]
    gm.precisions_cholesky_ = prec_chol[None, :, :]
    gm.precisions_ = (prec_chol @ prec_chol.T)[None, :, :]
    gm.converged_ = True
    gm.n_iter_ = 0
    gm.n_features_in_ = d
    params = {
        **base,
        "n_components": 1,
        "candidates": [1],
        "covariance": "ledoit-wolf",
        "shrinkage": float(lw.shrinkage_),
        "bic": {"1": float(gm.bic(z))},
        "reg_covar": _GMM_REG_COVAR,
        "converged": True,
    }
    return FittedDetector("gmm", params, gm)


def _fit_pca(z: npt.NDArray[np.float64], base: dict[str, Any], seed: int) -> FittedDetector:
    n, d = z.shape
    full = PCA(random_state=seed).fit(z)
    cumulative = np.cumsum(full.explained_variance_ratio_)
    k = int(np.searchsorted(cumulative, _PCA_VARIANCE) + 1)
    # At least one dimension must stay outside the subspace (the residual term
    # and a positive noise variance), and PCA needs k < n − 1 to estimate it.
    k = max(1, min(k, d - 1, n - 2))
    pca = PCA(n_components=k, random_state=seed).fit(z)
    if not pca.noise_variance_ > 0.0:
        raise ValueError(
            f"detector 'pca': the training windows have no variance outside the first {k} "
            "principal components (noise variance 0); use another detector"
        )
    params = {
        **base,
        "n_components": k,
        "explained_variance": float(np.sum(pca.explained_variance_ratio_)),
        "noise_variance": float(pca.noise_variance_),
    }
    return FittedDetector("pca", params, pca)


def _fit_iforest(z: npt.NDArray[np.float64], base: dict[str, Any], seed: int) -> FittedDetector:
    n = z.shape[0]
    max_samples = min(_IFOREST_MAX_SAMPLES, n)
    est = IsolationForest(
        n_estimators=_IFOREST_TREES, max_samples=max_samples, random_state=seed
    ).fit(z)
    params = {
        **base,
        "n_estimators": _IFOREST_TREES,
        "max_samples": int(est.max_samples_),
        "n_nodes": int(sum(t.tree_.node_count for t in est.estimators_)),
        "max_depth": int(max(t.tree_.max_depth for t in est.estimators_)),
        # The score cannot exceed 2^(-1/c(psi)): every tree isolates a point after one
        # split at the earliest. Calibration must not put a threshold above it.
        "raw_sup": float(2.0 ** (-1.0 / _c(int(est.max_samples_)))),
    }
    return FittedDetector("iforest", params, est)


def _c(n: int) -> float:
    """Average path length of an unsuccessful BST search among ``n`` points (Liu et al. 2008)."""
    if n <= 1:
        return 1.0
    if n == 2:
        return 1.0
    return 2.0 * (math.log(n - 1) + 0.5772156649015329) - 2.0 * (n - 1) / n
