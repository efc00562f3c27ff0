"""Periodic work: settle studies into jobs, expire leases.

Each task is a plain function over a session, so it can be tested alone; the APScheduler
wiring that runs them on intervals comes with ``triage serve``.
"""

from __future__ import annotations

import datetime
import logging

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from service.db import queue
from service.db.models import Association, Instance, Study, StudyState, utcnow

log = logging.getLogger(__name__)


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
