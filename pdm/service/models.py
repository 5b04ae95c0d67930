"""A service's safe model updates: the model directories watched, a candidate in shadow,
promotion, rollback and uploads (docs/models.md).

Every model is checked before it scores (:func:`~pdm.scoring.candidate.check_candidate`);
one that fails is rejected with an event and what ran before keeps running. The watcher
thread, promote, rollback and uploads take turns under one lock. Refusals the control API
should show are :class:`~pdm.service.api.APIError`.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pdm.alarms.state import check_operator_text
from pdm.errors import ConfigError, ModelError
from pdm.scoring.candidate import CandidateReport, check_candidate
from pdm.scoring.install import install_candidate
from pdm.scoring.install import rollback as rollback_model
from pdm.service.api import APIError, Readable
from pdm.service.bundles import dir_stamp, discard_dir, extract_bundle, replace_dir
from pdm.service.runner import MachineRunner

if TYPE_CHECKING:
    from pdm.service.runner import ShadowRun

__all__ = ["ModelManager", "UpdateOptions"]

log = logging.getLogger("pdm.service")


class UpdateOptions(Protocol):
    """The service's options a model update reads (``ServiceOptions``), read when used."""

    #: Shadow windows a candidate must score before a promotion, unless forced.
    promote_min_windows: int
    #: ``model_poll_s``: how often the watcher looks at the model directories, s (default 1).
    extra: dict[str, Any]


class ModelManager:
    """The model updates of a service's machines (``runners``, filled as the service starts).

    ``event(machine, kind, severity, message, **detail)`` records an event in history;
    :meth:`watch` looks at the model directories until ``stop_event``.
    """

    def __init__(
        self,
        runners: dict[str, MachineRunner],
        opts: UpdateOptions,
        stop_event: threading.Event,
        event: Callable[..., None],
    ) -> None:
        self.runners = runners
        self.opts = opts
        self.stop_event = stop_event
        self._event = event
        # Model updates: the watcher, promote, rollback and uploads take turns (RLock).
        self._model_lock = threading.RLock()
        self._model_seen: dict[str, tuple[int, ...]] = {}
        self._cand_seen: dict[str, tuple[int, ...]] = {}
        #: machine → (stamp, report) of the candidate running in shadow, as it was checked.
        self._cand_checked: dict[str, tuple[tuple[int, ...], CandidateReport]] = {}

    def note_live_models(self) -> None:
        """What the live model directories hold now: the watcher swaps in only what changes."""
        self._model_seen = {m: self._model_stamp(r) for m, r in self.runners.items()}

    @staticmethod
    def _model_stamp(runner: MachineRunner) -> tuple[int, ...]:
        d = runner.pipeline.model_dir
        return () if d is None else dir_stamp(d)

    @staticmethod
    def _model_paths(runner: MachineRunner) -> tuple[Path, str]:
        """The models root and the model's name: ``root/name`` is the live model directory."""
        d = runner.pipeline.model_dir
        if d is None:
            raise APIError(404, f"{runner.machine}: the pipeline names no model directory")
        return d.parent, d.name

    def _check(self, runner: MachineRunner, directory: Path) -> CandidateReport:
        """Every check of :func:`~pdm.scoring.update.check_candidate`, with the pipeline's keys."""
        keys = runner.pipeline.model_public_keys or None
        return check_candidate(directory, runner.pipeline, runner.fs, public_keys=keys)

    def watch(self) -> None:
        """Model directories watched: a new live model is swapped in, a candidate runs in shadow.

        Every model is checked first (:func:`pdm.scoring.update.check_candidate`): the card
        against the pipeline, the ONNX hash, the signature when ``[model] public_keys`` are set,
        and finite scores on the card's reference window. One that fails is rejected (an event,
        one log line) and what ran before keeps running; it is looked at again only when its
        files change.
        """
        while not self.stop_event.wait(self.opts.extra.get("model_poll_s", 1.0)):
            for machine, runner in self.runners.items():
                if runner.pipeline.model_dir is None:
                    continue
                try:
                    with self._model_lock:
                        self._watch_live(machine, runner)
                        self._watch_candidate(machine, runner)
                except Exception as exc:  # the watcher must outlive any one bad directory
                    log.exception("%s: watching the model directories failed: %s", machine, exc)

    def _watch_live(self, machine: str, runner: MachineRunner) -> None:
        stamp = self._model_stamp(runner)
        if stamp == self._model_seen.get(machine):
            return
        self._model_seen[machine] = stamp
        live = runner.pipeline.model_dir
        if live is None or not (live / "model.json").exists():
            return
        try:
            report = self._check(runner, live)
        except (ModelError, ConfigError, OSError) as exc:
            log.error("%s: new model rejected, the old one keeps scoring: %s", machine, exc)
            self._event(machine, "model_rejected", "warning", str(exc))
            return
        old = runner.model_version
        if report.version == old:
            return
        runner.swap_model(report.model)
        msg = f"model {old or '(none)'} → {report.version} ({report.summary()})"
        log.warning("%s: %s", machine, msg)
        self._event(machine, "model_swapped", "info", msg)

    def _watch_candidate(self, machine: str, runner: MachineRunner) -> None:
        root, name = self._model_paths(runner)
        cand = root / f"{name}.candidate"
        stamp = dir_stamp(cand)
        if stamp == self._cand_seen.get(machine):
            return
        self._cand_seen[machine] = stamp
        self._cand_checked.pop(machine, None)
        was = runner.shadow
        if not cand.is_dir():
            if was is not None:
                runner.set_shadow(None)
                msg = f"candidate {was.version} removed; its shadow stopped"
                log.warning("%s: %s", machine, msg)
                self._event(machine, "model_shadow_stopped", "info", msg)
            return
        try:
            report = self._check(runner, cand)
            run = runner.make_shadow(report.model, cand)
        except (ModelError, ConfigError, OSError, ValueError) as exc:
            runner.set_shadow(None)
            msg = f"candidate rejected: {exc}"
            log.error("%s: %s", machine, msg)
            self._event(machine, "model_rejected", "warning", msg)
            return
        self._start_shadow(machine, runner, run, report, stamp, how="candidate")

    def _start_shadow(
        self,
        machine: str,
        runner: MachineRunner,
        run: ShadowRun,
        report: CandidateReport,
        stamp: tuple[int, ...],
        *,
        how: str,
    ) -> None:
        """Score ``run`` in shadow and remember what was checked (the caller holds the lock)."""
        runner.set_shadow(run)
        self._cand_seen[machine] = stamp
        self._cand_checked[machine] = (stamp, report)
        msg = (
            f"{how} {report.version} runs in shadow beside {runner.model_version or '(none)'} "
            f"({report.summary()})"
        )
        log.warning("%s: %s", machine, msg)
        self._event(machine, "model_shadow_started", "info", msg)

    def promote(
        self, machine: str, by: str, comment: str = "", force: bool = False
    ) -> dict[str, Any]:
        """Install the shadow candidate as the live model, swap it in and end the shadow.

        It needs shadow evidence: at least ``promote_min_windows`` windows scored by both
        models (409 otherwise), unless ``force`` (the control API takes it only with a token;
        the promotion's event and log line say it was forced, and on how many windows).

        The bytes installed are the bytes checked (:func:`~pdm.scoring.update.install_candidate`
        with ``expect``); the model replaced becomes ``NAME.previous``. Raises ``KeyError``
        (unknown machine), ``ValueError`` (no name), :class:`APIError` 404 (no candidate) or
        409 (the candidate changed since it was checked, was rejected, or is not checked yet).
        """
        runner = self.runners[machine]
        by, comment = check_operator_text(by, comment)  # ValueError: 400
        root, name = self._model_paths(runner)
        cand = root / f"{name}.candidate"
        with self._model_lock:
            if not cand.is_dir():
                raise APIError(404, f"{machine}: no candidate model ({cand.name})")
            checked = self._cand_checked.get(machine)
            shadow = runner.shadow
            if checked is None or shadow is None or checked[0] != dir_stamp(cand):
                raise APIError(
                    409,
                    f"{machine}: the candidate changed since it was checked, or was rejected "
                    "(see the model_rejected event); promote it once it runs in shadow",
                )
            report = checked[1]
            windows = shadow.as_dict()["windows"]
            need = self.opts.promote_min_windows
            if windows < need and not force:
                raise APIError(
                    409,
                    f"{machine}: the candidate has scored {windows} window(s) in shadow; a "
                    f"promotion needs {need} (or 'force' from an operator with the API token)",
                )
            try:
                install_candidate(cand, root, name, expect=report)
            except ModelError as exc:
                if "changed after the candidate was checked" in str(exc):
                    raise APIError(409, str(exc)) from exc
                raise APIError(503, str(exc)) from exc  # e.g. a read-only models directory
            old = runner.model_version
            figures = shadow.as_dict()
            runner.swap_model(report.model)
            runner.set_shadow(None)
            try:
                discard_dir(cand, root / f".discard-{name}-{secrets.token_hex(4)}")
            except OSError as exc:  # promoted all the same; the watcher shadows it again
                log.warning("%s: cannot remove %s: %s", machine, cand, exc.strerror or exc)
            self._cand_seen[machine] = dir_stamp(cand)
            self._cand_checked.pop(machine, None)
            self._model_seen[machine] = self._model_stamp(runner)
        agreement = figures["agreement"]
        msg = (
            f"model {old or '(none)'} → {report.version} promoted by {by.strip()}: "
            + (
                f"agreed with the active model on {agreement:.1%} of {figures['windows']} "
                f"window(s), mean |score difference| {figures['mean_abs_diff']:.3g}"
                if agreement is not None
                else "no window scored in shadow"
            )
            + (f" ({comment.strip()})" if comment.strip() else "")
            + (
                f"; FORCED with {figures['windows']} shadow window(s) of the "
                f"{self.opts.promote_min_windows} required"
                if force and figures["windows"] < self.opts.promote_min_windows
                else ""
            )
        )
        log.warning("%s: %s", machine, msg)
        self._event(
            machine,
            "model_promoted",
            "warning" if force else "info",
            msg,
            by=by.strip(),
            comment=comment,
            old=old,
            new=report.version,
            shadow=figures,
            forced=force,
        )
        return {"machine": machine, "message": msg, "active": report.version, "previous": old}

    def rollback(self, machine: str, by: str, comment: str = "") -> dict[str, Any]:
        """Restore ``NAME.previous`` as the live model (checked first) and swap it in.

        The model rolled back from becomes ``NAME.previous``. Raises ``KeyError``,
        ``ValueError`` (no name), :class:`APIError` 404 (no previous model) or 409 (it fails
        its check now, e.g. unsigned while keys are configured: nothing changes).
        """
        runner = self.runners[machine]
        by, comment = check_operator_text(by, comment)  # ValueError: 400
        root, name = self._model_paths(runner)
        previous = root / f"{name}.previous"
        with self._model_lock:
            if not previous.is_dir():
                raise APIError(404, f"{machine}: no previous model ({previous.name})")
            try:
                report = self._check(runner, previous)
            except (ModelError, ConfigError, OSError) as exc:
                msg = f"rollback refused: {exc}"
                log.error("%s: %s", machine, msg)
                self._event(machine, "model_rejected", "warning", msg)
                raise APIError(409, msg) from exc
            old = runner.model_version
            try:
                rollback_model(root, name)
            except ModelError as exc:
                raise APIError(503, str(exc)) from exc
            runner.swap_model(report.model)
            self._model_seen[machine] = self._model_stamp(runner)
        msg = f"model {old or '(none)'} → {report.version} rolled back by {by.strip()}" + (
            f" ({comment.strip()})" if comment.strip() else ""
        )
        log.warning("%s: %s", machine, msg)
        self._event(
            machine,
            "model_rolled_back",
            "info",
            msg,
            by=by.strip(),
            comment=comment,
            old=old,
            new=report.version,
        )
        return {"machine": machine, "message": msg, "active": report.version, "previous": old}

    def upload_candidate(self, machine: str, body: Readable) -> dict[str, Any]:
        """A candidate bundle as a tar.gz stream: extracted, checked, then run in shadow.

        The members (model.onnx, model.json, model.sig when signed; nothing else, regular files
        only, each size-bounded) are written to ``ROOT/.upload-NAME-RAND``, checked there, and
        only then renamed to ``NAME.candidate`` (replacing an older candidate). Raises
        ``KeyError`` (unknown machine) or ``ValueError`` with the one-line reason; then nothing
        is written and a ``model_rejected`` event says why.
        """
        runner = self.runners[machine]
        root, name = self._model_paths(runner)
        cand = root / f"{name}.candidate"
        staging = root / f".upload-{name}-{secrets.token_hex(4)}"
        try:
            root.mkdir(parents=True, exist_ok=True)
            staging.mkdir(mode=0o755)
        except OSError as exc:
            raise APIError(
                503, f"{machine}: cannot write a candidate in {root}: {exc.strerror or exc}"
            ) from exc
        try:
            try:
                extract_bundle(body, staging)
                report = self._check(runner, staging)
                run = runner.make_shadow(report.model, cand)
            except (ModelError, ConfigError, ValueError) as exc:
                # The staging directory is nobody's business: name what was uploaded instead.
                reason = str(exc).replace(f"{staging}/", "").replace(str(staging), "the upload")
                log.error("%s: uploaded candidate rejected: %s", machine, reason)
                self._event(
                    machine, "model_rejected", "warning", f"uploaded candidate rejected: {reason}"
                )
                raise ValueError(reason) from exc
            except TimeoutError:
                raise  # the client stopped sending: the API answers 408
            except OSError as exc:  # disk full, read-only: the appliance's side
                raise APIError(
                    503, f"{machine}: cannot unpack the upload in {root}: {exc.strerror or exc}"
                ) from exc
            report = dataclasses.replace(report, directory=cand)
            with self._model_lock:
                try:
                    replace_dir(staging, cand, root / f".discard-{name}-{secrets.token_hex(4)}")
                except OSError as exc:
                    raise APIError(
                        503, f"{machine}: cannot write {cand}: {exc.strerror or exc}"
                    ) from exc
                self._start_shadow(machine, runner, run, report, dir_stamp(cand), how="uploaded")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return {
            "machine": machine,
            "message": f"candidate {report.version} runs in shadow",
            "candidate": report.version,
            "active": runner.model_version or None,
            "signed_by": report.key_id,
        }
