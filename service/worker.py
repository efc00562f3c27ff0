"""The worker: claim a study's job, run its images through the cascade, record the result.

Results, worklist state, priority, SEG files and export rows are written in the same
transaction that completes the job with its claim token, so a worker that lost its lease
changes nothing. A failure is recorded on the job (retried with backoff, then ``dead``)
and on the study.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db import queue
from service.db.models import (
    AuditEvent,
    Export,
    Instance,
    JobState,
    Result,
    Study,
    StudyState,
    utcnow,
)
from service.images import Loaded, load_image
from triage.cascade import Cascade
from triage.cascade import Result as Finding
from triage.dicom.seg import Algorithm, build_segmentation, seg_uids, write_segmentation

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ImageOutcome:
    """One instance of a study after analysis (or after being passed over)."""

    sop_instance_uid: str
    status: str  # analysed, skipped, error
    reason: str | None = None
    finding: Finding | None = None  # when analysed
    seg_sop_instance_uid: str | None = None
    seg_path: str | None = None


class Worker:
    """Process queued studies with one loaded cascade.

    Parameters
    ----------
    sessions
        Session factory of the service database.
    cascade
        The loaded model package (networks load once, here).
    data_dir
        The data folder; SEGs go to ``<data_dir>/outbox/<StudyInstanceUID>/``.
    destinations
        ``AET@HOST:PORT`` strings; one export per SEG and destination.
    owner
        Name written as lease owner (host and process id by default).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        cascade: Cascade,
        data_dir: Path,
        *,
        destinations: Sequence[str] = (),
        owner: str = "worker",
        lease_seconds: float = 300.0,
        policy: queue.RetryPolicy | None = None,
    ) -> None:
        self.sessions = sessions
        self.cascade = cascade
        self.outbox = Path(data_dir) / "outbox"
        self.destinations = tuple(destinations)
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.policy = policy or queue.RetryPolicy()
        self.algorithm = Algorithm.from_package(cascade.package)

    @property
    def model_version(self) -> str:
        """The version jobs are queued under: the package's name and version."""
        return f"{self.algorithm.name}:{self.algorithm.version}"

    def run_once(self) -> bool:
        """Claim and process one job; False when the queue had none."""
        with self.sessions() as session:
            job = queue.claim(session, owner=self.owner, lease_seconds=self.lease_seconds)
        if job is None:
            return False
        started = time.perf_counter()
        try:
            self._process(job)
        except Exception as exc:  # the job records the failure; the worker goes on
            log.exception("job %d failed", job.id)
            self._fail(job, f"{type(exc).__name__}: {exc}")
        else:
            log.info("job %d done in %.2f s", job.id, time.perf_counter() - started)
        return True

    def _process(self, job: queue.ClaimedJob) -> None:
        with self.sessions() as session:
            study = session.get(Study, job.study_id)
            if study is None:
                raise LookupError(f"study {job.study_id} of job {job.id} is gone")
            study_uid = study.study_instance_uid
            study.state = StudyState.PROCESSING
            session.commit()
            instances = session.scalars(
                select(Instance).where(Instance.study_id == job.study_id).order_by(Instance.id)
            ).all()
        outcomes = self.analyse([(i.sop_instance_uid, Path(i.path)) for i in instances], study_uid)
        with self.sessions() as session:
            if not queue.complete(session, job):
                log.warning("job %d: lease lost, result discarded", job.id)
                session.rollback()
                return
            self._record(session, job, outcomes)
            session.commit()

    def analyse(self, files: Sequence[tuple[str, Path]], study_uid: str) -> list[ImageOutcome]:
        """Read, select and analyse a study's files; write a SEG per positive image."""
        outcomes: dict[str, ImageOutcome] = {}
        ready = []
        for sop_uid, path in files:
            loaded = load_image(path)
            if isinstance(loaded, Loaded):
                ready.append((sop_uid, loaded.dataset, loaded.radiograph))
            else:
                outcomes[sop_uid] = ImageOutcome(
                    sop_instance_uid=sop_uid, status=loaded.status, reason=loaded.reason
                )
        results = self.cascade.run([radiograph for _, _, radiograph in ready])
        folder = self.outbox / study_uid
        for (sop_uid, ds, _), result in zip(ready, results, strict=True):
            seg_uid = seg_path = None
            if result.positive and result.mask is not None:
                folder.mkdir(parents=True, exist_ok=True)
                seg_uid = seg_uids(sop_uid, self.algorithm)[1]
                seg_path = str(
                    write_segmentation(
                        build_segmentation(ds, result.mask, self.algorithm),
                        folder / f"{seg_uid}.dcm",
                    )
                )
            outcomes[sop_uid] = ImageOutcome(
                sop_instance_uid=sop_uid,
                status="analysed",
                finding=result,
                seg_sop_instance_uid=seg_uid,
                seg_path=seg_path,
            )
        return [outcomes[sop_uid] for sop_uid, _ in files]

    def _record(
        self, session: Session, job: queue.ClaimedJob, outcomes: list[ImageOutcome]
    ) -> None:
        study = session.get(Study, job.study_id)
        assert study is not None
        analysed = [o for o in outcomes if o.status == "analysed"]
        for outcome in outcomes:
            f = outcome.finding
            row = Result(
                job_id=job.id,
                sop_instance_uid=outcome.sop_instance_uid,
                status=outcome.status,
                reason=outcome.reason,
                probability=None if f is None else f.probability,
                positive=None if f is None else f.positive,
                area_mm2=None if f is None else f.area_mm2,
                area_fraction=None if f is None else f.area_fraction,
                laterality=None if f is None else f.laterality,
                priority=None if f is None else f.priority,
                seg_sop_instance_uid=outcome.seg_sop_instance_uid,
                seg_path=outcome.seg_path,
            )
            session.add(row)
            if outcome.seg_path:
                session.flush()
                session.add_all(Export(result_id=row.id, destination=d) for d in self.destinations)
        session.add(
            AuditEvent(
                kind="analysed",
                study_instance_uid=study.study_instance_uid,
                actor=self.owner,
                detail=f"{len(analysed)} of {len(outcomes)} images analysed, {self.model_version}",
            )
        )
        arrived_meanwhile = study.state == StudyState.RECEIVING  # a new image mid-job
        _update_study(study, outcomes, analysed)
        if arrived_meanwhile:
            study.state = StudyState.RECEIVING  # settles again and is analysed with it

    def _fail(self, job: queue.ClaimedJob, error: str) -> None:
        with self.sessions() as session:
            state = queue.fail(session, job, error, self.policy)
            study = session.get(Study, job.study_id)
            if state is not None and study is not None:
                study.state = StudyState.DEAD if state == JobState.DEAD else StudyState.FAILED
                study.reason = error[:2000]
                session.add(
                    AuditEvent(
                        kind=f"job {state}",
                        actor=self.owner,
                        study_instance_uid=study.study_instance_uid,
                        detail=error[:2000],
                    )
                )
            session.commit()


def _update_study(study: Study, outcomes: list[ImageOutcome], analysed: list[ImageOutcome]) -> None:
    """Worklist state, reason, figures and priority of a finished study."""
    study.finished_at = utcnow()
    results = [o.finding for o in analysed if o.finding is not None]
    positives = [r for r in results if r.positive]
    if positives:
        best = max(positives, key=lambda r: r.priority)
        study.state, study.reason = StudyState.POSITIVE, None
        study.probability, study.area_mm2 = best.probability, best.area_mm2
        study.area_fraction = best.area_fraction
        study.laterality = best.laterality
        new_priority = best.priority
    elif results:
        study.state, study.reason = StudyState.NEGATIVE, None
        study.probability = max(r.probability for r in results)
        study.area_mm2 = study.area_fraction = study.laterality = None
        new_priority = 0.0
    else:
        reasons = sorted({o.reason for o in outcomes if o.reason}) or ["no images"]
        study.state = StudyState.NOT_ANALYSED
        study.reason = "no frontal chest radiograph: " + "; ".join(reasons)
        new_priority = 0.0
    # Automatic processing never lowers a priority; a human may.
    if not study.priority_set_by_human:
        study.priority = max(study.priority or 0.0, new_priority)
