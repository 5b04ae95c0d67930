"""The ``pdm-edge`` command.

Every user error ends in one line on stderr, ``pdm-edge: error: …``, naming
what and where, and exit status 2; never a traceback. Data goes to stdout
(JSON Lines where it is data), human summaries to stderr.

Each command imports what it needs inside its function, on purpose: ``import pdm.cli``
takes ~0.1 s where the rooms behind the commands take over 1 s (``pdm.config`` alone
~0.8 s: ``python -X importtime -c "import pdm.cli, pdm.config"``), so ``--help``, a
mistyped flag and the short commands answer at once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import logging
import math
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from pdm import __version__, tune_for_streaming
from pdm.errors import ConfigError, InputError, PdmError

if TYPE_CHECKING:
    from pdm.config import Pipeline

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def _add_pipeline_args(p: argparse.ArgumentParser) -> None:
    """``--pipeline`` or the quick flags; every command that analyses a recording takes these."""
    g = p.add_argument_group("pipeline (a file, or quick flags for any recording)")
    g.add_argument(
        "--pipeline", "-p", metavar="FILE", help="pipeline TOML (see pipelines/README.md)"
    )
    g.add_argument(
        "--fs", type=float, metavar="HZ", help="sample rate, Hz (overrides the pipeline)"
    )
    g.add_argument("--columns", metavar="A,B", help="columns to analyse (default: all)")
    g.add_argument(
        "--window",
        type=int,
        metavar="N",
        help="window length, samples (default 16384, longer for a bearing on a shaft too "
        "slow for its lines to be read: at least 3.5 bins a shaft order)",
    )
    g.add_argument("--overlap", type=float, metavar="F", help="window overlap, fraction 0..0.95")
    g.add_argument("--rpm", type=float, metavar="R", help="fixed shaft speed, r/min")
    g.add_argument(
        "--nominal-rpm",
        type=float,
        metavar="R",
        help="nominal shaft speed, r/min: the speed is searched within ±5%% of it",
    )
    g.add_argument(
        "--rpm-range",
        metavar="LO,HI",
        help="speed search range, r/min (with or without --nominal-rpm)",
    )
    g.add_argument(
        "--bearing",
        metavar="DESIGNATION",
        help="bearing from the built-in catalogue, e.g. 6309-2RS (suffixes ignored)",
    )
    g.add_argument(
        "--bearing-geometry",
        metavar="N,d_mm,D_mm,angle_deg",
        help="bearing geometry instead of --bearing",
    )
    g.add_argument("--iso-group", type=int, choices=(1, 2), help="ISO 10816-3 machine group")
    g.add_argument("--foundation", choices=("rigid", "flexible"), help="ISO 10816-3 foundation")
    g.add_argument("--envelope-band", metavar="auto|LOW,HIGH", help="envelope band, Hz")
    g.add_argument(
        "--start",
        metavar="ISO8601",
        help="time of the first sample when the file has no time column",
    )


_QUICK = (
    "columns",
    "window",
    "overlap",
    "rpm",
    "nominal_rpm",
    "rpm_range",
    "bearing",
    "bearing_geometry",
    "iso_group",
    "foundation",
    "envelope_band",
)


def _pipeline_from_args(args: argparse.Namespace) -> Pipeline:
    from pdm.config import load_pipeline, pipeline_from_flags

    given = [f"--{k.replace('_', '-')}" for k in _QUICK if getattr(args, k) is not None]
    if args.pipeline:
        if given:
            raise ConfigError(
                f"{', '.join(given)}: quick flags cannot be mixed with --pipeline "
                f"(edit {args.pipeline} instead; only --fs and --start may be given with it)"
            )
        return load_pipeline(args.pipeline)
    return pipeline_from_flags(
        fs=args.fs,
        columns=[c.strip() for c in args.columns.split(",")] if args.columns else None,
        window=args.window,
        overlap=args.overlap,
        rpm=args.rpm,
        nominal_rpm=args.nominal_rpm,
        rpm_range=args.rpm_range,
        bearing=args.bearing,
        bearing_geometry=args.bearing_geometry,
        iso_group=args.iso_group,
        foundation=args.foundation,
        envelope_band=args.envelope_band,
    )


def _iso_time(text: str, flag: str) -> dt.datetime:
    """An ISO 8601 time given with ``flag`` (UTC unless it says otherwise)."""
    try:
        t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{flag}: not an ISO 8601 time (got {text!r})") from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def _start_time(args: argparse.Namespace) -> float | None:
    return _iso_time(args.start, "--start").timestamp() if args.start else None


def _json_value(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def cmd_check(args: argparse.Namespace) -> int:
    from pdm.alarms.rules import rules_from
    from pdm.alarms.state import trip_paths
    from pdm.config import check_pipeline, load_pipeline
    from pdm.scoring.card import read_card
    from pdm.scoring.runtime import LEGACY_DIRECTIONS, Model
    from pdm.scoring.train import check_model_out

    # The service config and the secret and TLS files it names first: one line when bad.
    table = _publish_table(args)
    if table is not None:
        from pdm.appliance import appliance_id
        from pdm.publish.config import describe

        published = describe(table, machines=len(args.pipelines), appliance=appliance_id())
    for path in args.pipelines:
        print(check_pipeline(path))
        pl = load_pipeline(path)
        on, of = pl.alarms.delays(pl.acquisition)
        print("trips     what can drop this machine's relay (docs/alarms.md, What may trip):")
        for line in trip_paths(rules_from(pl), pl.columns, f"{on} of {of} windows"):
            print(f"  - {line}")
        model_dir = pl.model_dir
        if model_dir is not None and (model_dir / "model.json").exists():
            card = read_card(model_dir)
            # As run will load it (graph, thresholds, hash, the card against this pipeline,
            # its reference window): "present" said nothing of a model run then refused.
            Model.load(model_dir, pl, pl.acquisition.sample_rate_hz)
            if "direction" not in card.get("preprocess", {}):
                print(f"  warning: the model {LEGACY_DIRECTIONS}")
        elif model_dir is not None and pl.model.teach_in_s:
            check_model_out(model_dir, force=False)  # where teach-in will write its model
    live = [p for p in map(load_pipeline, args.pipelines) if p.acquisition.sample_rate_hz]
    if live:  # all of them in one service, on this machine (docs/service.md, "Overload")
        from pdm.service.capacity import estimate

        print(estimate(live).line())
    if table is not None:
        print("publish   what `run` with these options sends to the plant (docs/integration.md):")
        for line in published:
            print(f"  - {line}")
    return 0


def _check_html(path: str | None) -> None:
    """Refuse an --html path that cannot be written before any work is done."""
    if path:
        from pdm.plots import check_page

        check_page(path)


def cmd_features(args: argparse.Namespace) -> int:
    _check_html(args.html)
    from pdm.dsp.windows import MAX_ABS_G
    from pdm.plots import Collector
    from pdm.processing import FeatureStream, open_recording, too_short
    from pdm.progress import estimate_seconds, seconds_bar, through

    pipeline = _pipeline_from_args(args)
    out: TextIO = sys.stdout
    summary: dict[str, Any] = {"files": []}
    pages: list[Collector] = []
    for path in args.files:
        rec, pl = open_recording(path, pipeline, fs=args.fs, start_time=_start_time(args))
        page = Collector(str(path))
        with rec, seconds_bar(Path(path).name, estimate_seconds(path, rec.sample_rate_hz)) as bar:
            stream = FeatureStream(pl, rec.sample_rate_hz, diagnose=False)
            for wf in stream.feed(through(rec.chunks(), bar)):
                for row in wf.rows():
                    out.write(json.dumps({k: _json_value(v) for k, v in row.items()}) + "\n")
                    if args.html:
                        page.add(wf.window.t_start, str(row["channel"]), row)
            if stream.windows == 0:
                raise InputError(too_short(path, stream))
            pages.append(page)
            summary["files"].append(
                {
                    "file": str(path),
                    "sample_rate_hz": rec.sample_rate_hz,
                    "sample_rate_from": rec.fs_source,
                    "channels": list(pl.columns),
                    "windows": stream.windows,
                    "invalid_windows": stream.invalid_windows,
                    "bad_samples": rec.bad_samples,
                    "resets": [
                        {
                            "kind": e.kind,
                            "t": e.t,
                            "detail": e.detail,
                            "unused_samples": e.unused_samples,
                        }
                        for e in stream.events
                    ],
                    "unused_tail_samples": stream.tail_samples(),
                }
            )
    out.flush()
    for f in summary["files"]:
        msg = (
            f"{f['file']}: {f['windows']} windows × {len(f['channels'])} channels at "
            f"{f['sample_rate_hz']:g} Hz (rate from {f['sample_rate_from']})"
        )
        if f["invalid_windows"]:
            # Invalid: a cell the reader could not take (--on-bad-data invalidate), or a value
            # no sensor gives (not finite, beyond MAX_ABS_G): "0 bad samples" alone read as none.
            msg += (
                f", {f['invalid_windows']} invalid ({f['bad_samples']} unreadable cells; a "
                f"sample not finite or beyond ±{MAX_ABS_G:g} g makes a window invalid too)"
            )
        if f["resets"]:
            msg += f", {len(f['resets'])} resets: " + "; ".join(r["detail"] for r in f["resets"])
        print(msg, file=sys.stderr)
    if args.html:
        _features_html(args.html, pages, pipeline)
    return 0


def _features_html(path: str, pages: list[Any], pipeline: Pipeline) -> None:
    from pdm.dashboard.labels import channel_label, feature_label
    from pdm.dsp.iso import zone_limits
    from pdm.plots import features_page, write_page

    _ab, bc, cd = zone_limits(pipeline.machine.iso_group, pipeline.machine.foundation)
    names = {ch: channel_label(pipeline, ch) for p in pages for ch in p.values}
    text = features_page(
        pages,
        names=names,
        iso_bounds=[("ISO B/C", bc), ("ISO C/D", cd)],
        feature_label=lambda f: feature_label(f, pipeline),
    )
    write_page(path, text)
    print(f"{path}: plots of {len(pages)} recording(s)", file=sys.stderr)


def _time_ns(text: str, flag: str) -> int:
    """An ISO 8601 time (UTC unless it says otherwise) as ns since 1970."""
    return round(_iso_time(text, flag).timestamp() * 1e9)


def _training_set_from_store(args: argparse.Namespace, pipeline: Pipeline) -> Any:
    """``train --from-store``: the stored healthy windows of one machine (pdm/history/training.py)."""
    from pdm.history import open_store, parse_store_url
    from pdm.history.training import training_set_from_store

    if args.files:
        raise ConfigError("--from-store: give recordings or --from-store, not both")
    missing = [f for f in ("machine", "since", "until") if getattr(args, f) is None]
    if missing:
        raise ConfigError("--from-store needs " + ", ".join(f"--{f}" for f in missing) + " as well")
    if args.machine != pipeline.machine.id:
        raise ConfigError(
            f"--machine {args.machine!r}: the pipeline is machine {pipeline.machine.id!r} "
            "(the model is trained for the pipeline that made the rows)"
        )
    start, end = _time_ns(args.since, "--since"), _time_ns(args.until, "--until")
    url = parse_store_url(args.from_store)
    with open_store(url, scope=args.appliance) as store:
        if args.appliance is None and url.scheme != "sqlite":
            apps = sorted({s.appliance for s in store.fleet() if s.machine == args.machine})
            if len(apps) > 1:
                raise ConfigError(
                    f"--machine {args.machine!r}: appliances {', '.join(apps)} all wrote rows "
                    "of that machine to this store; name one with --appliance"
                )
        return training_set_from_store(
            store,
            pipeline,
            machine=args.machine,
            start_ns=start,
            end_ns=end,
            fs=args.fs if args.fs is not None else pipeline.acquisition.sample_rate_hz,
            source=str(url) + ("" if args.appliance is None else f" (appliance {args.appliance})"),
        )


def _model_settings(pipeline: Pipeline, **flags: float | None) -> Any:
    """The pipeline's ``[model]`` settings with the flags given, checked as the pipeline's own
    are (``--holdout nan`` was a traceback, ``--alerts-per-week -1`` another, and
    ``--alerts-per-week nan`` wrote NaN into model.json)."""
    from pydantic import ValidationError

    from pdm.config.messages import format_errors

    m = pipeline.model
    given = {k: v for k, v in flags.items() if v is not None}
    if not given:
        return m
    try:
        return type(m).model_validate({**m.model_dump(), **given})
    except ValidationError as exc:
        flag = lambda loc: "--" + str(loc[0]).replace("_", "-")  # noqa: E731
        raise ConfigError(format_errors(exc, root=type(m), flag_for=flag)) from None


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pdm.scoring.train import check_model_out, collect, train

    check_model_out(Path(args.out), force=args.force)  # before the work, not after it
    pipeline = _pipeline_from_args(args)
    m = _model_settings(pipeline, alerts_per_week=args.alerts_per_week, holdout=args.holdout)
    detector = args.detector or m.detector
    alerts, holdout = m.alerts_per_week, m.holdout
    if args.from_store:
        ts = _training_set_from_store(args, pipeline)
        src = ts.files[0]
        print(
            f"{src['store']}: {src['windows']} healthy windows of {src['stored_windows']} stored "
            f"({src['alarmed_windows']} left out in or just before an alarm, "
            f"{src['invalid_windows']} incomplete or invalid)",
            file=sys.stderr,
        )
    elif not args.files:
        raise ConfigError("train: give healthy recordings or --from-store")
    else:
        # disable=None: a bar on a terminal, silence in logs and pipes.
        with tqdm(desc="windows", unit=" win", disable=None, file=sys.stderr) as bar:
            ts = collect(
                args.files, pipeline, fs=args.fs, start_time=_start_time(args), progress=bar.update
            )
    card = train(
        ts,
        Path(args.out),
        detector=detector,
        alerts_per_week=alerts,
        holdout=holdout,
        seed=args.seed,
        force=args.force,
        # --force only allows replacing the directory: the model is the same without it.
        command="pdm-edge " + " ".join(a for a in sys.argv[1:] if a != "--force")
        if sys.argv[1:2] == ["train"]
        else None,
    )
    cal = card["calibration"]
    print(
        f"{args.out}: {detector} on {len(card['features'])} features, "
        f"{card['training']['train_windows']} windows to train, {cal['holdout_windows']} held out, "
        f"{cal['calibration_windows']} calibrating; "
        f"alert at 1.0 aims at {alerts:g} false alerts/week ({cal['window_rate_hz']:.3g} windows/s), "
        f"danger at {card['score']['danger']:.3g}; held-out max score {cal['holdout_max_score']:.3f}",
        file=sys.stderr,
    )
    for w in cal["warnings"]:
        print(f"pdm-edge: warning: {w}", file=sys.stderr)
    result: dict[str, Any] = {
        "model": str(args.out),
        "onnx_sha256": card["onnx"]["sha256"],
        "calibration": cal,
    }
    if args.sign_key or args.send:
        from pdm.scoring.signing import sign_bundle
        from pdm.scoring.upload import send_bundle

        if args.sign_key:
            result["signature"] = str(sign_bundle(args.out, args.sign_key))
        if args.send:
            from pdm.service.api import api_token

            answer = send_bundle(args.out, args.send, pipeline.machine.id, token=api_token())
            result["sent"] = answer
            print(
                f"{args.send}: the model is {pipeline.machine.id}'s candidate, in shadow; "
                f"promote it with POST /models/{pipeline.machine.id}/promote",
                file=sys.stderr,
            )
    print(json.dumps(result))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    _check_html(args.html)
    from pdm.processing import FeatureStream, open_recording, too_short
    from pdm.scoring.card import pipeline_from_card, read_card
    from pdm.scoring.stream import ScoreStream

    if args.model is None and not args.pipeline:
        raise ConfigError(
            "--model: give a model directory, or a --pipeline whose [model] names one"
        )
    if args.pipeline or args.model is None:
        pipeline = _pipeline_from_args(args)
    else:
        pipeline = _model_pipeline(args, pipeline_from_card, read_card)
    model_dir = Path(args.model) if args.model else pipeline.model_dir
    if model_dir is None:
        raise ConfigError(f"{pipeline.source_path}: [model] path is not set; give --model")
    from pdm.plots import Collector
    from pdm.progress import estimate_seconds, seconds_bar, through

    out = sys.stdout
    pages: list[tuple[Collector, dict[str, Any]]] = []
    for path in args.files:
        rec, pl = open_recording(path, pipeline, fs=args.fs, start_time=_start_time(args))
        page = Collector(str(path))
        with rec, seconds_bar(Path(path).name, estimate_seconds(path, rec.sample_rate_hz)) as bar:
            features = FeatureStream(pl, rec.sample_rate_hz)
            scores = ScoreStream(
                pl, rec.sample_rate_hz, model_dir, features.extractor.names, engine=features.engine
            )
            if scores.learning:
                print(
                    f"{model_dir}: no model yet; learning for {pl.model.teach_in_s:g} s",
                    file=sys.stderr,
                )
            group: list = []
            counts = {"windows": 0, "alerting": 0, "unscored": 0}
            keep = page if args.html else None
            for wf in features.feed(through(rec.chunks(), bar)):
                group.append(wf)
                if len(group) == features.batch:
                    _count_and_write(out, scores.process(group), counts, model_dir, group, keep)
                    group = []
            _count_and_write(out, scores.process(group), counts, model_dir, group, keep)
            if features.windows == 0:
                raise InputError(too_short(path, features))
            if scores.trained_here:
                print(f"{model_dir}: trained by teach-in; monitoring from then on", file=sys.stderr)
            status = scores.teach_in_status()
            if status is not None and status["state"] != "learning":
                print(
                    f"{model_dir}: teach-in refused to finish and asks for a decision "
                    f"(docs/models.md, Teach-in): {status['reason']}",
                    file=sys.stderr,
                )
            out.flush()
            line = _diagnosis_summary(path, features, counts)
            print(line, file=sys.stderr)
            pages.append((page, {**counts, "diagnosis": line.split(": ", 1)[-1]}))
    out.flush()
    if args.html:
        from pdm.plots import score_page, write_page
        from pdm.scoring.card import read_card as read_model_card

        card = read_model_card(model_dir)
        levels = {
            "alert": card.get("score", {}).get("alert"),
            "danger": card.get("score", {}).get("danger"),
        }
        write_page(args.html, score_page(pages, levels))
        print(f"{args.html}: plots of {len(pages)} recording(s)", file=sys.stderr)
    return 0


#: Quick flags that may change a model's pipeline in ``score --model``: the speed is where the
#: orders and defect lines are read, not what the model learnt.
_SPEED_FLAGS = ("rpm", "nominal_rpm", "rpm_range")


def _model_pipeline(args: argparse.Namespace, from_card: Any, read: Any) -> Pipeline:
    """``score --model M`` without --pipeline: the pipeline the model was trained with, its
    speed replaced by --rpm/--nominal-rpm/--rpm-range; any other quick flag is refused."""
    where = str(Path(args.model) / "model.json")
    card = read(Path(args.model))
    others = [k for k in _QUICK if k not in _SPEED_FLAGS and getattr(args, k) is not None]
    if others:
        flag = "--" + others[0].replace("_", "-")
        raise ConfigError(
            f"{flag}: cannot be changed with --model: the model learnt features of its own "
            f"window, channels, bearings and envelope band ({where}); only the speed "
            "(--rpm, --nominal-rpm, --rpm-range) may differ, or train a model for the new setting"
        )
    fs_card = card.get("dsp", {}).get("sample_rate_hz")
    if args.fs is not None and fs_card is not None and float(args.fs) != float(fs_card):
        raise ConfigError(
            f"--fs: {args.fs:g} Hz is not the {float(fs_card):g} Hz the model was trained at "
            f"({where}); resample the recording or train a model at this rate"
        )
    pipeline: Pipeline = from_card(card, where=where)
    return pipeline.with_speed(rpm=args.rpm, nominal_rpm=args.nominal_rpm, rpm_range=args.rpm_range)


def _count_and_write(
    out: TextIO,
    rows: list[dict[str, Any]],
    counts: dict[str, int],
    teach_in: Any = None,
    group: Sequence[Any] = (),
    page: Any = None,
) -> None:
    counts["windows"] += len(rows)
    counts["alerting"] += sum(r.get("state") in ("alert", "danger") for r in rows)
    counts["unscored"] += sum(r.get("valid") is False for r in rows)
    _write_rows(out, rows, teach_in=teach_in)
    if page is not None:
        for wf, row in zip(group, rows, strict=False):
            page.add(wf.window.t_start, "score", {"score": row.get("score")})


def _diagnosis_summary(path: str, features: Any, counts: dict[str, int]) -> str:
    """The per-recording line ``score`` ends with: the engine's judgement at the end."""
    engine = features.engine
    # A window that is not scored is not a quiet one: say how many (a flat channel has no
    # crest or kurtosis, so a dead sensor's windows all go unscored).
    unscored = counts.get("unscored", 0)
    tail = (
        f"; {unscored} not scored (not valid: a sample not finite or beyond ±1e6 g, or a "
        "feature with no value, as a channel with no signal gives)"
        if unscored
        else ""
    )
    if engine is None:
        return f"{path}: {counts['alerting']}/{counts['windows']} windows alerting{tail}"
    d = engine.judge()
    where = (f", {d.channel}" + (f" ({d.bearing})" if d.bearing else "")) if d.channel else ""
    speed = (
        f" at {d.channels[0].shaft_speed_rpm:.0f} r/min"
        if d.channels and math.isfinite(d.channels[0].shaft_speed_rpm)
        else ""
    )
    return (
        f"{path}: diagnosis {d.label} (confidence {d.confidence:.2f}{where}) over the last "
        f"{d.windows} windows{speed}; {counts['alerting']}/{counts['windows']} windows alerting"
        f"{tail}"
    )


def cmd_diagnose(args: argparse.Namespace) -> int:
    _check_html(args.html)
    from pdm.diagnose import diagnose_files, summary_text

    window = args.window  # diagnose takes --window with a pipeline file too
    args.window = None
    pipeline = _pipeline_from_args(args)
    if window is not None and window < 256:
        raise ConfigError(f"--window: at least 256 samples (got {window})")
    results = []
    for r in diagnose_files(
        args.files,
        pipeline,
        window=window,
        fs=args.fs,
        start_time=_start_time(args),
        display=bool(args.html),
        progress=True,
    ):
        if args.json:
            _write_rows(
                sys.stdout, [{k: _json_value(v) for k, v in row.items()} for row in r.rows()]
            )
        else:
            print(summary_text(r))
        sys.stdout.flush()
        results.append(r)
    if args.html:
        from pdm.diagnose import sections as sections_of
        from pdm.diagnosis.report import html_page
        from pdm.plots import write_page

        sections = [sec for r in results for sec in sections_of(r)]
        write_page(args.html, html_page("pdm-edge diagnose", sections))
        print(f"{args.html}: {len(sections)} channel(s)", file=sys.stderr)
    return 0


def _recording_arg(text: str) -> tuple[Path, float | None]:
    """``FILE`` or ``FILE@S`` (a fault from S seconds after the recording's start)."""
    if "@" in text and not Path(text).exists():
        path, _, onset = text.rpartition("@")
        try:
            value = float(onset)
        except ValueError:
            value = math.nan
        if not (path and math.isfinite(value) and value >= 0):
            raise ConfigError(
                f"{text}: expected FILE or FILE@S, S the fault's onset in seconds from the "
                "recording's start (≥ 0)"
            )
        return Path(path), value
    return Path(text), None


def cmd_report(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pdm.config import load_pipeline
    from pdm.dashboard.commissioning_inputs import truth_onset_s
    from pdm.dashboard.commissioning_run import run_commissioning
    from pdm.dashboard.labels import diagnosis_words
    from pdm.dashboard.report import build_report
    from pdm.dashboard.whatif import Run, configured_setting, whatif_grid

    pipeline = load_pipeline(args.pipeline)
    model = Path(args.model) if args.model else None
    if model is not None and not (model / "model.json").is_file():
        raise ConfigError(f"--model {model}: no model.json there")
    from pdm.plots import check_page, write_page

    out = Path(args.out)
    check_page(str(out), "-o")
    tests = [_recording_arg(f) for f in args.files]
    healthy = [Path(f) for f in args.healthy or []]
    runs: list[Run] = []
    with tqdm(
        desc="report",
        total=len(tests) + len(healthy),
        unit=" recording",
        disable=None,
        file=sys.stderr,
    ) as bar:
        for i, (path, onset) in enumerate(tests):
            onset = onset if onset is not None else truth_onset_s(path)
            res = run_commissioning(
                path, pipeline, model, inline=True, progress=True, analyse=i == 0
            )
            runs.append(Run(res, "fault" if onset is not None else "unknown", onset))
            bar.update(1)
        for path in healthy:
            res = run_commissioning(
                path, pipeline, model, inline=True, progress=True, analyse=False
            )
            runs.append(Run(res, "healthy"))
            bar.update(1)
    main = runs[0].res
    setting = configured_setting(main, args.quantity)
    grid = whatif_grid(runs, setting)
    write_page(str(out), build_report(main, runs=runs, setting=setting, grid=grid), "-o")
    for note in main.notes:
        print(f"pdm-edge: warning: {note}", file=sys.stderr)
    diag = main.averaged.label if main.averaged is not None else main.top_diagnosis()
    ups = [t for t in main.transitions if t.get("from") == "ok"]
    print(
        f"{out}: {main.recording}: final state {main.summary.get('alarm_state') or 'ok'!s}"
        + (f", first alarm at window {ups[0]['window']}" if ups else ", no alarm")
        + f", diagnosis {diagnosis_words(diag) or 'none'}; {len(runs)} recording(s) compared",
        file=sys.stderr,
    )
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from pdm.history import default_data_dir
    from pdm.replay import ReplayOptions, check_speed, replay, resolve_store

    logging.basicConfig(level=logging.WARNING, format="pdm-edge: %(message)s")
    pipeline = _pipeline_from_args(args)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    captures = set()
    for part in (args.capture or "").split(","):
        if part.strip():
            try:
                captures.add(int(part))
            except ValueError:
                raise ConfigError(
                    f"--capture: window indices, comma-separated (got {part!r})"
                ) from None
    opts = ReplayOptions(
        store=resolve_store(args.store, pipeline, data_dir),
        data_dir=data_dir,
        model_dir=Path(args.model) if args.model else None,
        speed=check_speed(args.speed),
        fs=args.fs,
        start_time=_start_time(args),
        restart=args.restart,
        drain_timeout_s=args.drain_timeout,
        capture_windows=frozenset(captures),
        actions=args.actions,
    )
    summary = replay(args.files, pipeline, opts)
    if summary["spool_rows"]:
        print(
            f"pdm-edge: {summary['spool_rows']} row(s) wait in the spool for {summary['store']}; "
            "the next command that writes to it delivers them",
            file=sys.stderr,
        )
    if summary["interrupted"]:
        print(
            f"pdm-edge: stopped by {summary['interrupted']}; run the same command to resume",
            file=sys.stderr,
        )
    print(json.dumps(summary), flush=True)
    if summary["interrupted"] == "SIGINT":
        return 130
    return 143 if summary["interrupted"] else 0


def cmd_run(args: argparse.Namespace) -> int:
    from pdm.service.signals import stop_on_signals

    # From here on SIGTERM/SIGINT only ask to stop: a signal while the service starts stops
    # it cleanly once started (relays dropped, exit 0), never half-way.
    args.stop_event = threading.Event()
    stop_on_signals(args.stop_event)
    tune_for_streaming()
    who = "pdm-edge" if args.worker is None else f"pdm-edge[w{args.worker}]"
    logging.basicConfig(level=logging.WARNING, format=f"{who}: %(message)s")
    if args.control_fd is not None:
        # A worker tells its supervisor why it cannot start (the supervisor says it, once,
        # and exits 2) rather than print a line of its own.
        try:
            return _run(args)
        except PdmError as exc:
            with socket.socket(fileno=args.control_fd) as ctl:
                ctl.send(f"error {exc}".encode()[:4000])
            return 2
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from pdm.config import load_pipeline
    from pdm.history import default_data_dir
    from pdm.replay import check_speed, resolve_store
    from pdm.service.app import Service, ServiceOptions
    from pdm.service.inputs import parse_fault

    pipelines = [load_pipeline(p) for p in args.pipelines]
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if not (args.listen or args.simulate or args.replay or args.mqtt):
        raise ConfigError(
            "run: give a source: --listen HOST:PORT, --mqtt URL, --simulate or --replay FILE"
        )
    if args.replay and len(pipelines) != 1:
        raise ConfigError("--replay feeds one pipeline; give exactly one")
    store = resolve_store(args.store, pipelines[0], data_dir)
    publish = _publish_table(args)
    if args.worker is None:
        from pdm.service.capacity import estimate
        from pdm.service.workers import check_workers

        # What the machines need against what this machine sustains, before anything starts
        # (one line; a service that will not fit still starts, and sheds).
        logging.getLogger("pdm.service").warning("%s", estimate(pipelines).line())

        n = check_workers(args.workers, pipelines)
        if n > 1:
            if args.replay:
                raise ConfigError("--replay feeds one pipeline; it runs in one process")
            return _run_supervisor(args, pipelines, n, store, data_dir, publish)
    opts = ServiceOptions(
        store=store,
        data_dir=data_dir,
        api=None if args.api == "off" else args.api,
        listen=args.listen,
        simulate=args.simulate,
        faults=tuple(parse_fault(f) for f in args.fault or ()),
        replay=tuple(args.replay or ()),
        speed=check_speed(args.speed) or 1.0,
        silence_s=args.silence_s,
        stall_s=args.stall_s,
        max_lag_s=args.max_lag_s,
        actions=args.actions,
        duration_s=args.duration if args.duration else math.inf,
        worker=args.worker,
        control_fd=args.control_fd,
        parent_pid=args.parent_pid,
        mqtt=args.mqtt,
        sibling_ids=frozenset(filter(None, (args.sibling_ids or "").split(","))),
        max_frame_bytes=args.max_frame_bytes,
        max_input_bytes=args.max_input_bytes,
        max_connections=args.max_connections,
        max_per_peer=args.max_per_peer,
        promote_min_windows=args.promote_min_windows,
        publish=publish,
        publish_feed=args.publish_feed,
    )
    return Service(pipelines, opts, stop_event=args.stop_event).start().run_forever()


def _publish_table(args: argparse.Namespace) -> Any:
    """``[publish]`` of ``--config`` with ``--publish``/``--opcua``/``--modbus-server`` applied
    (None when nothing is published); the appliance id checked before anything starts."""
    from pdm.appliance import appliance_id
    from pdm.publish.config import load_service_config, with_flags

    appliance_id()  # ConfigError: a PDM_APPLIANCE_ID that cannot name topics and tags
    cfg = load_service_config(args.config) if args.config else None
    table = with_flags(cfg, publish=args.publish, opcua=args.opcua, modbus=args.modbus_server)
    return table if table.any else None


def _run_supervisor(
    args: argparse.Namespace,
    pipelines: list[Any],
    n: int,
    store: Any,
    data_dir: Path,
    publish: Any = None,
) -> int:
    """``run`` with a process per core: the workers get the same options, a private
    stream port (the supervisor hands them connections) and the resolved store."""
    from pdm.history import spool_path
    from pdm.service.workers import Supervisor, adopt_orphan_spools, plan_workers

    store_arg = (
        f"sqlite:///{Path(store.path).resolve()}" if store.scheme == "sqlite" else store.text
    )
    # (each worker's --api is a Unix socket the supervisor names)
    common = ["--store", store_arg, "--data-dir", str(data_dir.resolve())]
    if args.listen:
        common += ["--listen", "127.0.0.1:0"]
    if args.mqtt:
        common += ["--mqtt", args.mqtt]
    if args.simulate:
        common.append("--simulate")
    for f in args.fault or ():
        common += ["--fault", f]
    if args.duration:
        common += ["--duration", str(args.duration)]
    common += ["--speed", str(args.speed), "--actions", args.actions]
    common += ["--silence-s", str(args.silence_s), "--stall-s", str(args.stall_s)]
    common += ["--max-lag-s", str(args.max_lag_s), "--workers", "1"]
    common += ["--promote-min-windows", str(args.promote_min_windows)]
    if publish is not None:  # the supervisor publishes; its workers feed it their states
        common.append("--publish-feed")
    limits = {
        "--max-frame-bytes": args.max_frame_bytes,
        "--max-input-bytes": args.max_input_bytes,
        "--max-connections": args.max_connections,
        "--max-per-peer": args.max_per_peer,
    }
    for flag, value in limits.items():
        if value is not None:
            common += [flag, str(value)]
    workers = len(plan_workers(pipelines, n))
    base = spool_path(data_dir, store)
    keep = [spool_path(data_dir, store, worker=k) for k in range(workers)]
    if base.parent.is_dir():
        adopt_orphan_spools(base, keep, keep[0])
    sup = Supervisor(
        args.pipelines,
        pipelines,
        n,
        common_argv=common,
        listen=args.listen,
        api=None if args.api == "off" else args.api,
        stop_event=args.stop_event,
        max_connections=args.max_connections,
        max_per_peer=args.max_per_peer,
        publish=publish,
        actions=args.actions,
    )
    return sup.start().run_forever()


def cmd_ack(args: argparse.Namespace) -> int:
    from pdm.history import default_data_dir, parse_store_url
    from pdm.supervision.ack import ack

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    url = parse_store_url(args.store or f"sqlite:///{(data_dir / 'history.db').resolve()}")
    print(ack(args.machine, args.by, args.comment or "", data_dir, url))
    return 0


def _write_rows(out: TextIO, rows: list[dict[str, Any]], teach_in: Path | None = None) -> None:
    for row in rows:
        out.write(json.dumps(row) + "\n")
        note = row.get("teach_in") if teach_in is not None else None
        if isinstance(note, dict) and note.get("action"):
            # what the teach-in did, on stderr too (the row has it for programs)
            print(
                f"{teach_in}: teach-in {note['action']}: {note.get('reason', '')}", file=sys.stderr
            )


def cmd_evaluate(args: argparse.Namespace) -> int:
    _check_html(args.html)
    from tqdm import tqdm

    from pdm.scoring.evaluate import evaluate_cwru, steps, text_table

    known = ["mahalanobis", "gmm", "pca", "iforest"]
    detectors = known if args.detectors is None else [d.strip() for d in args.detectors.split(",")]
    unknown = [d for d in detectors if d not in known]
    if unknown or not detectors or len(set(detectors)) < len(detectors):
        # 'foo' was a pydantic traceback after the first recordings were read
        raise ConfigError(
            f"--detectors {args.detectors!r}: expected distinct names among {', '.join(known)}"
        )
    with tqdm(
        desc="evaluate",
        total=steps(detectors),
        unit=" recordings",
        disable=None,
        file=sys.stderr,
        leave=False,
    ) as bar:
        results = evaluate_cwru(
            Path(args.dataset), Path(args.pipeline), detectors, progress=lambda: bar.update(1)
        )
    if args.json:
        print(json.dumps(results))
    else:
        print(text_table(results))
    if args.html:
        from pdm.plots import evaluate_page, write_page

        table = "<pre>" + html.escape(text_table(results)) + "</pre>"
        write_page(args.html, evaluate_page(results, table))
        print(f"{args.html}: {len(results)} result(s)", file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    tune_for_streaming()
    if args.profile_dsp or args.growth or args.growth_machines:
        from pdm.tools.bench_dsp import growth, profile_dsp

        result: dict[str, Any] = {}
        if args.profile_dsp:
            result["profile_batch8"] = profile_dsp(quick=args.quick)
            result["profile_single"] = profile_dsp(quick=args.quick, batch=1)
        if args.growth:
            result.update(growth(quick=args.quick))
        if args.growth or args.growth_machines:
            from pdm.tools.bench_run import machines_growth

            result.setdefault("growth", {})["machines"] = machines_growth(quick=args.quick)
    elif args.diagnosis_only:
        from pdm.tools.bench import NOTES, bench_diagnosis

        figures = bench_diagnosis(quick=args.quick)
        result = {**figures, "notes": {k: v for k, v in NOTES.items() if k in figures}}
    elif args.dsp_only:
        from pdm.tools.bench import NOTES
        from pdm.tools.bench_dsp import dsp_figures

        result = {**dsp_figures(quick=args.quick), "notes": NOTES}
    else:
        from pdm.tools.bench import run_bench

        result = run_bench(quick=args.quick)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:32s} {v}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pdm.demo import run_demo

    return run_demo(
        recording=Path(args.recording) if args.recording else None,
        pipeline=Path(args.pipeline) if args.pipeline else None,
    )


def _seconds(low: float, high: float, *, zero: bool = False) -> Any:
    """An argparse type: a finite number of seconds, ``> low`` (``>= low`` with ``zero``) and
    ``<= high`` (``--duration nan`` killed the simulator's thread with a traceback and
    ``1e308`` overflowed; ``--stall-s -1`` or ``--max-lag-s nan`` were taken as given)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (value >= low if zero else value > low) or not value <= high:
            raise argparse.ArgumentTypeError(
                f"expected seconds {'>=' if zero else '>'} {low:g} and <= {high:g}"
            )
        return value

    return parse


def _whole(low: int, high: int) -> Any:
    """An argparse type: a whole number within ``low .. high``."""

    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number within {low}..{high}")
        return int(text)

    return parse


def _add_publish_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help="service config (TOML): the [publish] table (docs/integration.md)",
    )
    g = p.add_argument_group("the state out to the plant (docs/integration.md)")
    g.add_argument(
        "--publish", metavar="URL", help="MQTT out: mqtt[s]://[USER@]HOST[:PORT][/PREFIX]"
    )
    g.add_argument("--opcua", metavar="URL", help="OPC UA server: opc.tcp://HOST:PORT")
    g.add_argument("--modbus-server", metavar="HOST:PORT", help="read-only Modbus TCP register map")


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors: a usage error is a :class:`ConfigError`.

    ``pdm-edge: error: send: unrecognized arguments: --x (see pdm-edge send --help)``, exit 2,
    instead of argparse's usage block; every sub-parser of the tree is of this class.
    """

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("pdm-edge").strip()
        raise ConfigError(f"{command + ': ' if command else ''}{message} (see {self.prog} --help)")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """As argparse's, but a sub-command names what it does not know itself (argparse
        leaves that to the top, whose message would not say which command)."""
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self.prog != "pdm-edge":
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


#: What a tool's sub-command needs from its module: keyword arguments of ``add_parser``
#: (its description), a function adding its options to the sub-parser, and its runner.
_Tool = tuple[
    dict[str, Any],
    Callable[[argparse.ArgumentParser], None],
    Callable[[argparse.Namespace], int],
]


def _tool(name: str) -> _Tool:
    """The sub-command ``name`` whose options live with its code (imported only when named)."""
    if name == "send":
        from pdm.tools import send

        return {"description": send.DESCRIPTION}, send.add_arguments, send.run
    if name == "soak":
        from pdm.tools import soak

        return {"description": soak.DESCRIPTION}, soak.add_arguments, soak.run
    if name == "model":
        from pdm.tools import model

        return {"description": model.DESCRIPTION}, model.add_arguments, model.run
    if name == "dashboard":
        from pdm.dashboard import launch

        return {"description": launch.DESCRIPTION}, launch.add_arguments, launch.run
    if name == "operators":
        from pdm import operators as pin

        return (
            {"description": pin.OPERATORS_DESCRIPTION},
            pin.add_operators_arguments,
            pin.run_operators,
        )
    if name == "simulate":
        from pdm.sources.simulator import build_parser as simulator_parser
        from pdm.sources.simulator import main as simulator_main

        # The simulator's parser is the parent (its -h included); its main parses the
        # command's own tokens again, which the tree has already checked (see main()).
        own = simulator_parser()
        return (
            {"description": own.description, "parents": [own], "add_help": False},
            lambda p: None,
            lambda args: int(simulator_main(args.tokens)),
        )
    raise AssertionError(name)


def _add_tool(sub: Any, name: str, command: str | None, help: str) -> None:
    """Add the tool ``name``'s sub-parser; its options only when ``command`` is it (or None).

    A tool's module is imported only for its own command line, so that ``pdm-edge run``
    does not load onnxruntime for ``model`` nor the simulator for ``simulate``.
    """
    if command is not None and command != name:
        sub.add_parser(name, help=help)
        return
    kwargs, add_arguments, run = _tool(name)
    p = sub.add_parser(name, help=help, **kwargs)
    add_arguments(p)
    p.set_defaults(func=run)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole ``pdm-edge`` tree; with ``command``, only that tool's options are loaded."""
    parser = _Parser(
        prog="pdm-edge",
        description="Predictive maintenance for rotating machinery: vibration features, "
        "anomaly scores and alarms at the edge.",
    )
    parser.add_argument("--version", action="version", version=f"pdm-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "check",
        help="validate pipeline files (and what run would publish) without running anything",
    )
    p.add_argument("pipelines", nargs="+", metavar="PIPELINE.toml")
    _add_publish_args(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "features",
        help="features of every window of CSV recordings, as JSON Lines",
        description="Prints one JSON object per window and channel: t_start (ISO 8601), window, "
        "channel, and every feature (units in the names). A summary goes to stderr.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="CSV recording(s), .csv or .csv.gz")
    p.add_argument("--html", metavar="OUT", help="also write plots to one offline HTML page")
    _add_pipeline_args(p)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser(
        "train",
        help="learn a machine's healthy baseline from recordings or stored history",
        description="Trains on healthy recordings, or on the feature rows a history store holds "
        "(--from-store: windows in or just before an alarm are left out; docs/models.md), split "
        "by time: the first part trains, the last part calibrates the thresholds. Writes "
        "model.onnx and model.json to --out; --sign-key signs it, --send uploads it to an "
        "appliance as the machine's candidate.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="healthy CSV recording(s)")
    g = p.add_argument_group("from stored history (instead of recordings)")
    g.add_argument(
        "--from-store",
        metavar="URL",
        help="history store: sqlite:///PATH, influx1://…, influx2://…",
    )
    g.add_argument("--machine", metavar="ID", help="machine id (must be the pipeline's)")
    g.add_argument("--since", metavar="T", help="start, ISO 8601 (UTC unless it says)")
    g.add_argument("--until", metavar="T", help="end, ISO 8601 (exclusive)")
    g.add_argument(
        "--appliance",
        metavar="ID",
        help="only this appliance's rows (a central store that several appliances write)",
    )
    g = p.add_argument_group("after training")
    g.add_argument("--sign-key", metavar="P.pem", help="sign the model (pdm-edge model keygen)")
    g.add_argument(
        "--send",
        metavar="URL",
        help="upload it to the appliance's control API as a candidate (token: PDM_API_TOKEN)",
    )
    p.add_argument(
        "--out", "-o", required=True, metavar="DIR", help="model directory, e.g. models/pump-01"
    )
    p.add_argument(
        "--detector",
        choices=("mahalanobis", "gmm", "pca", "iforest"),
        help="default: the pipeline's",
    )
    p.add_argument(
        "--alerts-per-week", type=float, metavar="R", help="target false alerts per week (0-10000]"
    )
    p.add_argument(
        "--holdout", type=float, metavar="F", help="fraction of each file held out (0.1-0.6)"
    )
    p.add_argument(
        "--seed", type=_whole(0, 2**32 - 1), default=0, help="random seed of the detector"
    )
    p.add_argument("--force", action="store_true", help="replace an existing model directory")
    _add_pipeline_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "score",
        help="score every window of recordings with a model, as JSON Lines",
        description="One JSON object per window: t_start, score (alert threshold 1.0), state "
        "(ok/alert/danger for that window alone; alert_by 'diagnosis' when a bearing defect the "
        "diagnosis names raised it), top_features, diagnosis, evidence, below_baseline, model.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="CSV recording(s)")
    p.add_argument("--model", "-m", metavar="DIR", help="model directory (default: the pipeline's)")
    p.add_argument("--html", metavar="OUT", help="also write plots to one offline HTML page")
    _add_pipeline_args(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser(
        "diagnose",
        help="diagnose recordings (bearing defects, unbalance, misalignment, looseness), no model",
        description="Averages each recording's spectra over its windows and judges every fault "
        "family by its lines' prominence over the local floor, harmonics and sidebands "
        "(docs/diagnosis.md). Needs the shaft speed (--rpm or the pipeline's) and, for bearing "
        "defects, the bearing. The window is chosen for the resolution the bearing's lines "
        "need unless --window is given.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="CSV recording(s)")
    p.add_argument("--json", action="store_true", help="one JSON object per file and channel")
    p.add_argument("--html", metavar="OUT", help="also write one self-contained HTML page")
    _add_pipeline_args(p)
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser(
        "report",
        help="the commissioning report of recordings: one offline HTML file",
        description="Replays each recording (dry run, a temporary store) through the pipeline "
        "and model and writes the commissioning report the dashboard downloads: what alarmed, "
        "when and why, the deciding window's spectra, the diagnosis with its averaged spectra, "
        "and a what-if grid of thresholds (as values) and on-delays over every recording. The "
        "first FILE's spectra and diagnosis are shown. FILE@S marks a fault from S seconds "
        "after the recording's start (a simulator's .truth.json gives it when there is one); "
        "--healthy recordings count every alarm as a false one.",
    )
    p.add_argument("files", nargs="+", metavar="FILE[@S]", help="CSV recording(s) under test")
    p.add_argument("--pipeline", "-p", required=True, metavar="FILE", help="pipeline TOML")
    p.add_argument("--model", "-m", metavar="DIR", help="model directory (default: the pipeline's)")
    p.add_argument("--out", "-o", required=True, metavar="OUT.html", help="the report to write")
    p.add_argument(
        "--healthy",
        action="append",
        metavar="FILE",
        help="a healthy reference recording (repeatable)",
    )
    p.add_argument(
        "--quantity",
        choices=("score", "velocity"),
        default="score",
        help="the what-if's thresholds: anomaly score (default) or velocity RMS, mm/s",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "replay",
        help="run recordings through features and scoring into the history store",
        description="Features, scores, spectra, state changes and captures go to the store "
        "(--store, else the pipeline's [history] store, else SQLite in the data directory). "
        "The last line on stdout is a JSON summary. SIGTERM or Ctrl-C stops cleanly; the same "
        "command then resumes.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="CSV recording(s)")
    p.add_argument(
        "--store",
        metavar="URL",
        help="sqlite:///PATH, influx1://[USER@]HOST:PORT/DB[?rp=RP], "
        "influx2://HOST:PORT?org=ORG&bucket=BUCKET (influx1s/influx2s: HTTPS)",
    )
    p.add_argument("--model", "-m", metavar="DIR", help="model directory (default: the pipeline's)")
    p.add_argument(
        "--speed",
        type=float,
        metavar="X",
        help="pace to X times real time (default: as fast as possible)",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="spool, captures, checkpoints, default SQLite store (default: $PDM_EDGE_DATA or ./var)",
    )
    p.add_argument(
        "--restart", action="store_true", help="ignore a checkpoint; replay from the start"
    )
    p.add_argument(
        "--capture", metavar="I,J", help="also keep the raw windows with these indices (on demand)"
    )
    p.add_argument(
        "--actions",
        choices=("dry-run", "live"),
        default="dry-run",
        help="dry-run (default): the relay is only logged and webhooks are recorded as skipped; "
        "live: the pipeline's [alarms] relay and webhooks act",
    )
    p.add_argument(
        "--drain-timeout",
        type=_seconds(0, 86_400, zero=True),
        default=30.0,
        metavar="S",
        help="at the end, wait this long for a down store before leaving rows in the spool (s)",
    )
    _add_pipeline_args(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "run",
        help="the appliance service: live streams through DSP, scoring, alarms, actions, history",
        description="Runs until SIGTERM or Ctrl-C (then flushes history and drops every relay). "
        "Control API: GET /health, /status, /metrics; POST /ack/MACHINE (see docs/service.md).",
    )
    p.add_argument("pipelines", nargs="+", metavar="PIPELINE.toml")
    p.add_argument(
        "--listen", metavar="HOST:PORT", help="TCP stream input (docs/stream-protocol.md)"
    )
    p.add_argument(
        "--mqtt",
        metavar="URL",
        help="MQTT input, mqtt://[USER@]HOST[:PORT]/TOPIC_FILTER (docs/stream-protocol.md)",
    )
    p.add_argument("--simulate", action="store_true", help="feed each pipeline from the simulator")
    p.add_argument(
        "--fault",
        action="append",
        metavar="KIND:AMP@ONSET[+RAMP]",
        help="simulator fault on a schedule, e.g. bpfo:0.3@120+600 (g, s); repeatable",
    )
    p.add_argument("--replay", action="append", metavar="FILE", help="a CSV recording, paced")
    p.add_argument("--speed", type=float, default=1.0, metavar="X", help="replay/simulator pace")
    p.add_argument(
        "--duration",
        type=_seconds(0, 10 * 365 * 86_400),
        metavar="S",
        help="simulate this long (default: for ever)",
    )
    p.add_argument(
        "--store", metavar="URL", help="history store (default: the pipeline's, else SQLite)"
    )
    p.add_argument("--data-dir", metavar="DIR", help="default: $PDM_EDGE_DATA or ./var")
    p.add_argument(
        "--api",
        default="127.0.0.1:8470",
        metavar="HOST:PORT",
        help="control API (off: none); any address but loopback needs PDM_API_TOKEN",
    )
    p.add_argument("--actions", choices=("live", "dry-run"), default="live")
    p.add_argument(
        "--silence-s",
        type=_seconds(0, 30 * 86_400),  # a sensor that sends a block a day, or "never silent"
        default=5.0,
        metavar="S",
        help="source silent → sensor_fault",
    )
    p.add_argument(
        "--stall-s", type=_seconds(0, 86_400), default=5.0, metavar="S", help="watchdog limit"
    )
    p.add_argument(
        "--max-lag-s", type=_seconds(0, 86_400), default=10.0, metavar="S", help="backlog limit"
    )
    g = p.add_argument_group("stream input limits (docs/stream-protocol.md, 'Limits')")
    g.add_argument(
        "--max-frame-bytes",
        type=_whole(64, 64 * 1024 * 1024),
        metavar="N",
        help="largest frame taken (default: sized from the pipelines, 2 s or a window of samples)",
    )
    g.add_argument(
        "--max-input-bytes",
        type=_whole(64, 1 << 40),
        metavar="N",
        help="bytes of incomplete frames held across connections (default: 4 frames, >= 64 MiB)",
    )
    g.add_argument(
        "--max-connections",
        type=_whole(1, 65536),
        metavar="N",
        help="connections at once (default: 2 per configured sensor + 64)",
    )
    g.add_argument(
        "--max-per-peer",
        type=_whole(1, 65536),
        metavar="N",
        help="connections from one address at once (default: as many as in all, since a "
        "gateway may carry every sensor)",
    )
    p.add_argument(
        "--promote-min-windows",
        type=_whole(0, 10**9),
        default=100,
        metavar="N",
        help="shadow windows a candidate model must score before a promotion (default 100)",
    )
    _add_publish_args(p)
    p.add_argument(
        "--workers",
        default="auto",
        metavar="N",
        help="processes that share the machines (auto: one per core, at most one per machine)",
    )
    # Set by the supervisor for its workers (pdm/service/workers.py); not for people.
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("--control-fd", type=int, help=argparse.SUPPRESS)
    p.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    p.add_argument("--sibling-ids", help=argparse.SUPPRESS)
    p.add_argument("--publish-feed", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_run)

    _add_tool(sub, "send", command, help="send a CSV recording to a service's stream input")

    _add_tool(
        sub,
        "soak",
        command,
        help="the service under load for a long time, faults on a schedule; counts what was lost",
    )

    _add_tool(
        sub,
        "model",
        command,
        help="sign, verify, check and report model bundles (keygen|sign|verify|check|report)",
    )

    _add_tool(
        sub, "dashboard", command, help="the plant-floor dashboard (Streamlit) on 127.0.0.1:8501"
    )

    _add_tool(
        sub,
        "operators",
        command,
        help="operators who may acknowledge on the dashboard (PINs, hashed)",
    )

    p = sub.add_parser(
        "ack",
        help="acknowledge a machine's latched alarm (danger, trip) in the state store",
        description="Records who, when and why. A latch that is already clear ends now; one "
        "that is not ends when the machine has been clear for the off-delay.",
    )
    p.add_argument("machine", metavar="MACHINE", help="machine id (the pipeline's machine.id)")
    p.add_argument("--by", required=True, metavar="NAME", help="who acknowledges")
    p.add_argument("--comment", metavar="TEXT", help="why (recorded with the acknowledgement)")
    p.add_argument("--data-dir", metavar="DIR", help="default: $PDM_EDGE_DATA or ./var")
    p.add_argument("--store", metavar="URL", help="history store (default: SQLite in the data dir)")
    p.set_defaults(func=cmd_ack)

    p = sub.add_parser(
        "evaluate",
        help="evaluate the detectors on the real CWRU recordings (false alarms, detection, diagnosis)",
    )
    p.add_argument(
        "--dataset", default=str(REPO_ROOT.parent / "shared" / "datasets" / "cwru"), metavar="DIR"
    )
    p.add_argument(
        "--pipeline", default=str(REPO_ROOT / "pipelines" / "cwru_drive_end.toml"), metavar="FILE"
    )
    p.add_argument("--detectors", metavar="A,B", help="default: all four")
    p.add_argument("--json", action="store_true", help="print the results as one JSON array")
    p.add_argument("--html", metavar="OUT", help="also write the table and bar charts as HTML")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="measure DSP speed (ratios to a bare FFT, medians)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (for smoke tests)")
    p.add_argument(
        "--dsp-only", action="store_true", help="only the DSP ratios (seconds, not minutes)"
    )
    p.add_argument(
        "--diagnosis-only",
        action="store_true",
        help="only the diagnosis engine's cost against the extraction (docs/diagnosis.md §10)",
    )
    p.add_argument(
        "--profile-dsp",
        action="store_true",
        help="the extractor's cost stage by stage, as fractions of the FFT (docs/benchmarks.md)",
    )
    p.add_argument(
        "--growth",
        action="store_true",
        help="extraction cost against window length, channels and sample rate, and the "
        "service's against machines",
    )
    p.add_argument(
        "--growth-machines",
        action="store_true",
        help="only the machines column of --growth: the whole service, 1 machine to saturation",
    )
    p.set_defaults(func=cmd_bench)

    _add_tool(
        sub,
        "simulate",
        command,
        help="seeded vibration simulator (regenerate fixtures, write recordings)",
    )

    p = sub.add_parser(
        "demo", help="replay a fixture recording through the demo pipeline and say what it found"
    )
    p.add_argument("--recording", metavar="FILE", help="default: fixtures/outer_race.csv.gz")
    p.add_argument("--pipeline", metavar="FILE", help="default: pipelines/demo.toml")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)
    try:
        # tokens: the command's own, for a runner that parses them itself (simulate)
        args = parser.parse_args(argv, argparse.Namespace(tokens=argv[1:]))
        return int(args.func(args))
    except PdmError as exc:
        print(f"pdm-edge: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `pdm-edge features ... | head`: the reader left, not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("pdm-edge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
