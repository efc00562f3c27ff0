"""The ``triage`` subcommands: each turns parsed options into a call into the packages.

Heavy imports (torch, the web stack, training) happen inside each command, so
``triage --help`` stays quick.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def web_access(args: argparse.Namespace):
    """The web page's access settings from the options (raises AccessError)."""
    from service.web.access import Access

    users = {}
    for entry in args.web_user:
        name, sep, stored = entry.partition(":")
        if not sep or not name or not stored:
            raise ValueError(f"--web-user wants NAME:HASH, got {entry!r}")
        users[name] = stored
    return Access(host=args.web_host, users=users, proxy_header=args.trusted_proxy_header)


def _load_package(path: str | None):
    from triage.models.package import default_package_path, load_package

    return load_package(path or default_package_path())


def cmd_predict(args: argparse.Namespace) -> int:
    """``triage predict``."""
    from service.predict import Predictor, find_inputs, format_table
    from triage.cascade import Cascade

    package = _load_package(args.model)
    if package.research_only:
        log.warning(
            "model %s %s is %s: NOT FOR CLINICAL USE",
            package.name,
            package.version,
            "trained on synthetic phantoms" if package.synthetic else "research only",
        )
    files = find_inputs(args.paths)
    if not files:
        print("no input files found", file=sys.stderr)
        return 1
    cascade = Cascade(package, device=args.device, batch_size=args.batch_size)
    results = Predictor(cascade, Path(args.out), overlays=args.overlays).run(
        files, progress=not args.no_progress
    )
    if args.json:
        from dataclasses import asdict

        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(format_table(results))
        counts = {s: sum(r.status == s for r in results) for s in ("analysed", "skipped", "error")}
        positives = sum(bool(r.positive) for r in results)
        print(
            f"\n{len(results)} files: {counts['analysed']} analysed ({positives} positive), "
            f"{counts['skipped']} skipped, {counts['error']} errors. "
            f"Results in {Path(args.out) / 'results.json'}"
        )
    return 1 if any(r.status == "error" for r in results) else 0


def cmd_synth(args: argparse.Namespace) -> int:
    """``triage synth``."""
    from training.cli import run_synth

    return run_synth(args)


def cmd_train(args: argparse.Namespace) -> int:
    """``triage train``."""
    from training.cli import run_train

    if args.dataset == "feedback":
        if not args.data_dir:
            print("triage train: --dataset feedback needs --data-dir D", file=sys.stderr)
            return 2
        export = Path(args.out).with_name(Path(args.out).name + "-feedback-data")
        summary = _export_feedback(Path(args.data_dir), export)
        if summary is None:
            return 2
        args.dataset, args.data, args.unlabelled_are_negative = "dicom-seg", str(export), True

    return run_train(args)


def cmd_serve(args: argparse.Namespace) -> int:
    """``triage serve``."""
    from service.listener import ListenerSettings
    from service.notify import WebhookSettings
    from service.serve import Service, ServiceSettings

    settings = ServiceSettings(
        data_dir=Path(args.data_dir),
        listener=ListenerSettings(
            ae_title=args.ae_title,
            host=args.host,
            port=args.port,
            allowed_calling_aets=tuple(args.allow_ae),
            maximum_associations=args.max_associations,
            maximum_pdu_size=args.max_pdu,
            network_timeout=args.network_timeout,
            acse_timeout=args.network_timeout / 2,
            dimse_timeout=args.network_timeout / 2,
        ),
        destinations=tuple(args.destination),
        stable_age=args.stable_age,
        model=Path(args.model) if args.model else None,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        lease_seconds=args.lease_seconds,
        listen=args.listen,
        retention_days=args.retention_days,
        database_url=args.database_url,
        access=None if getattr(args, "no_web", True) else web_access(args),
        web_port=getattr(args, "web_port", 8080),
        webhooks=WebhookSettings(
            urls=tuple(args.webhook),
            min_priority=args.notify_priority,
            page_url=None
            if getattr(args, "no_web", True)
            else f"http://{args.web_host}:{args.web_port}",
        ),
    )
    service = Service(settings)
    if service.web is not None:
        print(f"worklist page: {service.web.url}", file=sys.stderr)
    service.serve_forever()
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    """``triage web``."""
    import signal
    import threading

    from service.db.engine import make_engine, make_sessionmaker, sqlite_url
    from service.db.migrate import upgrade
    from service.web.server import WebServer

    access = web_access(args)
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(args.database_url or sqlite_url(data_dir / "triage.db"))
    upgrade(engine)
    server = WebServer(
        sessions=make_sessionmaker(engine), data_dir=data_dir, access=access, port=args.web_port
    ).start()
    print(f"worklist page: {server.url}", file=sys.stderr)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    done.wait()
    server.stop()
    engine.dispose()
    return 0


def _export_feedback(data_dir: Path, out: Path, database_url: str | None = None):
    """Export the labelled cases of ``data_dir`` to ``out``; None (and a message) if none."""
    import shutil

    from service.db.engine import make_engine, make_sessionmaker, sqlite_url
    from service.feedback import export_training_set

    database = data_dir / "triage.db"
    if database_url is None and not database.is_file():
        print(f"no service database at {database}", file=sys.stderr)
        return None
    shutil.rmtree(out, ignore_errors=True)
    engine = make_engine(database_url or sqlite_url(database))
    with make_sessionmaker(engine)() as session:
        summary = export_training_set(session, data_dir, out)
    engine.dispose()
    for uid, reason in summary.skipped:
        print(f"left out study {uid}: {reason}", file=sys.stderr)
    print(
        f"exported {summary.images} image(s), {summary.with_mask} SEG(s) to {out}",
        file=sys.stderr,
    )
    if not summary.images:
        print("no confirmed or corrected cases to learn from yet", file=sys.stderr)
        return None
    return summary


def cmd_feedback_export(args: argparse.Namespace) -> int:
    """``triage feedback-export``."""
    summary = _export_feedback(Path(args.data_dir), Path(args.out), args.database_url)
    return 0 if summary is not None else 2


def cmd_hash_password(args: argparse.Namespace) -> int:
    """``triage hash-password``."""
    import getpass

    from service.web.access import hash_password

    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            print("triage hash-password: the two passwords differ", file=sys.stderr)
            return 2
    else:
        first = sys.stdin.readline().rstrip("\n")
    print(hash_password(first))
    return 0


def cmd_worklist(args: argparse.Namespace) -> int:
    """``triage worklist``."""
    from service.db.engine import make_engine, make_sessionmaker, sqlite_url
    from service.worklist import format_worklist, worklist

    database = Path(args.data_dir) / "triage.db"
    if args.database_url is None and not database.is_file():
        print(
            f"no worklist at {database}: start `triage serve --data-dir {args.data_dir}` first",
            file=sys.stderr,
        )
        return 2
    engine = make_engine(args.database_url or sqlite_url(database))
    with make_sessionmaker(engine)() as session:
        rows = worklist(session, states=args.state)
    engine.dispose()
    print(json.dumps(rows, indent=2) if args.json else format_worklist(rows))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``triage demo``."""
    from service.demo import run_demo

    return run_demo(
        Path(args.out), shared_real=Path(args.shared_real), keep=args.keep, web_port=args.web_port
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``triage evaluate``."""
    from training.cli import run_evaluate

    return run_evaluate(args)


def cmd_info(args: argparse.Namespace) -> int:
    """``triage info``."""
    package = _load_package(args.model)
    print(json.dumps(package.manifest(), indent=2))
    return 0
