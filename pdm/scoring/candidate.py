"""Candidate checks: everything a model must pass before it may replace the running one.

:func:`check_candidate` loads the candidate through every check of
:meth:`Model.load <pdm.scoring.runtime.Model.load>` (card vs pipeline, the ONNX file's
SHA-256, onnxruntime, the card's reference window reproduced), verifies its signature
first when public keys are configured (then a signature is required, and nothing unsigned
reaches onnxruntime), scores an optional reference matrix, and returns a
:class:`CandidateReport` holding the loaded, checked :class:`~pdm.scoring.runtime.Model`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pdm.errors import ModelError
from pdm.scoring.runtime import Model
from pdm.scoring.signing import (
    PublicKeySource,
    bundle_hashes,
    require_bundle_onnx,
    verify_signature,
)

if TYPE_CHECKING:
    from pdm.config import Pipeline

__all__ = ["CandidateReport", "check_candidate"]


@dataclass(frozen=True)
class CandidateReport:
    """What :func:`check_candidate` found; ``model`` is the loaded, checked model to swap in."""

    directory: Path
    version: str
    detector: str
    alert: float
    danger: float
    key_id: str | None
    #: Score of the card's reference window, recomputed here (normalised; alert at 1.0).
    reference_score: float
    #: Rows of the supplied ``reference`` matrix that were scored (0 when none was given).
    reference_windows: int
    reference_max_score: float | None
    #: SHA-256 of model.json and model.onnx as checked; ``install_candidate(expect=...)`` compares.
    files: dict[str, str]
    model: Model = field(repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, without the model object."""
        return {
            "directory": str(self.directory),
            "version": self.version,
            "detector": self.detector,
            "alert": self.alert,
            "danger": self.danger,
            "key_id": self.key_id,
            "reference_score": self.reference_score,
            "reference_windows": self.reference_windows,
            "reference_max_score": self.reference_max_score,
            "files": dict(self.files),
        }

    def summary(self) -> str:
        """One line for a log or the CLI."""
        signed = f"signed by key {self.key_id}" if self.key_id else "signature not checked"
        extra = (
            f", {self.reference_windows} reference windows max {self.reference_max_score:.3g}"
            if self.reference_max_score is not None
            else ""
        )
        return (
            f"{self.directory}: ok: version {self.version}, detector {self.detector}, "
            f"alert {self.alert:g} danger {self.danger:g}, {signed}, "
            f"reference window scores {self.reference_score:.3g}{extra}"
        )


def check_candidate(
    model_dir: str | os.PathLike[str],
    pipeline: Pipeline,
    fs: float | None,
    *,
    public_keys: Sequence[PublicKeySource] | None = None,
    reference: npt.ArrayLike | None = None,
) -> CandidateReport:
    """Every check a model must pass before it may replace the running one.

    Parameters
    ----------
    model_dir : the candidate bundle
    pipeline, fs : the pipeline the service runs and its sample rate, Hz (``None``: the card's)
    public_keys : trusted keys (PEM paths, PEM bytes or raw 32-byte keys). ``None``: signatures
        are not checked. Otherwise a valid signature by one of them is required, and it is
        checked before onnxruntime parses anything.
    reference : (n_windows, n_features) raw feature rows in the model's input order
        (e.g. recent live windows, units as the feature names say); every row must give a
        finite score. The card's own reference window is always scored.

    Raises
    ------
    ModelError
        One line naming the directory and the reason: signature, card vs pipeline, ONNX
        hash, onnxruntime, reference window not reproduced or non-finite, thresholds.
    ValueError
        ``reference`` itself holds non-finite values (the caller's data, not the model).
    """
    directory = Path(model_dir)
    kid: str | None = None
    signed: dict[str, str] | None = None
    if public_keys is not None:
        kid, signed = verify_signature(directory, public_keys)
    # Card vs pipeline, the ONNX file's hash, onnxruntime, the reference window reproduced.
    model = Model.load(directory, pipeline, fs)
    card = model.card
    require_bundle_onnx(directory, card)
    files = bundle_hashes(directory)
    if (signed is not None and files != signed) or files["model.onnx"] != card["onnx"]["sha256"]:
        raise ModelError(f"{directory}: the bundle changed while it was being checked")

    # The thresholds (alert 1.0, a finite danger above it): Model.load refuses others.
    ref = card["reference"]  # Model.load refuses a card without one
    want = float(ref["score"])
    got = float(model.score(np.asarray([ref["features"]], dtype=np.float32))[0][0])
    # Model.load compares with the card's score, but a NaN there compares as "no difference".
    if not (math.isfinite(want) and math.isfinite(got)):
        raise ModelError(
            f"{directory}: the card's reference window scores {got:.6g} (card: {want:.6g}); "
            "a model must give finite scores"
        )

    n_ref = 0
    ref_max: float | None = None
    if reference is not None:
        x = np.asarray(reference, dtype=np.float64)
        if x.ndim == 1:
            x = x[np.newaxis, :]
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"reference shape {x.shape}: expected (n_windows, n_features), n ≥ 1")
        if x.shape[1] != len(model.names):
            raise ModelError(
                f"{directory}: the reference windows have {x.shape[1]} features, the candidate "
                f"takes {len(model.names)}"
            )
        if not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            raise ValueError(
                f"reference row {bad} holds non-finite features; pass valid windows only"
            )
        scores = model.score(x)[0]
        finite = np.isfinite(scores)
        if not finite.all():
            first = int(np.flatnonzero(~finite)[0])
            raise ModelError(
                f"{directory}: {int((~finite).sum())} of {len(scores)} reference windows score "
                f"non-finite (row {first}: {scores[first]:g}); the model would not score them"
            )
        n_ref = len(scores)
        ref_max = float(scores.max())

    return CandidateReport(
        directory=directory,
        version=model.version,
        detector=str(card.get("model", {}).get("detector", "unknown")),
        alert=model.alert,
        danger=model.danger,
        key_id=kid,
        reference_score=got,
        reference_windows=n_ref,
        reference_max_score=ref_max,
        files=files,
        model=model,
    )
