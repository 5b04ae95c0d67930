"""Safe model updates: the steps, each in its own module; their names, re-exported.

How the appliance service replaces a model (the service owns the loop; each step raises
:class:`~pdm.errors.ModelError` with one line naming the directory and the reason when
it refuses):

1. :func:`~pdm.scoring.candidate.check_candidate` loads the candidate through every
   check of :meth:`Model.load <pdm.scoring.runtime.Model.load>` (card vs pipeline, the
   ONNX file's SHA-256, onnxruntime, the card's reference window reproduced), verifies
   its signature first when public keys are configured (:mod:`pdm.scoring.signing`; then
   a signature is required, and nothing unsigned reaches onnxruntime), scores an optional
   reference matrix, and returns a :class:`~pdm.scoring.candidate.CandidateReport`
   holding the loaded, checked :class:`~pdm.scoring.runtime.Model`.
2. Optionally the service scores live windows with both models for a while and
   feeds :class:`~pdm.scoring.shadow.ShadowStats` (agreement on ok/alert/danger, score
   differences).
3. :func:`~pdm.scoring.install.install_candidate` copies the bundle into
   ``models_root/.staging-NAME-RAND``, fsyncs, and swaps it with ``models_root/NAME`` in
   one rename; the model it replaces becomes ``NAME.previous``
   (:func:`~pdm.scoring.install.rollback` swaps the two back). Pass ``expect=report`` so
   that the bytes installed are the bytes checked.
4. Only then does the service replace its in-memory ``Model`` (one attribute
   assignment; a window being scored keeps the object it started with). A
   candidate that fails any check is rejected and the old model keeps scoring:
   nothing on disk or in memory has changed.

What a bundle is and how it is signed: :mod:`pdm.scoring.signing`. Sending one to an
appliance: :mod:`pdm.scoring.upload`. The command line (``pdm-edge model``):
:mod:`pdm.tools.model`.
"""

from __future__ import annotations

from pdm.scoring.candidate import CandidateReport, check_candidate
from pdm.scoring.install import install_candidate, rollback
from pdm.scoring.shadow import STATES, ShadowStats
from pdm.scoring.signing import (
    BUNDLE_FILES,
    SIGNATURE_FILE,
    generate_keypair,
    key_id,
    sign_bundle,
    verify_bundle,
)
from pdm.scoring.upload import send_bundle

__all__ = [
    "BUNDLE_FILES",
    "SIGNATURE_FILE",
    "STATES",
    "CandidateReport",
    "ShadowStats",
    "check_candidate",
    "generate_keypair",
    "install_candidate",
    "key_id",
    "rollback",
    "send_bundle",
    "sign_bundle",
    "verify_bundle",
]
