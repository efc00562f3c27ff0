"""Export: C-STORE each SEG to every destination, retried with backoff.

Each export row is one SEG for one destination with its state (pending, sent, failed,
dead), attempts and last error. SEG UIDs are deterministic, so a SEG sent twice (a retry
after a lost acknowledgement) is one object at the PACS.
"""

from __future__ import annotations

import datetime
import logging
import re
import threading
from collections import defaultdict
from dataclasses import dataclass

import pydicom
from pynetdicom import AE
from pynetdicom.association import Association
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Export, ExportState, Result, utcnow
from service.db.queue import RetryPolicy

log = logging.getLogger(__name__)

DESTINATION = re.compile(r"^(?P<aet>[^@]{1,16})@(?P<host>[^:]+):(?P<port>\d{1,5})$")
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclass(frozen=True, kw_only=True)
class Destination:
    """A C-STORE SCP we deliver to, written ``AET@HOST:PORT``.

    Raises
    ------
    ValueError
        If the text is not of that form.
    """

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """Read ``AET@HOST:PORT``."""
        match = DESTINATION.match(text.strip())
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ValueError(f"destination must look like AET@HOST:PORT, got {text!r}")
        return cls(ae_title=match["aet"], host=match["host"], port=int(match["port"]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class SendReport:
    """What one round of sending did."""

    sent: int = 0
    failed: int = 0
    dead: int = 0


class Sender:
    """Deliver due exports; one association per destination and round."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        calling_ae: str = "TRIAGE",
        policy: RetryPolicy | None = None,
        max_attempts: int = 8,
        timeout: float = 30.0,
    ) -> None:
        self.sessions = sessions
        self.calling_ae = calling_ae
        self.policy = policy or RetryPolicy(base_seconds=5, factor=3, cap_seconds=900)
        self.max_attempts = max_attempts
        self.timeout = timeout
        self._lock = threading.Lock()  # one round at a time in this process

    def send_due(self, now: datetime.datetime | None = None) -> SendReport:
        """Send every export that is pending or due for a retry."""
        with self._lock:
            return self._send_due(now or utcnow())

    def _send_due(self, now: datetime.datetime) -> SendReport:
        with self.sessions() as session:
            due = session.execute(
                select(Export.id, Export.destination, Result.seg_path)
                .join(Result, Export.result_id == Result.id)
                .where(
                    Export.state.in_((ExportState.PENDING, ExportState.FAILED)),
                    Export.next_attempt_at <= now,
                )
                .order_by(Export.id)
            ).all()
        by_destination: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for export_id, destination, seg_path in due:
            by_destination[destination].append((export_id, seg_path or ""))
        counts = {"sent": 0, "failed": 0, "dead": 0}
        for destination, items in by_destination.items():
            outcomes = self._deliver(destination, items)
            with self.sessions() as session:
                for export_id, error in outcomes.items():
                    counts[self._record(session, export_id, error, now)] += 1
                session.commit()
        return SendReport(**counts)

    def _deliver(self, destination: str, items: list[tuple[int, str]]) -> dict[int, str | None]:
        """C-STORE each SEG; maps export id to None (sent) or the error."""
        try:
            target = Destination.parse(destination)
        except ValueError as exc:
            return {export_id: str(exc) for export_id, _ in items}
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.add_requested_context(SEG_STORAGE)
        assoc = ae.associate(target.host, target.port, ae_title=target.ae_title)
        if not assoc.is_established:
            error = f"no association with {target}"
            log.warning("export: %s", error)
            return {export_id: error for export_id, _ in items}
        outcomes: dict[int, str | None] = {}
        try:
            for export_id, seg_path in items:
                outcomes[export_id] = self._store(assoc, seg_path)
        finally:
            if assoc.is_established:
                assoc.release()
        for export_id, _ in items:  # aborted mid-way: the rest failed
            outcomes.setdefault(export_id, f"association with {target} ended early")
        return outcomes

    @staticmethod
    def _store(assoc: Association, seg_path: str) -> str | None:
        try:
            status = assoc.send_c_store(pydicom.dcmread(seg_path))
        except (OSError, ValueError, RuntimeError) as exc:
            return f"{type(exc).__name__}: {exc}"
        code = getattr(status, "Status", None)
        if code is None:
            return "no response to C-STORE (timeout or abort)"
        return None if int(code) in (0x0000, 0xB000, 0xB007, 0xB006) else f"status 0x{code:04X}"

    def _record(
        self, session: Session, export_id: int, error: str | None, now: datetime.datetime
    ) -> str:
        export = session.get(Export, export_id)
        assert export is not None
        return self.policy.record_attempt(export, error, now, self.max_attempts)
