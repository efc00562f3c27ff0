"""The job queue: enqueue, claim with a lease, complete, fail, release, expire.

Claiming is one atomic ``UPDATE … RETURNING`` that sets the lease owner, the lease expiry
and a fresh claim token; on SQLite it runs inside ``BEGIN IMMEDIATE`` (see
:mod:`service.db.engine`), on PostgreSQL its candidate row is picked with
``FOR UPDATE SKIP LOCKED``. Every later change to a claimed job names the token, so a
worker that lost its lease changes nothing.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import cast

from sqlalchemy import CursorResult, case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

from service.db.models import Export, ExportState, Job, JobState, Notification, utcnow

CLAIMABLE = (JobState.QUEUED, JobState.FAILED)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """When a failed job runs again: exponential backoff, capped.

    Raises
    ------
    ValueError
        If a value is out of range.
    """

    base_seconds: float = 5.0
    factor: float = 4.0
    cap_seconds: float = 600.0

    def __post_init__(self) -> None:
        if self.base_seconds < 0 or self.factor < 1 or self.cap_seconds < 0:
            raise ValueError("base_seconds and cap_seconds must be >= 0 and factor >= 1")

    def delay(self, attempts: int) -> datetime.timedelta:
        """Wait before the next attempt, after ``attempts`` attempts have failed."""
        seconds = min(self.cap_seconds, self.base_seconds * self.factor ** max(attempts - 1, 0))
        return datetime.timedelta(seconds=seconds)

    def record_attempt(
        self,
        item: Export | Notification,
        error: str | None,
        now: datetime.datetime,
        max_attempts: int,
    ) -> str:
        """Count a delivery attempt on ``item``: ``sent``, ``failed`` (retry later) or ``dead``."""
        item.attempts += 1
        if error is None:
            item.state, item.sent_at, item.last_error = ExportState.SENT, now, None
            return "sent"
        item.last_error = error
        if item.attempts >= max_attempts:
            item.state = ExportState.DEAD
            return "dead"
        item.state = ExportState.FAILED
        item.next_attempt_at = now + self.delay(item.attempts)
        return "failed"


@dataclass(frozen=True, kw_only=True)
class ClaimedJob:
    """A job this worker holds until ``lease_expires_at``."""

    id: int
    study_id: int
    model_version: str
    attempts: int
    claim_token: str
    lease_expires_at: datetime.datetime


def _rowcount(session: Session, statement: Executable) -> int:
    result = cast(CursorResult, session.execute(statement))
    return int(result.rowcount)


def enqueue(session: Session, *, study_id: int, model_version: str, max_attempts: int = 3) -> bool:
    """Queue the analysis of a study by a model version; False if it already exists."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Job)
        .values(
            study_id=study_id,
            model_version=model_version,
            state=JobState.QUEUED,
            attempts=0,
            max_attempts=max_attempts,
            available_at=utcnow(),
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["study_id", "model_version"])
        .returning(Job.id)
    )
    # RETURNING, not rowcount: an ORM insert on PostgreSQL reports rowcount -1.
    return session.execute(statement).first() is not None


def claim(
    session: Session, *, owner: str, lease_seconds: float, now: datetime.datetime | None = None
) -> ClaimedJob | None:
    """Claim the oldest available job for ``owner``; None when the queue is empty.

    Commits its own transaction, so the claim is durable when this returns.
    """
    now = now or utcnow()
    candidate = (
        select(Job.id)
        .where(Job.state.in_(CLAIMABLE), Job.available_at <= now)
        .order_by(Job.available_at, Job.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        candidate = candidate.with_for_update(skip_locked=True)
    token = str(uuid.uuid4())
    expires = now + datetime.timedelta(seconds=lease_seconds)
    statement = (
        update(Job)
        .where(Job.id == candidate.scalar_subquery())
        .values(
            state=JobState.RUNNING,
            lease_owner=owner,
            lease_expires_at=expires,
            claim_token=token,
            attempts=Job.attempts + 1,
            started_at=now,
        )
        .returning(Job.id, Job.study_id, Job.model_version, Job.attempts)
        .execution_options(synchronize_session=False)
    )
    row = session.execute(statement).one_or_none()
    session.commit()
    if row is None:
        return None
    return ClaimedJob(
        id=row.id,
        study_id=row.study_id,
        model_version=row.model_version,
        attempts=row.attempts,
        claim_token=token,
        lease_expires_at=expires,
    )


def _held(job: ClaimedJob) -> tuple:
    return (Job.id == job.id, Job.claim_token == job.claim_token, Job.state == JobState.RUNNING)


def complete(session: Session, job: ClaimedJob) -> bool:
    """Mark a claimed job done; False (and nothing changed) if the lease was lost."""
    statement = (
        update(Job)
        .where(*_held(job))
        .values(
            state=JobState.DONE,
            finished_at=utcnow(),
            lease_owner=None,
            lease_expires_at=None,
            claim_token=None,
            last_error=None,
        )
    ).execution_options(synchronize_session=False)
    return _rowcount(session, statement) == 1


def fail(session: Session, job: ClaimedJob, error: str, policy: RetryPolicy) -> JobState | None:
    """Record a failure: retried after the policy's backoff, or ``dead`` once the job has
    used its ``max_attempts``.

    Returns the new state, or None if the lease was lost (nothing changed).
    """
    now = utcnow()
    out_of_attempts = Job.attempts >= Job.max_attempts
    statement = (
        update(Job)
        .where(*_held(job))
        .values(
            state=case((out_of_attempts, JobState.DEAD), else_=JobState.FAILED),
            finished_at=case((out_of_attempts, now), else_=None),
            last_error=error[:4000],
            lease_owner=None,
            lease_expires_at=None,
            claim_token=None,
            available_at=now + policy.delay(job.attempts),
        )
        .returning(Job.state)
    ).execution_options(synchronize_session=False)
    row = session.execute(statement).one_or_none()
    return None if row is None else JobState(row.state)


def release(session: Session, job: ClaimedJob) -> bool:
    """Give a claimed job back untouched (on shutdown): the attempt does not count."""
    statement = (
        update(Job)
        .where(*_held(job))
        .values(
            state=JobState.QUEUED,
            lease_owner=None,
            lease_expires_at=None,
            claim_token=None,
            attempts=Job.attempts - 1,
        )
    ).execution_options(synchronize_session=False)
    return _rowcount(session, statement) == 1


def expire_leases(session: Session, *, now: datetime.datetime | None = None) -> int:
    """Return jobs whose lease ran out to the queue (or to ``dead`` if out of attempts)."""
    now = now or utcnow()
    statement = (
        update(Job)
        .where(Job.state == JobState.RUNNING, Job.lease_expires_at < now)
        .values(
            state=case((Job.attempts >= Job.max_attempts, JobState.DEAD), else_=JobState.FAILED),
            last_error="lease expired: the worker stopped or lost contact",
            lease_owner=None,
            lease_expires_at=None,
            claim_token=None,
            available_at=now,
        )
    ).execution_options(synchronize_session=False)
    return _rowcount(session, statement)


def requeue(session: Session, *, study_id: int, model_version: str) -> bool:
    """Queue a finished job again (new images arrived); False if none was finished."""
    statement = (
        update(Job)
        .where(
            Job.study_id == study_id,
            Job.model_version == model_version,
            Job.state.in_((JobState.DONE, JobState.DEAD, JobState.FAILED)),
        )
        .values(
            state=JobState.QUEUED,
            attempts=0,
            available_at=utcnow(),
            last_error=None,
            finished_at=None,
        )
    ).execution_options(synchronize_session=False)
    return _rowcount(session, statement) == 1
