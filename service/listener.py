"""The DICOM listener: C-ECHO and C-STORE SCP that stores durably and answers honestly.

The C-STORE handler only validates, writes and records: the dataset is written to a
temporary name in its study folder, fsynced, renamed to ``<SOPInstanceUID>.dcm``, the
folder fsynced, the instance row committed, and only then is Success returned. Any
failure answers 0xA700 and leaves no file behind. Nothing slow (no decoding, no
inference) runs on the association thread.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from pydicom import Dataset
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Association, Instance, Result, Study, StudyState, utcnow
from service.feedback import feedback_folder, record_correction, referenced_images

log = logging.getLogger(__name__)

UID_PATTERN = re.compile(r"^[0-9.]{1,64}$")

#: Storage classes accepted by default (more can be configured).
STORAGE_CLASSES = (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    SegmentationStorage,  # corrected SEGs sent back by readers: feedback, not studies
)


class Status:
    """C-STORE statuses we answer with (PS3.4 Annex B)."""

    SUCCESS = 0x0000
    OUT_OF_RESOURCES = 0xA700
    DATA_SET_DOES_NOT_MATCH = 0xA900
    CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True, kw_only=True)
class ListenerSettings:
    """How the listener presents itself and whom it accepts.

    Raises
    ------
    ValueError
        If the AE title or port is invalid.
    """

    ae_title: str = "TRIAGE"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_calling_aets: tuple[str, ...] = ()  # "AET" or "AET@HOST"; empty: any
    maximum_associations: int = 10
    maximum_pdu_size: int = 0  # 0: unlimited
    acse_timeout: float = 30.0
    dimse_timeout: float = 30.0
    network_timeout: float = 60.0
    extra_storage_classes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def allowed_hosts(self) -> dict[str, set[str]]:
        """Calling AE title -> the hosts it may call from (empty set: any host)."""
        hosts: dict[str, set[str]] = {}
        for entry in self.allowed_calling_aets:
            aet, _, host = entry.partition("@")
            hosts.setdefault(aet.strip(), set())
            if host:
                hosts[aet.strip()].add(host.strip())
        return hosts

    def __post_init__(self) -> None:
        if not 0 < len(self.ae_title.strip()) <= 16:
            raise ValueError(f"ae_title must have 1 to 16 characters, got {self.ae_title!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, got {self.port}")


class AssociationLog:
    """Records when associations open and close, so studies can settle on release."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def opened(self, event: evt.Event) -> None:
        try:
            with self.sessions() as session:
                session.add(
                    Association(
                        id=_association_id(event.assoc),
                        calling_ae=str(event.assoc.requestor.ae_title).strip()[:16],
                    )
                )
                session.commit()
        except SQLAlchemyError:  # the study then settles by stable age alone
            log.exception("could not record an association")

    def closed(self, event: evt.Event) -> None:
        try:
            with self.sessions() as session:
                row = session.get(Association, _association_id(event.assoc))
                if row is not None and row.closed_at is None:
                    row.closed_at = utcnow()
                    session.commit()
        except SQLAlchemyError:
            log.exception("could not record the end of an association")


class StoreHandler:
    """The C-STORE handler: durable file, committed row, then Success."""

    def __init__(self, data_dir: Path, sessions: sessionmaker[Session]) -> None:
        self.data_dir = Path(data_dir)
        self.inbox = Path(data_dir) / "inbox"
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.sessions = sessions
        self._locks = [threading.Lock() for _ in range(64)]

    def __call__(self, event: evt.Event) -> int:
        try:
            return self._store(event)
        except Exception:  # the peer gets a status, never a traceback
            log.exception("C-STORE failed")
            return Status.OUT_OF_RESOURCES

    def _store(self, event: evt.Event) -> int:
        request = cast(C_STORE, event.request)
        sop_uid = str(request.AffectedSOPInstanceUID or "")
        dataset = event.dataset
        study_uid = str(dataset.get("StudyInstanceUID", ""))
        if not (UID_PATTERN.match(sop_uid) and UID_PATTERN.match(study_uid)):
            log.warning("refused C-STORE: malformed UIDs (SOP %r, study %r)", sop_uid, study_uid)
            return Status.CANNOT_UNDERSTAND
        if str(dataset.get("SOPInstanceUID", sop_uid)) != sop_uid:
            return Status.DATA_SET_DOES_NOT_MATCH
        if str(request.AffectedSOPClassUID) == SegmentationStorage:
            return self._store_seg(event, dataset, sop_uid)
        folder = self.inbox / study_uid
        target = folder / f"{sop_uid}.dcm"
        payload = event.encoded_dataset()
        # File and row of one SOP Instance UID are written by one association at a time;
        # different instances proceed in parallel.
        with self._locks[hash(sop_uid) % len(self._locks)]:
            created = _write_durably(folder, target, payload)  # False: already on disk
            try:
                self._record(event, dataset, study_uid, sop_uid, target, len(payload))
            except IntegrityError:  # the row exists: a repeat, already stored
                log.info("instance %s received again: already stored", sop_uid)
                return Status.SUCCESS
            except SQLAlchemyError:
                if created:
                    target.unlink(missing_ok=True)
                raise
        log.info("stored %s of study %s (%d bytes)", sop_uid, study_uid, len(payload))
        return Status.SUCCESS

    def _store_seg(self, event: evt.Event, dataset: Dataset, sop_uid: str) -> int:
        """A SEG of an image we hold is a reader's correction: keep it as feedback."""
        referenced = [uid for uid in referenced_images(dataset) if UID_PATTERN.match(uid)]
        with self.sessions() as session:
            if session.scalar(select(Result.id).where(Result.seg_sop_instance_uid == sop_uid)):
                log.info("SEG %s is one of ours coming back: acknowledged, not stored", sop_uid)
                return Status.SUCCESS
            row = session.execute(
                select(Instance.sop_instance_uid, Study.id, Study.study_instance_uid)
                .join(Study, Study.id == Instance.study_id)
                .where(Instance.sop_instance_uid.in_(referenced))
            ).first()
        if row is None:
            log.warning("refused SEG %s: it references no image we hold", sop_uid)
            return Status.CANNOT_UNDERSTAND
        folder = feedback_folder(self.data_dir, row.study_instance_uid) / "corrected"
        target = folder / f"{sop_uid}.dcm"
        with self._locks[hash(sop_uid) % len(self._locks)]:
            created = _write_durably(folder, target, event.encoded_dataset())
            try:
                with self.sessions() as session:
                    record_correction(
                        session,
                        study_id=row.id,
                        sop_instance_uid=row.sop_instance_uid,
                        seg_path=target,
                        reader=str(event.assoc.requestor.ae_title).strip(),
                    )
                    session.commit()
            except SQLAlchemyError:
                if created:
                    target.unlink(missing_ok=True)
                raise
        log.info("corrected SEG %s for image %s kept as feedback", sop_uid, row.sop_instance_uid)
        return Status.SUCCESS

    def _record(
        self,
        event: evt.Event,
        dataset: Dataset,
        study_uid: str,
        sop_uid: str,
        path: Path,
        size: int,
    ) -> None:
        now = utcnow()
        # Core statements in one short transaction: the ORM unit of work costs more than
        # the fsync on this path.
        with self.sessions() as session:
            row = session.execute(
                select(Study.id, Study.state).where(Study.study_instance_uid == study_uid)
            ).first()
            if row is None:
                accession = str(dataset.get("AccessionNumber", "") or "")[:16] or None
                study_id = session.execute(
                    insert(Study)
                    .values(
                        study_instance_uid=study_uid,
                        accession_number=accession,
                        received_at=now,
                        last_instance_at=now,
                    )
                    .returning(Study.id)
                ).scalar_one()
            else:
                study_id = row.id
                values: dict[str, object] = {"last_instance_at": now}
                if row.state not in (StudyState.RECEIVING, StudyState.QUEUED):
                    values["state"] = StudyState.RECEIVING  # new images after a result
                session.execute(update(Study).where(Study.id == study_id).values(**values))
            session.execute(
                insert(Instance).values(
                    study_id=study_id,
                    sop_instance_uid=sop_uid,
                    series_instance_uid=str(dataset.get("SeriesInstanceUID", "")) or None,
                    sop_class_uid=str(cast(C_STORE, event.request).AffectedSOPClassUID),
                    transfer_syntax_uid=str(event.context.transfer_syntax),
                    path=str(path),
                    size_bytes=size,
                    calling_ae=str(event.assoc.requestor.ae_title).strip()[:16],
                    association_id=_association_id(event.assoc),
                    received_at=now,
                )
            )
            session.commit()


def _association_id(assoc: object) -> str:
    """A stable id per association, kept on the association object."""
    key = "_triage_id"
    if not hasattr(assoc, key):
        setattr(assoc, key, str(uuid.uuid4()))
    return str(getattr(assoc, key))


def _write_durably(folder: Path, target: Path, payload: bytes) -> bool:
    """Write ``payload`` to ``target`` atomically; False when it already exists."""
    folder.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return False
    tmp = folder / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(folder)
    return True


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build_ae(settings: ListenerSettings) -> AE:
    """An application entity configured from ``settings``."""
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_associations = settings.maximum_associations
    ae.maximum_pdu_size = settings.maximum_pdu_size
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    if settings.allowed_calling_aets:
        ae.require_calling_aet = list(settings.allowed_hosts)
    ae.add_supported_context(Verification)
    for sop_class in (*STORAGE_CLASSES, *settings.extra_storage_classes):
        ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
    return ae


class Listener:
    """A running listener; ``start`` returns once the port accepts associations."""

    def __init__(self, settings: ListenerSettings, data_dir: Path, sessions: sessionmaker[Session]):
        self.settings = settings
        self.handler = StoreHandler(data_dir, sessions)
        self.associations = AssociationLog(sessions)
        self.ae = build_ae(settings)
        self._server: ThreadedAssociationServer | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when the settings asked for port 0)."""
        if self._server is None:
            raise RuntimeError("listener is not running")
        return int(self._server.server_address[1])

    def start(self) -> Listener:
        """Start serving in background threads."""
        handlers: Sequence = [
            (evt.EVT_C_STORE, self.handler),
            (evt.EVT_C_ECHO, lambda event: Status.SUCCESS),
            (evt.EVT_ESTABLISHED, self._check_host),
            (evt.EVT_ESTABLISHED, self.associations.opened),
            (evt.EVT_RELEASED, self.associations.closed),
            (evt.EVT_ABORTED, self.associations.closed),
            (evt.EVT_CONN_CLOSE, self.associations.closed),
        ]
        self._server = self.ae.start_server(
            (self.settings.host, self.settings.port), block=False, evt_handlers=list(handlers)
        )
        log.info("listening as %s on %s:%d", self.settings.ae_title, self.settings.host, self.port)
        return self

    def _check_host(self, event: evt.Event) -> None:
        """Abort an association whose calling AE title is tied to other hosts.

        pynetdicom rejects by AE title only; an address check can run once the association
        is established, before any C-STORE, so the association is aborted there.
        """
        calling = str(event.assoc.requestor.ae_title).strip()
        hosts = self.settings.allowed_hosts.get(calling)
        address = str(event.assoc.requestor.address)
        if hosts and address not in hosts:
            log.warning("aborted association from %s at %s: not an allowed host", calling, address)
            event.assoc.abort()

    def stop(self) -> None:
        """Stop accepting and close the server."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
