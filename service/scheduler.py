"""Periodic work: settle studies into jobs, expire leases.

Each task is a plain function over a session, so it can be tested alone; the APScheduler
wiring that runs them on intervals comes with ``triage serve``.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
from pathlib import Path

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from service.db import queue
from service.db.models import (
    Association,
    Export,
    ExportState,
    Feedback,
    Instance,
    Job,
    Result,
    Study,
    StudyState,
    utcnow,
)
from service.feedback import keep_study_files

log = logging.getLogger(__name__)

FINISHED = (StudyState.POSITIVE, StudyState.NEGATIVE, StudyState.NOT_ANALYSED, StudyState.DEAD)


def settle_studies(
    session: Session,
    *,
    model_version: str,
    stable_age: float,
    release_grace: float = 1.0,
    now: datetime.datetime | None = None,
    max_attempts: int = 3,
) -> list[str]:
    """Turn each study that received nothing for ``stable_age`` seconds into a job.

    A study settles sooner, ``release_grace`` seconds after the associations that
    delivered it were all released: most chest studies arrive in one association, and a
    positive should not wait out the whole quiet period.

    Returns the Study Instance UIDs that were queued. The caller commits.
    """
    now = now or utcnow()
    cutoff = now - datetime.timedelta(seconds=stable_age)
    grace_cutoff = now - datetime.timedelta(seconds=release_grace)
    delivered_by = (
        select(Instance.id)
        .join(Association, Instance.association_id == Association.id)
        .where(Instance.study_id == Study.id)
    )
    still_open = delivered_by.where(
        or_(Association.closed_at.is_(None), Association.closed_at > grace_cutoff)
    )
    released = and_(
        Study.last_instance_at <= grace_cutoff, exists(delivered_by), ~exists(still_open)
    )
    settled = session.scalars(
        select(Study).where(
            Study.state == StudyState.RECEIVING,
            or_(Study.last_instance_at <= cutoff, released),
        )
    ).all()
    for study in settled:
        created = queue.enqueue(
            session, study_id=study.id, model_version=model_version, max_attempts=max_attempts
        )
        if not created:
            queue.requeue(session, study_id=study.id, model_version=model_version)
        study.state = StudyState.QUEUED
        study.reason = None
        log.info("study %s settled: queued for %s", study.study_instance_uid, model_version)
    return [s.study_instance_uid for s in settled]


def purge_finished(
    session: Session, *, data_dir: Path, retention: float, now: datetime.datetime | None = None
) -> int:
    """Delete inbox and outbox files of studies finished more than ``retention`` seconds ago.

    A study qualifies once it is positive, negative, not analysed or dead and none of its
    exports is still pending or being retried. The files of a study with reader feedback are
    first copied to its feedback folder (training data). Rows stay (the worklist keeps its
    history); returns the number of studies whose files were removed.
    """
    now = now or utcnow()
    cutoff = now - datetime.timedelta(seconds=retention)
    waiting = (
        select(Export.id)
        .join(Result, Export.result_id == Result.id)
        .join(Job, Result.job_id == Job.id)
        .where(
            Job.study_id == Study.id, Export.state.in_((ExportState.PENDING, ExportState.FAILED))
        )
    )
    done = session.scalars(
        select(Study.study_instance_uid).where(
            Study.state.in_(FINISHED), Study.finished_at <= cutoff, ~exists(waiting)
        )
    ).all()
    labelled = set(
        session.scalars(
            select(Study.study_instance_uid).where(Study.id.in_(select(Feedback.study_id)))
        )
    )
    purged = 0
    for uid in done:
        if uid in labelled:  # training data: keep its files before the inbox goes
            study = session.scalars(select(Study).where(Study.study_instance_uid == uid)).one()
            keep_study_files(session, data_dir, study)
        folders = [f for f in (data_dir / "inbox" / uid, data_dir / "outbox" / uid) if f.is_dir()]
        for folder in folders:
            shutil.rmtree(folder)
        purged += bool(folders)
    if purged:
        log.info("retention: removed the files of %d finished studies", purged)
    return purged


def write_heartbeat(data_dir: Path, now: datetime.datetime | None = None) -> Path:
    """Write ``<data_dir>/heartbeat`` with the current time, for liveness probes."""
    path = data_dir / "heartbeat"
    tmp = path.with_name(".heartbeat.tmp")
    tmp.write_text((now or utcnow()).isoformat(timespec="seconds") + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
