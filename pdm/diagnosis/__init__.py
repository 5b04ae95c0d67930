"""Diagnosis from evidence gathered over windows: averaged spectra, defect families, confidence.

Pure numpy, no I/O. :class:`DiagnosisEngine` is what the feature stream runs for every
machine; :func:`judge_channel` judges one channel's averaged spectra; the rules are in
:mod:`pdm.diagnosis.rules` and docs/diagnosis.md.
"""

from pdm.diagnosis.average import SpectrumAverage, effective_windows
from pdm.diagnosis.confidence import confidence
from pdm.diagnosis.engine import ChannelDiagnosis, Diagnosis, DiagnosisEngine
from pdm.diagnosis.rules import (
    DIAGNOSES,
    ChannelVerdict,
    FamilyEvidence,
    LineEvidence,
    Rules,
    judge_channel,
)

__all__ = [
    "DIAGNOSES",
    "ChannelDiagnosis",
    "ChannelVerdict",
    "Diagnosis",
    "DiagnosisEngine",
    "FamilyEvidence",
    "LineEvidence",
    "Rules",
    "SpectrumAverage",
    "confidence",
    "effective_windows",
    "judge_channel",
]
