"""``triage serve``: listener, scheduler, worker and sender in one process.

The listener stores and acknowledges; APScheduler settles studies into jobs, expires
leases and sends due exports; worker threads claim jobs and run the cascade. ``stop``
lets a worker finish its current job before the process exits.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler

from service.db import queue
from service.db.engine import make_engine, make_sessionmaker, sqlite_url
from service.db.migrate import upgrade
from service.listener import Listener, ListenerSettings
from service.notify import Notifier, WebhookSettings
from service.scheduler import purge_finished, settle_studies, write_heartbeat
from service.sender import Destination, Sender
from service.web.access import Access
from service.web.server import WebServer
from service.worker import Worker
from triage.cascade import Cascade
from triage.models.package import default_package_path, load_package

log = logging.getLogger(__name__)
# A periodic task still running when its next turn comes is skipped by design
# (max_instances=1); APScheduler would log each skip as a warning.
logging.getLogger("apscheduler.executors.default").setLevel(logging.ERROR)


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """Everything ``triage serve`` needs.

    Raises
    ------
    ValueError
        If a destination is malformed or a number is out of range.
    """

    data_dir: Path
    listener: ListenerSettings = field(default_factory=ListenerSettings)
    destinations: tuple[str, ...] = ()
    stable_age: float = 5.0
    model: Path | None = None
    device: str = "auto"
    batch_size: int = 16
    workers: int = 1
    lease_seconds: float = 300.0
    database_url: str | None = None
    listen: bool = True  # run the listener and the periodic tasks (``triage listen``)
    retention_days: float = 7.0
    access: Access | None = None  # the web page's; None: no web page
    web_port: int = 8080
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

    def __post_init__(self) -> None:
        for destination in self.destinations:
            Destination.parse(destination)
        if self.stable_age < 0:
            raise ValueError(f"stable_age must be >= 0 seconds, got {self.stable_age}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")

    @property
    def url(self) -> str:
        """The database URL: the given one, else SQLite in the data folder."""
        return self.database_url or sqlite_url(self.data_dir / "triage.db")


class Service:
    """The running service; ``start`` returns once the listener accepts associations."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(settings.url)
        upgrade(self.engine)
        self.sessions = make_sessionmaker(self.engine)
        self.listener = Listener(settings.listener, settings.data_dir, self.sessions)
        self.sender = Sender(self.sessions, calling_ae=settings.listener.ae_title)
        self.notifier = Notifier(self.sessions, settings.webhooks)
        self.web: WebServer | None = None
        if settings.listen and settings.access is not None:
            self.web = WebServer(
                sessions=self.sessions,
                data_dir=settings.data_dir,
                access=settings.access,
                port=settings.web_port,
            )
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.workers: list[Worker] = []
        if settings.workers:
            package = load_package(settings.model or default_package_path())
            cascade = Cascade(package, device=settings.device, batch_size=settings.batch_size)
            for index in range(settings.workers):
                self.workers.append(
                    Worker(
                        self.sessions,
                        cascade,
                        settings.data_dir,
                        destinations=settings.destinations,
                        owner=f"{socket.gethostname()}:{os.getpid()}:{index}",
                        lease_seconds=settings.lease_seconds,
                    )
                )

    @property
    def model_version(self) -> str:
        """The model version studies are queued for."""
        if self.workers:
            return self.workers[0].model_version
        package = load_package(self.settings.model or default_package_path())
        return f"{package.name}:{package.version}"

    def start(self) -> Service:
        """Start listener and periodic tasks (unless ``listen`` is off) and worker threads."""
        if self.settings.listen:
            write_heartbeat(self.settings.data_dir)
            self._start_listening()
        for worker in self.workers:
            thread = threading.Thread(
                target=self._work, args=(worker,), daemon=True, name=f"worker-{worker.owner}"
            )
            thread.start()
            self._threads.append(thread)
        return self

    def _start_listening(self) -> None:
        version = self.model_version
        self.listener.start()
        tasks = (
            (lambda: self._settle(version), 0.25),
            (self._expire, 10.0),
            (self.sender.send_due, 1.0),
            (self._purge, 3600.0),
            (lambda: write_heartbeat(self.settings.data_dir), 10.0),
            (self._notify, 1.0),
        )
        for task, seconds in tasks:
            self.scheduler.add_job(
                task, "interval", seconds=seconds, max_instances=1, coalesce=True
            )
        self.scheduler.start()
        if self.web is not None:
            self.web.start()

    def _notify(self) -> None:
        if self.settings.webhooks.urls:
            self.notifier.queue_due()
            self.notifier.send_due()

    def _settle(self, model_version: str) -> None:
        with self.sessions() as session:
            settle_studies(
                session, model_version=model_version, stable_age=self.settings.stable_age
            )
            session.commit()

    def _purge(self) -> None:
        with self.sessions() as session:
            purge_finished(
                session,
                data_dir=self.settings.data_dir,
                retention=self.settings.retention_days * 86400,
            )

    def _expire(self) -> None:
        with self.sessions() as session:
            if expired := queue.expire_leases(session):
                log.warning("%d job lease(s) expired: queued again", expired)
            session.commit()

    def _work(self, worker: Worker) -> None:
        while not self._stop.is_set():
            if worker.run_once():
                self.sender.send_due()  # deliver now; the periodic round handles retries
            else:
                self._stop.wait(0.2)

    def stop(self) -> None:
        """Stop taking work, let running jobs finish, close everything."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.settings.lease_seconds)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self.settings.listen:
            self.listener.stop()
        if self.web is not None:
            self.web.stop()
        self.engine.dispose()

    def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""
        done = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: done.set())
        self.start()
        log.info("serving; stop with Ctrl-C or SIGTERM")
        done.wait()
        log.info("stopping: finishing the current job")
        self.stop()
