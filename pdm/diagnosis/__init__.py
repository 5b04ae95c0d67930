"""Diagnosis from evidence gathered over windows: averaged spectra, defect families, confidence.

Pure numpy, no I/O. :class:`DiagnosisEngine` is what the feature stream runs for every
machine; :func:`judge_channel` judges one channel's averaged spectra; the rules are in
:mod:`pdm.diagnosis.rules` (and the modules it names) and docs/diagnosis.md; a machine's sensors are arbitrated in
:mod:`pdm.diagnosis.machine`; :class:`Baseline` holds a machine's healthy spectra.
"""

from pdm.diagnosis.average import SpectrumAverage, effective_windows
from pdm.diagnosis.baseline import Baseline, BaselineBuilder
from pdm.diagnosis.confidence import confidence
from pdm.diagnosis.engine import (
    ChannelDiagnosis,
    Diagnosis,
    DiagnosisEngine,
    PendingDiagnosis,
    WindowVerdict,
    routine_phase,
)
from pdm.diagnosis.evidence import ChannelVerdict, FamilyEvidence, LineEvidence
from pdm.diagnosis.machine import Transmission
from pdm.diagnosis.rules import DIAGNOSES, Rules
from pdm.diagnosis.verdict import BEARING_DEFECTS, judge_channel, names_bearing_defect

__all__ = [
    "BEARING_DEFECTS",
    "DIAGNOSES",
    "Baseline",
    "BaselineBuilder",
    "ChannelDiagnosis",
    "ChannelVerdict",
    "Diagnosis",
    "DiagnosisEngine",
    "FamilyEvidence",
    "LineEvidence",
    "PendingDiagnosis",
    "Rules",
    "SpectrumAverage",
    "Transmission",
    "WindowVerdict",
    "confidence",
    "effective_windows",
    "judge_channel",
    "names_bearing_defect",
    "routine_phase",
]
