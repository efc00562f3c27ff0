"""ORM models: studies, instances, jobs, results, exports and audit events.

States are stored as the strings of their enums, so the database reads plainly. Every
change of schema goes through an Alembic migration in ``service/db/migrations``.
"""

from __future__ import annotations

import datetime
import enum
from typing import ClassVar

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

UID = String(64)


def utcnow() -> datetime.datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.datetime.now(datetime.UTC)


class StudyState(enum.StrEnum):
    """Where a study is on its way through the service."""

    RECEIVING = "receiving"
    QUEUED = "queued"
    PROCESSING = "processing"
    POSITIVE = "positive"
    NEGATIVE = "negative"
    NOT_ANALYSED = "not_analysed"
    FAILED = "failed"
    DEAD = "dead"


class JobState(enum.StrEnum):
    """Where a job is in the queue."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # will be retried
    DEAD = "dead"  # out of attempts


class FeedbackKind(enum.StrEnum):
    """What a reader said about a study's result."""

    AGREE = "agree"
    FALSE_POSITIVE = "false_positive"
    MISSED = "missed"
    WRONG_EXTENT = "wrong_extent"
    CORRECTED = "corrected"  # a corrected SEG arrived by C-STORE


class ExportState(enum.StrEnum):
    """Delivery of one SEG to one destination (and of one notification to one URL)."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"


class Base(DeclarativeBase):
    """Base of every model; timestamps are stored with their time zone."""

    type_annotation_map: ClassVar[dict] = {datetime.datetime: DateTime(timezone=True)}


class Study(Base):
    """One study as received, with its worklist state and priority."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    accession_number: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=StudyState.RECEIVING, index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    priority_set_by_human: Mapped[bool] = mapped_column(Boolean, default=False)
    probability: Mapped[float | None] = mapped_column(Float)
    area_mm2: Mapped[float | None] = mapped_column(Float)
    area_fraction: Mapped[float | None] = mapped_column(Float)  # of the image
    laterality: Mapped[str | None] = mapped_column(String(1))
    received_at: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    last_instance_at: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime.datetime | None]

    instances: Mapped[list[Instance]] = relationship(back_populates="study")
    jobs: Mapped[list[Job]] = relationship(back_populates="study")


class Instance(Base):
    """One stored DICOM file in the inbox."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    series_instance_uid: Mapped[str | None] = mapped_column(UID)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    calling_ae: Mapped[str | None] = mapped_column(String(16))
    association_id: Mapped[str | None] = mapped_column(String(36))
    received_at: Mapped[datetime.datetime] = mapped_column(default=utcnow)

    study: Mapped[Study] = relationship(back_populates="instances")


class Job(Base):
    """The analysis of one study by one model version, with its lease."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("study_id", "model_version", name="uq_job_study_model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    available_at: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime.datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(36))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime.datetime | None]  # the last claim
    finished_at: Mapped[datetime.datetime | None]

    study: Mapped[Study] = relationship(back_populates="jobs")
    results: Mapped[list[Result]] = relationship(back_populates="job")


class Result(Base):
    """What the cascade said about one image of a job's study."""

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    probability: Mapped[float | None] = mapped_column(Float)
    positive: Mapped[bool | None] = mapped_column(Boolean)
    area_mm2: Mapped[float | None] = mapped_column(Float)
    area_fraction: Mapped[float | None] = mapped_column(Float)
    laterality: Mapped[str | None] = mapped_column(String(1))
    priority: Mapped[float | None] = mapped_column(Float)
    seg_sop_instance_uid: Mapped[str | None] = mapped_column(UID)
    seg_path: Mapped[str | None] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="results")
    exports: Mapped[list[Export]] = relationship(back_populates="result")


class Export(Base):
    """Delivery of one SEG to one destination, retried with backoff."""

    __tablename__ = "exports"
    __table_args__ = (UniqueConstraint("result_id", "destination", name="uq_export_dest"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"))
    destination: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default=ExportState.PENDING, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime.datetime | None]

    result: Mapped[Result] = relationship(back_populates="exports")


class Association(Base):
    """One DICOM association that delivered images, and when it ended."""

    __tablename__ = "associations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    calling_ae: Mapped[str | None] = mapped_column(String(16))
    opened_at: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime.datetime | None]


class AuditEvent(Base):
    """Something that happened, for the record (never patient names or IDs)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime.datetime] = mapped_column(default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    study_instance_uid: Mapped[str | None] = mapped_column(UID)
    actor: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)


class Feedback(Base):
    """A reader's verdict on a study's result, or a corrected SEG sent back to us."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    reader: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(64))
    comment: Mapped[str | None] = mapped_column(Text)
    sop_instance_uid: Mapped[str | None] = mapped_column(UID)  # the image, for a SEG
    seg_path: Mapped[str | None] = mapped_column(Text)  # the corrected SEG as received
    at: Mapped[datetime.datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """One webhook message about one positive study, per model version and URL."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("study_id", "model_version", "url", name="uq_notification"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=ExportState.PENDING, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime.datetime | None]
