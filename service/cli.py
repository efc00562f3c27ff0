"""The ``triage`` command.

One command with subcommands. Every option can also come from an environment variable
named ``TRIAGE_<OPTION>`` (shown in ``--help``); a flag on the command line wins.
Training and phantom generation live in :mod:`training` and are imported lazily.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

from service.commands import (
    cmd_demo,
    cmd_evaluate,
    cmd_feedback_export,
    cmd_hash_password,
    cmd_info,
    cmd_predict,
    cmd_serve,
    cmd_synth,
    cmd_train,
    cmd_web,
    cmd_worklist,
)
from triage.errors import TriageError

ENV_PREFIX = "TRIAGE_"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def _option(parser: argparse.ArgumentParser, flag: str, *, help: str, default=None, **kwargs):
    """Add ``--flag`` whose default comes from ``TRIAGE_FLAG`` when set."""
    env_name = ENV_PREFIX + flag.upper().replace("-", "_")
    value = _env(flag)
    if value is not None:
        default = kwargs.get("type", str)(value)
    shown = "" if default is None else f" (default: {default})"
    parser.add_argument(
        f"--{flag}", default=default, help=f"{help}{shown} [env: {env_name}]", **kwargs
    )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    _option(
        parser, "model", help="model package folder; the bundled phantom-trained package if unset"
    )
    _option(
        parser,
        "device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where the networks run",
    )
    _option(parser, "batch-size", default=16, type=int, help="images per forward pass")


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="TOML",
        help="settings file; TRIAGE_* variables and flags override it [env: TRIAGE_CONFIG]",
    )


def _add_database_option(parser: argparse.ArgumentParser) -> None:
    _option(
        parser,
        "database-url",
        default=None,
        help="SQLAlchemy URL of a shared database, e.g. "
        "postgresql+psycopg://triage@db/triage (default: SQLite in the data folder)",
    )


def _add_service_options(parser: argparse.ArgumentParser) -> None:
    _add_config_option(parser)
    _option(
        parser,
        "data-dir",
        default="triage-data",
        help="folder for inbox, outbox and the SQLite database",
    )
    _add_database_option(parser)
    _option(parser, "host", default="127.0.0.1", help="address the listener binds")
    _option(parser, "port", default=11112, type=int, help="listener port")
    _option(parser, "ae-title", default="TRIAGE", help="our AE title")
    _option(
        parser,
        "stable-age",
        default=5.0,
        type=float,
        help="seconds without a new image before a study is analysed",
    )
    _option(parser, "max-associations", default=10, type=int, help="associations served at once")
    _option(parser, "max-pdu", default=0, type=int, help="maximum PDU size in bytes (0: any)")
    _option(
        parser,
        "network-timeout",
        default=60.0,
        type=float,
        help="seconds of silence before an association is dropped (ACSE and DIMSE: half)",
    )
    _option(
        parser,
        "retention-days",
        default=7.0,
        type=float,
        help="days the files of a finished, delivered study are kept",
    )
    parser.add_argument(
        "--destination",
        action="append",
        default=_env_list("destination"),
        metavar="AET@HOST:PORT",
        help="where SEGs are sent (repeatable) [env: TRIAGE_DESTINATION, comma-separated]",
    )
    parser.add_argument(
        "--allow-ae",
        action="append",
        default=_env_list("allow-ae"),
        metavar="AET",
        help="calling AE titles accepted, AET or AET@HOST (repeatable; none: "
        "any) [env: TRIAGE_ALLOW_AE, comma-separated]",
    )


def _add_web_options(parser: argparse.ArgumentParser, *, optional: bool = True) -> None:
    if optional:
        parser.add_argument("--no-web", action="store_true", help="do not serve the web page")
    _option(parser, "web-host", default="127.0.0.1", help="address the web page binds")
    _option(parser, "web-port", default=8080, type=int, help="port of the web page")
    parser.add_argument(
        "--web-user",
        action="append",
        default=_env_list("web-user"),
        metavar="NAME:HASH",
        help="a reader allowed in, with a password hash from `triage hash-password` "
        "(repeatable; needed to bind beyond loopback) [env: TRIAGE_WEB_USER, comma-separated]",
    )
    _option(
        parser,
        "trusted-proxy-header",
        default=None,
        help="header in which a trusted reverse proxy names the logged-in reader "
        "(e.g. X-Remote-User); the proxy must be the only way in",
    )


def _add_notify_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--webhook",
        action="append",
        default=_env_list("webhook"),
        metavar="URL",
        help="POST a JSON message here when a study turns positive (repeatable) "
        "[env: TRIAGE_WEBHOOK, comma-separated]",
    )
    _option(
        parser,
        "notify-priority",
        default=50.0,
        type=float,
        help="notify only positives of at least this priority (50-100)",
    )


def _env_list(name: str) -> list[str]:
    value = _env(name)
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``triage`` command."""
    parser = argparse.ArgumentParser(
        prog="triage",
        description=(
            "Pneumothorax triage for chest radiographs: a classifier flags frontal chest "
            "images, a U-Net outlines the pneumothorax, results go out as DICOM SEG. "
            "Research software, not a medical device."
        ),
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = sub.add_parser(
        "predict",
        help="analyse DICOM files and write SEGs and results.json",
        description="Analyse chest radiographs (files or folders, recursively). Writes "
        "OUT/<SOPInstanceUID>.seg.dcm for each positive image and OUT/results.json for "
        "every input. Exit status 1 if any input could not be read.",
    )
    predict.add_argument("paths", nargs="+", metavar="PATH", help="DICOM files or folders")
    _option(predict, "out", required=_env("out") is None, help="output folder")
    _add_model_options(predict)
    predict.add_argument(
        "--overlays",
        action="store_true",
        help="also write OUT/<SOPInstanceUID>.overlay.png pictures",
    )
    predict.add_argument("--json", action="store_true", help="print results as JSON, not a table")
    predict.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    predict.set_defaults(func=cmd_predict)

    synth = sub.add_parser(
        "synth",
        help="write synthetic chest radiographs (phantoms) with ground truth",
        description="Write OUT/<StudyInstanceUID>/<SOPInstanceUID>.dcm phantoms and a "
        ".mask.png (0/255) beside each frontal image. Deterministic by seed.",
    )
    _option(synth, "out", required=True, help="output folder")
    synth.add_argument("--studies", type=int, default=10, help="number of studies (default 10)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument(
        "--prevalence",
        type=float,
        default=0.3,
        help="share of studies with a pneumothorax (default 0.3)",
    )
    synth.add_argument(
        "--max-size",
        type=int,
        default=3000,
        help="largest image side in pixels (default 3000; smallest is 512)",
    )
    synth.add_argument(
        "--siim-png",
        type=int,
        metavar="N",
        default=0,
        help="instead, write N images in the SIIM 256-px PNG layout (train/, masks/)",
    )
    synth.set_defaults(func=cmd_synth)

    train = sub.add_parser(
        "train",
        help="cross-validate the cascade and write a model package and a report",
        description="Train, per patient-grouped fold, the classifier on all images, the "
        "U-Net on positive images only and (for comparison) a U-Net on all images; choose "
        "the operating point on out-of-fold predictions; write the fold ensemble as a "
        "model package that serve and predict load, and OUT/report/report.html. "
        "Interrupted? Run the same command with --resume.",
    )
    from training.cli import add_train_arguments

    add_train_arguments(train)
    train.set_defaults(func=cmd_train)

    serve = sub.add_parser(
        "serve",
        help="run the DICOM listener, scheduler, worker and sender",
        description="Receive chest studies by C-STORE, analyse each settled study, send a "
        "SEG per positive image to every --destination and keep the worklist. Stop with "
        "Ctrl-C or SIGTERM: the current job finishes first.",
    )
    _add_service_options(serve)
    _add_web_options(serve)
    _add_notify_options(serve)
    _add_model_options(serve)
    _option(serve, "workers", default=1, type=int, help="worker threads running the cascade")
    serve.set_defaults(func=cmd_serve, lease_seconds=300.0, listen=True)

    listen = sub.add_parser(
        "listen",
        help="run only the listener and the periodic tasks (no inference)",
        description="The receiving half of `triage serve`, for deployments that run workers "
        "elsewhere (`triage work`) on a shared database.",
    )
    _add_service_options(listen)
    _add_web_options(listen)
    _add_notify_options(listen)
    listen.set_defaults(
        func=cmd_serve,
        workers=0,
        model=None,
        device="cpu",
        batch_size=1,
        lease_seconds=300.0,
        listen=True,
    )

    work = sub.add_parser(
        "work",
        help="run only workers: claim queued studies and analyse them",
        description="The inference half of `triage serve`. Several `triage work` processes may "
        "share one database; SIGTERM lets the current job finish.",
    )
    _add_config_option(work)
    _option(work, "data-dir", default="triage-data", help="the service's data folder")
    _add_database_option(work)
    work.add_argument(
        "--destination",
        action="append",
        default=_env_list("destination"),
        metavar="AET@HOST:PORT",
        help="where SEGs are sent (repeatable)",
    )
    _add_model_options(work)
    _option(work, "workers", default=1, type=int, help="worker threads")
    _option(
        work,
        "lease-seconds",
        default=300.0,
        type=float,
        help="how long a claimed job is held before another worker may take it",
    )
    work.set_defaults(
        func=cmd_serve,
        listen=False,
        host="127.0.0.1",
        port=0,
        ae_title="TRIAGE",
        stable_age=5.0,
        allow_ae=[],
        retention_days=7.0,
        max_associations=10,
        max_pdu=0,
        network_timeout=60.0,
        no_web=True,
        webhook=[],
        notify_priority=50.0,
    )

    web = sub.add_parser(
        "web",
        help="serve only the worklist page and its JSON API",
        description="The web page of `triage serve` on its own, over an existing data folder "
        "(for example on another port, or while the service runs elsewhere on a shared "
        "database). Loopback needs no login; any other address needs --web-user or "
        "--trusted-proxy-header.",
    )
    _add_config_option(web)
    _option(web, "data-dir", default="triage-data", help="the service's data folder")
    _add_database_option(web)
    _add_web_options(web, optional=False)
    web.set_defaults(func=cmd_web)

    export = sub.add_parser(
        "feedback-export",
        help="write the cases readers confirmed or corrected as training data",
        description="Copy each study with feedback as image + SEG pairs (a corrected SEG "
        "wins; 'agree' keeps our SEG; 'false positive' makes the image negative; 'missed' "
        "and 'wrong extent' without a corrected SEG are left out and named). Train on it "
        "with `triage train --dataset dicom-seg --data OUT`, or in one step with "
        "`triage train --dataset feedback --data-dir D`.",
    )
    _option(export, "data-dir", default="triage-data", help="the service's data folder")
    _add_database_option(export)
    export.add_argument("--out", required=True, help="folder to write")
    export.set_defaults(func=cmd_feedback_export)

    password = sub.add_parser(
        "hash-password",
        help="make a password hash for --web-user",
        description="Read a password (twice, without echo) and print the PBKDF2-SHA256 hash "
        "to put after NAME: in --web-user or in the settings file's web-user list.",
    )
    password.set_defaults(func=cmd_hash_password)

    worklist = sub.add_parser(
        "worklist",
        help="print the prioritised worklist",
        description="Studies by priority (largest, most certain pneumothorax first), ties by "
        "arrival.",
    )
    _add_config_option(worklist)
    _option(worklist, "data-dir", default="triage-data", help="the service's data folder")
    _add_database_option(worklist)
    worklist.add_argument("--json", action="store_true", help="print JSON, not a table")
    worklist.add_argument(
        "--state", action="append", default=[], help="only studies in this state (repeatable)"
    )
    worklist.set_defaults(func=cmd_worklist)

    demo = sub.add_parser(
        "demo",
        help="run the whole service against a modality and a PACS stand-in",
        description="Start the service on free local ports, send phantom studies (and the "
        "real sample images in ../shared/data/real when present), receive the SEGs at a "
        "local PACS stand-in, print the worklist and the latency per study.",
    )
    demo.add_argument("--out", default="demo-output", help="working folder (emptied first)")
    demo.add_argument(
        "--shared-real",
        default="../shared/data/real",
        help="folder of real sample DICOM files to send too, if present",
    )
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep serving after the demo, so the worklist page can be opened in a browser",
    )
    demo.add_argument(
        "--web-port", type=int, default=8080, help="port of the worklist page (default 8080)"
    )
    demo.set_defaults(func=cmd_demo)

    evaluate = sub.add_parser(
        "evaluate",
        help="score a model package on a dataset",
        description="Run the cascade over a dataset and print classifier AUC, the "
        "competition mean Dice (empty on empty = 1) beside the all-empty baseline, Dice on "
        "positives, sensitivity and specificity.",
    )
    from training.cli import add_evaluate_arguments

    add_evaluate_arguments(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    info = sub.add_parser("info", help="describe a model package")
    _option(info, "model", help="model package folder; the bundled one if unset")
    info.set_defaults(func=cmd_info)
    return parser


CONFIGURABLE = ("serve", "listen", "work", "worklist", "web")


def apply_config(parser: argparse.ArgumentParser, path: str) -> None:
    """Use a TOML settings file as defaults: a flag or a TRIAGE_* variable still wins.

    Keys are option names (``data-dir`` or ``data_dir``), at the top level.

    Raises
    ------
    ValueError
        If the file is not TOML or names an option no command has.
    """
    try:
        values = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read settings file {path}: {exc}") from exc
    values = {key.replace("-", "_"): value for key, value in values.items()}
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    known: set[str] = set()
    for name in CONFIGURABLE:
        sub = subparsers.choices[name]
        dests = {action.dest for action in sub._actions}
        known |= dests
        chosen = {key: value for key, value in values.items() if key in dests and _env(key) is None}
        sub.set_defaults(**chosen)
    unknown = sorted(set(values) - known)
    if unknown:
        hints = [difflib.get_close_matches(k, known, n=1) for k in unknown]
        said = ", ".join(
            f"{k} (did you mean {h[0]}?)" if h else k for k, h in zip(unknown, hints, strict=False)
        )
        raise ValueError(f"settings file {path} names unknown options: {said}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``triage`` console script."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    # `triage train --config` names a training configuration, not a settings file.
    config = None
    if command in CONFIGURABLE:
        config = pre.parse_known_args(argv)[0].config or _env("config")
    if config:
        try:
            apply_config(parser, config)
        except ValueError as exc:
            print(f"triage: {exc}", file=sys.stderr)
            return 2
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (TriageError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"triage {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
