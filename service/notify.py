"""Webhook notifications: one JSON POST per positive study, per model version and URL.

A periodic task queues a notification row for each positive study whose priority reaches
the threshold (the unique row makes "once" hold across restarts and processes), and
another posts the due ones, retrying with backoff until ``max_attempts``. The message
carries UIDs and findings, never patient names, IDs or birth dates.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlparse

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import ExportState, Job, JobState, Notification, Study, StudyState, utcnow
from service.db.queue import RetryPolicy
from triage.postprocess import hemithorax_percent

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class WebhookSettings:
    """Where and when to notify.

    Raises
    ------
    ValueError
        If a URL is not http(s) or a number is out of range.
    """

    urls: tuple[str, ...] = ()
    min_priority: float = 50.0
    timeout: float = 5.0
    max_attempts: int = 6
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    page_url: str | None = None  # base of the web page, for a link in the message

    def __post_init__(self) -> None:
        for url in self.urls:
            if urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc:
                raise ValueError(f"webhook URL must be http(s)://host/..., got {url!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")


class Notifier:
    """Queues and posts webhook notifications (both safe to run from a scheduler)."""

    def __init__(self, sessions: sessionmaker[Session], settings: WebhookSettings) -> None:
        self.sessions = sessions
        self.settings = settings
        self._lock = threading.Lock()

    def queue_due(self) -> int:
        """Add a notification per URL for positive studies that have none yet."""
        if not self.settings.urls:
            return 0
        added = 0
        with self.sessions() as session:
            rows = session.execute(
                select(Study.id, Job.model_version)
                .join(Job, Job.study_id == Study.id)
                .where(
                    Study.state == StudyState.POSITIVE,
                    Study.priority >= self.settings.min_priority,
                    Job.state == JobState.DONE,
                )
            ).all()
            have = set(
                session.execute(
                    select(Notification.study_id, Notification.model_version, Notification.url)
                ).all()
            )
            for study_id, version in rows:
                for url in self.settings.urls:
                    if (study_id, version, url) in have:
                        continue
                    try:
                        with session.begin_nested():
                            session.add(
                                Notification(study_id=study_id, model_version=version, url=url)
                            )
                        added += 1
                    except IntegrityError:  # another process queued it first
                        pass
            session.commit()
        return added

    def send_due(self, now: datetime.datetime | None = None) -> dict[str, int]:
        """Post every notification that is pending or due for a retry."""
        with self._lock:
            now = now or utcnow()
            counts = {"sent": 0, "failed": 0, "dead": 0}
            with self.sessions() as session:
                due = session.scalars(
                    select(Notification)
                    .where(
                        Notification.state.in_((ExportState.PENDING, ExportState.FAILED)),
                        Notification.next_attempt_at <= now,
                    )
                    .order_by(Notification.id)
                ).all()
                for note in due:
                    study = session.get(Study, note.study_id)
                    assert study is not None
                    error = self._post(note.url, self.message(study, note.model_version))
                    counts[self._record(note, error, now, study)] += 1
                    session.commit()
            return counts

    def message(self, study: Study, model_version: str) -> dict[str, object]:
        """The JSON body: what a pager or chat bridge needs, and no patient identity."""
        body: dict[str, object] = {
            "event": "pneumothorax_positive",
            "study_instance_uid": study.study_instance_uid,
            "accession_number": study.accession_number,
            "priority": round(study.priority, 1),
            "probability": None if study.probability is None else round(study.probability, 4),
            "area_mm2": None if study.area_mm2 is None else round(study.area_mm2, 1),
            "hemithorax_percent": None
            if study.area_fraction is None
            else round(hemithorax_percent(study.area_fraction), 1),
            "laterality": study.laterality,
            "model_version": model_version,
        }
        if self.settings.page_url:
            body["url"] = f"{self.settings.page_url.rstrip('/')}/studies/{study.study_instance_uid}"
        return body

    def _post(self, url: str, body: dict[str, object]) -> str | None:
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "ptx-triage"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"

    def _record(
        self, note: Notification, error: str | None, now: datetime.datetime, study: Study
    ) -> str:
        outcome = self.settings.policy.record_attempt(note, error, now, self.settings.max_attempts)
        if outcome == "sent":
            log.info(
                "notified %s of positive study %s (priority %.1f)",
                note.url, study.study_instance_uid, study.priority,
            )  # fmt: skip
        else:
            log.warning(
                "webhook %s failed for study %s: %s", note.url, study.study_instance_uid, error
            )
        return outcome
