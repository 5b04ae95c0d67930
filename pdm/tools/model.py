"""``pdm-edge model keygen|sign|verify|check|report``: the command line of signed model
bundles (:mod:`pdm.scoring.signing` and :mod:`pdm.scoring.candidate` hold the steps; this
module only parses and prints)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import NoReturn

from pdm.errors import PdmError
from pdm.scoring.candidate import check_candidate
from pdm.scoring.signing import generate_keypair, sign_bundle, verify_bundle

__all__ = ["DESCRIPTION", "add_arguments", "model_main", "run"]

#: ``pdm-edge model --help``'s description.
DESCRIPTION = "Sign, verify and check model bundles (model.onnx + model.json + model.sig)."


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the CLI's rule) instead of usage + message + exit."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pdm-edge model", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``pdm-edge model``'s sub-commands, on ``parser`` (the CLI's sub-parser or :func:`model_main`'s)."""
    sub = parser.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    p = sub.add_parser("keygen", help="write a new ed25519 key pair (private key mode 0600)")
    p.add_argument("--private", required=True, metavar="P.pem", help="new private key file")
    p.add_argument("--public", required=True, metavar="Q.pem", help="new public key file")
    p = sub.add_parser("sign", help="sign a model directory: writes DIR/model.sig")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--key", required=True, metavar="P.pem", help="the private key")
    p = sub.add_parser("verify", help="check a model directory's signature")
    p.add_argument("dir", metavar="DIR")
    p.add_argument(
        "--public",
        required=True,
        action="extend",
        nargs="+",
        metavar="Q.pem",
        help="trusted public keys (repeatable)",
    )
    p = sub.add_parser("check", help="every check a candidate must pass before it is installed")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("-p", "--pipeline", required=True, metavar="PIPELINE.toml")
    p.add_argument(
        "--public",
        action="extend",
        nargs="+",
        metavar="Q.pem",
        help="trusted public keys; when given a valid signature is required",
    )
    p.add_argument(
        "--fs",
        type=float,
        metavar="HZ",
        help="sample rate, Hz (default: the pipeline's, else the card's)",
    )
    p = sub.add_parser(
        "report",
        help="ONNX size, nodes, µs per window and accuracy of the model and its cheaper "
        "variants (optimisation levels, float32 preprocessing, int8); docs/models.md",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--json", action="store_true", help="one JSON object (default: a table)")
    p.add_argument(
        "--dataset",
        metavar="DIR",
        help="CWRU recordings (default ../shared/datasets/cwru; skipped when absent)",
    )
    p.add_argument(
        "--pipeline", metavar="FILE", help="CWRU pipeline (default pipelines/cwru_drive_end.toml)"
    )
    p.add_argument("--detectors", metavar="A,B", help="CWRU detectors (default: all four)")
    p.add_argument("--quick", action="store_true", help="fewer timing rounds")


def _run(args: argparse.Namespace) -> str:
    if args.model_command == "keygen":
        kid = generate_keypair(args.private, args.public)
        return f"wrote {args.private} (private, 0600) and {args.public} (public); key id {kid}"
    if args.model_command == "sign":
        path = sign_bundle(args.dir, args.key)
        return f"{path}: signed, key id {json.loads(path.read_text())['key_id']}"
    if args.model_command == "verify":
        return f"{args.dir}: signature ok, key id {verify_bundle(args.dir, args.public)}"
    if args.model_command == "report":
        from pdm.scoring.report import markdown_table, model_report

        rep = model_report(
            args.dir,
            dataset=args.dataset,
            pipeline_file=args.pipeline,
            detectors=args.detectors.split(",") if args.detectors else None,
            quick=args.quick,
        )
        return json.dumps(rep) if args.json else markdown_table(rep)
    from pdm.config import load_pipeline

    pipeline = load_pipeline(args.pipeline)
    fs = args.fs if args.fs is not None else pipeline.acquisition.sample_rate_hz
    return check_candidate(args.dir, pipeline, fs, public_keys=args.public).summary()


def model_main(argv: Sequence[str]) -> int:
    """``pdm-edge model keygen|sign|verify|check|report ...`` on a parser of its own.

    The result on stdout, 0; errors are one line on stderr (``pdm-edge: error: …``) and
    exit status 2.
    """
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:  # --help
        return int(exc.code or 0) if isinstance(exc.code, int | None) else 2
    except _UsageError as exc:
        print(f"pdm-edge: error: {exc}", file=sys.stderr)
        return 2
    return run(args)


def run(args: argparse.Namespace) -> int:
    """``pdm-edge model`` with its parsed options (:func:`add_arguments`); the exit status."""
    try:
        print(_run(args))
    except PdmError as exc:
        print(f"pdm-edge: error: {exc}", file=sys.stderr)
        return 2
    return 0
