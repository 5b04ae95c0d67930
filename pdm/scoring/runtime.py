"""Loading a model directory and scoring windows with onnxruntime.

:meth:`Model.load` refuses, with one line saying what differs, a model whose
card does not match the pipeline, whose ONNX file does not match the card's
SHA-256, that onnxruntime cannot load, or that does not reproduce its own
reference score. Sessions are sized from the pipeline (``model.intra_op_threads``,
default 1), never from the host's core count, and warmed up at load so the
first real window is not slow.

A card written before damage-direction scoring (no ``direction`` in its
preprocess) still loads and scores as it was calibrated, with every departure
counting; :attr:`Model.legacy_directions` says so and ``pdm-edge check`` asks for
a retrain.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from pdm.config import Pipeline
from pdm.core.time import to_ns
from pdm.diagnosis import Diagnosis, WindowVerdict, names_bearing_defect
from pdm.diagnosis.baseline import Baseline
from pdm.dsp.features import FeatureFrame
from pdm.errors import ModelError
from pdm.processing import WindowFeatures
from pdm.scoring.card import check_card, onnx_file, read_card, sha256_file
from pdm.scoring.explain import top_features
from pdm.scoring.graph import check_graph
from pdm.scoring.preprocess import Preprocess
from pdm.scoring.quiet import QuietScreen
from pdm.scoring.result import WindowScore
from pdm.scoring.vector import FeatureVectorizer

__all__ = [
    "LEGACY_DIRECTIONS",
    "Model",
    "WindowScorer",
    "diagnosis_fields",
    "make_session",
    "score_together",
    "shared_baseline",
    "shared_session",
]

log = logging.getLogger("pdm.scoring")

#: What ``check`` and the load log say about a card without directions.
LEGACY_DIRECTIONS = (
    "was trained before damage-direction scoring: a machine running quieter than its "
    "training data can still alarm; retrain it (pdm-edge train ... --force, or delete it "
    "and let teach-in learn again)"
)

# The reference window must score the same after loading as when the card was written.
_REFERENCE_RTOL = 1e-4


def _shown(v: float) -> str:
    """A card's number for a message (a 4,000-digit integer does not become a float)."""
    return f"{v:g}" if isinstance(v, float) or abs(v) < 10**300 else f"{str(v)[:12]}..."


# The session's outputs a scorer reads: built once, not for every window.
_OUTPUTS = ["score", "z"]


def make_session(model_bytes: bytes, *, threads: int = 1, where: str = "model") -> Any:
    """An onnxruntime session with explicit thread counts; :class:`ModelError` if it cannot load."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors reach the user as ModelError, not as log spam
    try:
        return ort.InferenceSession(
            model_bytes, sess_options=so, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{where}: onnxruntime cannot load it: {first}") from exc


#: Live sessions by (SHA-256 of the ONNX bytes, intra-op threads): see :func:`shared_session`.
_SESSIONS: weakref.WeakValueDictionary[tuple[str, int], Any] = weakref.WeakValueDictionary()
_SESSIONS_LOCK = threading.Lock()


def shared_session(model_bytes: bytes, *, threads: int = 1, where: str = "model") -> Any:
    """:func:`make_session`, shared by every model loaded from the same bytes with the same
    thread count while one of them is alive.

    A session is a pure function of its bytes and options (onnxruntime runs one session
    from several threads), so machines of one model — a fleet's, or a service's machines
    of one type — score with one set of weights and kernels: a service interleaves each
    window with other machines' FFTs, and each session's memory, cold by its next window,
    cost ~10x its warm run (measured in the service's pool loop: ~115 µs against ~12).
    """
    key = (hashlib.sha256(model_bytes).hexdigest(), threads)
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
    if session is None:
        session = make_session(model_bytes, threads=threads, where=where)
        with _SESSIONS_LOCK:
            session = _SESSIONS.setdefault(key, session)
    return session


#: Baselines read by :func:`shared_baseline`: ONNX digest → (a copy of the card's section, it).
_BASELINES: dict[str, tuple[dict[str, Any], Baseline]] = {}
_BASELINES_MAX = 64


def shared_baseline(onnx_sha256: str, d: dict[str, Any]) -> Baseline:
    """:meth:`Baseline.from_dict` of a card's ``diagnosis_baseline`` ``d``, the same object for
    every card of the model ``onnx_sha256`` whose section is equal to the one read before.

    A service loads one :class:`Model` per machine; machines of one model then share one
    baseline, whose derived arrays (its lines, found at a machine's first judgement: 0.2–0.6
    ms for the bench's cards) are found once, not once a machine. Equal content, not the
    digest alone, decides: a card's other sections are not covered by its ONNX digest.
    """
    with _SESSIONS_LOCK:
        got = _BASELINES.get(onnx_sha256)
    if got is not None and got[0] == d:
        return got[1]
    baseline = Baseline.from_dict(d)
    with _SESSIONS_LOCK:
        if len(_BASELINES) >= _BASELINES_MAX:
            _BASELINES.clear()
        _BASELINES[onnx_sha256] = (copy.deepcopy(d), baseline)
    return baseline


@dataclass
class Model:
    """A loaded, checked model: card, preprocess, onnxruntime session."""

    directory: Path
    card: dict[str, Any]
    preprocess: Preprocess
    session: Any
    names: tuple[str, ...]
    danger: float

    alert: float = 1.0

    @property
    def legacy_directions(self) -> bool:
        """True for a card without directions: every departure counts (retrain it)."""
        return not self.preprocess.directions_known

    @property
    def baseline(self) -> Baseline | None:
        """The machine's healthy spectra the diagnosis judges lines over (the card's
        ``diagnosis_baseline``, checked by :func:`~pdm.scoring.card.read_card`); None for a
        card written before it existed. Models whose cards hold the same baseline share one
        (:func:`shared_baseline`)."""
        d = self.card.get("diagnosis_baseline")
        return shared_baseline(str(self.card["onnx"]["sha256"]), d) if d is not None else None

    @property
    def version(self) -> str:
        """Short model version: the first 12 hex digits of the ONNX file's SHA-256."""
        return str(self.card["onnx"]["sha256"])[:12]

    @classmethod
    def load(
        cls, directory: str | Path, pipeline: Pipeline | None = None, fs: float | None = None
    ) -> Model:
        """Load ``directory`` (model.onnx + model.json), checking it against ``pipeline`` at ``fs``."""
        directory = Path(directory)
        card = read_card(directory)
        onnx_path = onnx_file(directory, card)
        try:
            data = onnx_path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{onnx_path}: cannot read: {exc.strerror or exc}") from exc
        digest = sha256_file(onnx_path)
        if digest != card["onnx"].get("sha256"):
            raise ModelError(
                f"{onnx_path}: SHA-256 {digest[:12]}… does not match the card's "
                f"{str(card['onnx'].get('sha256'))[:12]}… (the file was changed or is corrupt); "
                "retrain or restore the model directory"
            )
        if pipeline is not None:
            check_card(
                card,
                pipeline,
                fs if fs is not None else card["dsp"]["sample_rate_hz"],
                where=str(directory / "model.json"),
            )
        names = tuple(f["name"] for f in card["features"])
        danger, alert = card["score"]["danger"], card["score"].get("alert", 1.0)
        try:
            danger = float(danger)
        except OverflowError:  # a 400-digit integer
            danger = math.inf
        if not (alert == cls.alert and cls.alert < danger < math.inf):
            # A NaN danger never compared true (no window ever reached danger), one at or
            # below alert made every alert a danger; the runtime's alert is always 1.0.
            raise ModelError(
                f"{directory / 'model.json'}: thresholds alert {_shown(alert)} / danger "
                f"{_shown(danger)}: the runtime needs alert = {cls.alert:g} and a finite "
                "danger above it"
            )
        # The graph's operators, inputs, outputs and tensor sizes, before onnxruntime
        # runs anything of it (a hostile graph is one line, not gigabytes or a hang).
        check_graph(data, len(names), where=str(onnx_path))
        threads = pipeline.model.intra_op_threads if pipeline is not None else 1
        session = shared_session(data, threads=threads, where=str(onnx_path))
        try:
            preprocess = Preprocess.from_dict(card["preprocess"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"{directory / 'model.json'}: bad 'preprocess' section: {exc}"
            ) from exc
        model = cls(
            directory=directory,
            card=card,
            preprocess=preprocess,
            session=session,
            names=names,
            danger=danger,
        )
        model._self_check()
        if model.legacy_directions:
            log.warning("%s: the model %s", directory, LEGACY_DIRECTIONS)
        return model

    def _self_check(self) -> None:
        """Warm the session up on the card's reference window and compare its score."""
        ref = self.card.get("reference")
        if not ref:
            raise ModelError(f"{self.directory / 'model.json'}: the card has no reference window")
        x = np.asarray([ref["features"]], dtype=np.float32)
        for _ in range(3):  # warm-up: the first runs allocate
            got = float(self.score(x)[0][0])
        want = float(ref["score"])
        if (
            not math.isfinite(got)
            or not math.isfinite(want)
            or abs(got - want) > _REFERENCE_RTOL * max(1.0, abs(want))
        ):
            raise ModelError(
                f"{self.directory}: the reference window scores {got:.6g}, the card says {want:.6g}; "
                "the model does not reproduce itself here (corrupt, or a different runtime)"
            )

    def score(self, x: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
        """Normalised scores (n,) and robust z-scores (n, d) of raw feature rows (n, d)."""
        x = np.ascontiguousarray(x, dtype=np.float32)  # no copy of a scorer's own rows
        try:
            score, z = self.session.run(_OUTPUTS, {"features": x})
        except Exception as exc:  # onnxruntime's own types (Fail, InvalidArgument, ...)
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise ModelError(
                f"{self.directory}: onnxruntime cannot score with it: {first or type(exc).__name__}"
            ) from exc
        if score.shape != x.shape[:1] or z.shape != x.shape:
            raise ModelError(
                f"{self.directory}: the graph gave score {score.shape} and z {z.shape} "
                f"for {x.shape} features"
            )
        return score.astype(np.float64), z

    def state(self, score: float) -> str:
        """``ok``, ``alert`` or ``danger`` for one window on its own (no debouncing)."""
        if score >= self.danger:
            return "danger"
        if score >= self.alert:
            return "alert"
        return "ok"


def diagnosis_fields(d: Diagnosis | None) -> dict[str, Any]:
    """A window score's ``diagnosis``, ``diagnosis_confidence`` (unrounded),
    ``diagnosis_channel``, ``diagnosis_bearing`` and ``evidence`` from the machine's
    diagnosis over the recent windows (:class:`pdm.diagnosis.Diagnosis`; None: a stream that
    does not diagnose, reported as ``unknown``), as :class:`WindowScore` keywords."""
    if d is None:
        return {"diagnosis": "unknown"}
    return {
        "diagnosis": d.label,
        "diagnosis_confidence": float(d.confidence),
        # The sensor whose evidence decided, and its bearing (a fault seen at two housings is
        # the nearer one's: docs/diagnosis.md, "A machine's sensors").
        "diagnosis_channel": d.channel,
        "diagnosis_bearing": d.bearing or None,
        "evidence": tuple(d.reasons),
    }


class WindowScorer:
    """Scores windows and explains them: a :class:`WindowScore` for each window."""

    def __init__(
        self,
        model: Model,
        channels: Sequence[str],
        available: Sequence[str],
        *,
        explain_all: bool = True,
    ) -> None:
        self.model = model
        self.vectorizer = FeatureVectorizer(model.names, tuple(channels), tuple(available))
        pre = model.preprocess
        self._directions = pre.directions if pre.directions_known else None
        self._quiet = QuietScreen(model.names)
        #: False: only windows scored at or above the alert threshold get top features and
        #: a diagnosis (the service: explaining every healthy window cost more than scoring
        #: it, and a healthy window has nothing to explain). Replays explain every window.
        self.explain_all = explain_all
        #: False: no window is explained (no top features, no evidence text; the diagnosis
        #: label and its confidence stay). Counted in :attr:`unexplained`.
        self.explain = True
        self.unexplained = 0
        #: A named bearing defect raises a window to ``alert`` only when the diagnosis reads
        #: lines over the machine's own healthy spectra (the card's ``diagnosis_baseline``):
        #: a line the machine always had is then no evidence. An older card: the score alone.
        self.flags_bearing_defects = "diagnosis_baseline" in model.card
        # Whether the last valid window scored was at or above alert (by its score or by a
        # named defect): the first one of a run (where the alarm's transition starts) gets a
        # diagnosis judged at that very window.
        self._alerting = False
        #: Windows scored ahead by :func:`score_together`: id(frame) → (frame, score, z (1, d)),
        #: taken by the next :meth:`score` (which forgets what it does not take).
        self._primed: dict[int, tuple[FeatureFrame, float, npt.NDArray[np.float32]]] = {}

    def rows(self, windows: Sequence[WindowFeatures]) -> list[dict[str, Any]]:
        """The JSON-ready ``pdm-edge score`` rows of :meth:`score` (:meth:`WindowScore.as_row`)."""
        return [s.as_row() for s in self.score(windows)]

    def _run(
        self, x: npt.NDArray[np.float32], frames: Sequence[FeatureFrame]
    ) -> tuple[list[float], npt.NDArray[np.float32]]:
        """The model's scores and z-scores of rows ``x`` (those of ``frames``): as
        :func:`score_together` found them when it scored every one of these frames, else
        from the model now."""
        primed = self._primed
        if primed:
            got = [primed.pop(id(f), None) for f in frames]
            if all(g is not None and g[0] is f for g, f in zip(got, frames, strict=True)):
                rows = cast(list[tuple[FeatureFrame, float, npt.NDArray[np.float32]]], got)
                zs = rows[0][2] if len(rows) == 1 else np.concatenate([r[2] for r in rows])
                return [r[1] for r in rows], zs
        s, z = self.model.score(x)
        return s.tolist(), z

    def prime(self, scored: Sequence[tuple[FeatureFrame, float, npt.NDArray[np.float32]]]) -> None:
        """Keep these frames' scores and z-scores ((1, d) each) for the next :meth:`score`
        calls that ask for them (:func:`score_together`); what an earlier call kept and no
        :meth:`score` took is forgotten."""
        self._primed = {id(frame): (frame, v, z) for frame, v, z in scored}

    def asks_judgement(self, windows: Sequence[WindowFeatures]) -> bool:
        """Whether :meth:`score` of ``windows`` would judge a routine diagnosis for the
        named-defect question (a window scored below alert, by :func:`score_together`,
        whose due judgement is not made yet and could name a defect): the machine's own
        periodic work, which a service round leaves until the other machines have decided.
        False when a window's score is not known yet (not scored together), and when one
        is at or above alert."""
        if not self.flags_bearing_defects:
            return False
        scored = [self._primed.get(id(wf.features)) for wf in windows]
        if any(
            got is None or got[0] is not wf.features
            for got, wf in zip(scored, windows, strict=True)
        ):
            return False
        # A window at or above alert keeps its place: a decision that may start an alarm.
        if any(got[1] >= self.model.alert for got in scored if got is not None):
            return False
        return any(
            isinstance(wf.verdict, WindowVerdict) and wf.verdict.asks_judgement() for wf in windows
        )

    def score(self, windows: Sequence[WindowFeatures]) -> list[WindowScore]:
        """One :class:`WindowScore` per window: its start time (integer ns), the model's score
        (unrounded), state, top features, the machine's diagnosis over the recent windows (the
        feature stream's engine, :class:`pdm.processing.WindowFeatures`), and
        ``below_baseline`` (:func:`pdm.scoring.quiet.below_baseline`, None mostly)."""
        if not windows:
            return []
        frames = [w.features for w in windows]
        vec = self.vectorizer
        n = len(windows)
        if n == 1:  # the service: a window at a time, no lists of one built and thrown away
            x = vec.vector(frames[0])[None]
            ok = [frames[0].valid and bool(np.isfinite(x).all())]
        else:
            x = vec.matrix(frames)
            finite = cast(list[bool], np.isfinite(x).all(axis=1).tolist())
            ok = [f.valid and fin for f, fin in zip(frames, finite, strict=True)]
        scores: list[float] = [math.nan] * n
        z: list[npt.NDArray[np.float32] | None] = [None] * n
        quiet: list[dict[str, Any] | None] = [None] * n
        good = [i for i, g in enumerate(ok) if g]
        if good:
            s_good, z_good = self._run(x if len(good) == n else x[good], [frames[i] for i in good])
            hints = self._quiet(z_good)
            for i, v, zi, h in zip(good, s_good, z_good, hints, strict=True):
                scores[i], z[i], quiet[i] = v, zi, h
        alert, version = self.model.alert, self.model.version
        out: list[WindowScore] = []
        for i, wf in enumerate(windows):
            t_ns, index = to_ns(wf.window.t_start), wf.window.index
            s = scores[i]
            # A bearing defect the diagnosis names over the machine's healthy spectra is a
            # fault whatever the score: evidence averaged over the recent windows sees a
            # defect line that one window's features cannot lift above a threshold set for
            # one false alert a week (docs/models.md, "A bearing defect the diagnosis names").
            # The routine judgement is read (judged only when due, and not at all while the
            # average is worth too few windows to name a defect); when it names one, the
            # alert rests on one as fresh as a score's alert gets (docs/diagnosis.md §1).
            by_diagnosis = False
            if ok[i] and s < alert and self.flags_bearing_defects:
                if wf.named_bearing_defect() is not None:
                    d = wf.fresh_diagnosis(now=not self._alerting)
                    by_diagnosis = d is not None and names_bearing_defect(
                        d.label, d.confidence, d.k_eff
                    )
            if not ok[i]:
                out.append(WindowScore(t_ns, index, None, valid=False, model=version))
            elif not self.explain_all and s < alert and not by_diagnosis:
                self._alerting = False
                out.append(
                    WindowScore(t_ns, index, "ok", s, model=version, below_baseline=quiet[i])
                )
            else:
                explained = self.explain
                if not explained:
                    # A busy service sheds explanations (docs/service.md, "Overload"): the
                    # diagnosis label and its confidence stay, they may corroborate a trip.
                    self.unexplained += 1
                top: tuple[dict[str, Any], ...] = ()
                if explained:
                    zrow = z[i]
                    assert zrow is not None  # scored: ok[i]
                    xi, zi = x[i].astype(np.float64), zrow.astype(np.float64)
                    top = tuple(
                        top_features(self.model.names, xi, zi, k=5, directions=self._directions)
                    )
                # A window at or above alert needs the verdict now: judged at most half an
                # averaging time constant back, at the window itself for the first of a run
                # (docs/diagnosis.md §1); the others show the routine judgement.
                alerting = s >= alert or by_diagnosis
                if s >= alert:
                    d = wf.fresh_diagnosis(now=not self._alerting)
                elif not by_diagnosis:  # (by_diagnosis: d is the fresh judgement above)
                    d = wf.diagnosis
                self._alerting = alerting
                diagnosis = diagnosis_fields(d)
                out.append(
                    WindowScore(
                        t_ns,
                        index,
                        "alert" if by_diagnosis else self.model.state(s),
                        s,
                        model=version,
                        top_features=top,
                        below_baseline=quiet[i],
                        alert_by="diagnosis" if by_diagnosis else None,
                        **(diagnosis if explained else {**diagnosis, "evidence": ()}),
                    )
                )
        return out


def score_together(parts: Sequence[tuple[WindowScorer, Sequence[WindowFeatures]]]) -> int:
    """Score the windows of several scorers whose models share one onnxruntime session
    (:func:`shared_session`: the same ONNX bytes) in one run; each scorer's next
    :meth:`WindowScorer.score` of those windows takes its results instead of running the
    model again. Returns the windows scored (0: fewer than two to score, nothing done).

    A service's round decides a few machines' windows one after the other, each in its own
    run of the session; one run of n rows costs little more than a run of one (~20 µs a
    run warm; with the FFTs of a round between two windows, several times that), and a
    row's result does not depend on the rows beside it (the graph is row-wise).

    Raises ``ValueError`` when the scorers do not share one session. A window that is
    invalid or has a non-finite feature is left to :meth:`WindowScorer.score`.
    """
    if not parts:
        return 0
    session = parts[0][0].model.session
    if any(scorer.model.session is not session for scorer, _w in parts):
        raise ValueError("score_together: the scorers' models do not share one session")
    rows: list[npt.NDArray[np.float32]] = []
    owners: list[tuple[WindowScorer, FeatureFrame]] = []
    for scorer, windows in parts:
        for wf in windows:
            frame = wf.features
            x = scorer.vectorizer.vector(frame)
            if frame.valid and np.isfinite(x).all():
                rows.append(x)
                owners.append((scorer, frame))
    if len(rows) < 2:
        return 0
    score, z = parts[0][0].model.score(np.stack(rows))
    kept: dict[int, tuple[WindowScorer, list[tuple[FeatureFrame, float, Any]]]] = {}
    for i, ((scorer, frame), v) in enumerate(zip(owners, score.tolist(), strict=True)):
        kept.setdefault(id(scorer), (scorer, []))[1].append((frame, v, z[i : i + 1]))
    for scorer, scored in kept.values():
        scorer.prime(scored)
    return len(rows)
