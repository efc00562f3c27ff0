"""Webhook notifications against a real HTTP server on loopback."""

from __future__ import annotations

import datetime
import socket

from sqlalchemy import select

from service.db.models import ExportState, Job, JobState, Notification, Study, StudyState, utcnow
from service.db.queue import RetryPolicy
from service.demo import WebhookStandIn
from service.metrics import render_metrics
from service.notify import Notifier, WebhookSettings


def add_study(session, uid: str, *, state: str, priority: float) -> None:
    study = Study(
        study_instance_uid=uid,
        state=state,
        priority=priority,
        probability=0.9,
        area_mm2=1234.0,
        area_fraction=0.05,
        laterality="R",
        accession_number="A1",
    )
    session.add(study)
    session.flush()
    session.add(
        Job(study_id=study.id, model_version="m:1", state=JobState.DONE, finished_at=utcnow())
    )


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


def test_one_message_per_positive_study_and_url(sessions):
    hook = WebhookStandIn()
    try:
        with sessions() as session:
            add_study(session, "1.1", state=StudyState.POSITIVE, priority=80.0)
            add_study(session, "1.2", state=StudyState.POSITIVE, priority=40.0)  # below the bar
            add_study(session, "1.3", state=StudyState.NEGATIVE, priority=0.0)
            session.commit()
        notifier = Notifier(sessions, WebhookSettings(urls=(hook.url,), page_url="http://x:8080"))
        assert notifier.queue_due() == 1
        assert notifier.queue_due() == 0  # once per study, model version and URL
        assert notifier.send_due() == {"sent": 1, "failed": 0, "dead": 0}
        assert notifier.send_due() == {"sent": 0, "failed": 0, "dead": 0}
        assert len(hook.messages) == 1
        message = hook.messages[0]
        assert message["study_instance_uid"] == "1.1" and message["model_version"] == "m:1"
        assert message["url"] == "http://x:8080/studies/1.1"
        assert message["hemithorax_percent"] == 20.0
        assert not {"patient_name", "patient_id", "PatientName"} & set(message)
    finally:
        hook.stop()


def test_failures_are_retried_with_backoff_then_dead(sessions):
    url = closed_port_url()
    with sessions() as session:
        add_study(session, "2.1", state=StudyState.POSITIVE, priority=90.0)
        session.commit()
    settings = WebhookSettings(
        urls=(url,), max_attempts=2, timeout=2.0, policy=RetryPolicy(base_seconds=30)
    )
    notifier = Notifier(sessions, settings)
    notifier.queue_due()
    assert notifier.send_due()["failed"] == 1
    assert notifier.send_due()["failed"] == 0  # not due yet: backoff
    with sessions() as session:
        note = session.scalars(select(Notification)).one()
        assert note.state == ExportState.FAILED and note.attempts == 1
        assert "Connection refused" in note.last_error or "URLError" in note.last_error
        due = note.next_attempt_at
    later = due.replace(tzinfo=datetime.UTC) + datetime.timedelta(seconds=1)
    assert notifier.send_due(now=later)["dead"] == 1
    with sessions() as session:
        assert session.scalars(select(Notification)).one().state == ExportState.DEAD
        assert "triage_notification_failures_total 2" in render_metrics(session)


def test_webhook_urls_are_checked():
    import pytest

    with pytest.raises(ValueError, match="http"):
        WebhookSettings(urls=("ftp://example/hook",))
