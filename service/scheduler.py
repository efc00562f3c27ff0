"""Periodic work: settle studies into jobs, expire leases.

Each task is a plain function over a session, so it can be tested alone; the APScheduler
wiring that runs them on intervals comes with ``triage serve``.
"""

from __future__ import annotations

import datetime
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db import queue
from service.db.models import Study, StudyState, utcnow

log = logging.getLogger(__name__)


def settle_studies(
    session: Session,
    *,
    model_version: str,
    stable_age: float,
    now: datetime.datetime | None = None,
    max_attempts: int = 3,
) -> list[str]:
    """Turn each study that received nothing for ``stable_age`` seconds into a job.

    Returns the Study Instance UIDs that were queued. The caller commits.
    """
    now = now or utcnow()
    cutoff = now - datetime.timedelta(seconds=stable_age)
    settled = session.scalars(
        select(Study).where(Study.state == StudyState.RECEIVING, Study.last_instance_at <= cutoff)
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
