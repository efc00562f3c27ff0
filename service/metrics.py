"""``/metrics`` in the Prometheus text format, computed from the database at scrape time.

The database is the single source of truth shared by every listener and worker process,
so any of them can answer a scrape with the same figures. Counters are counts of rows
(they fall back only when retention deletes rows); histograms are built from the
timestamps of finished jobs, studies and exports.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.models import (
    Export,
    ExportState,
    Instance,
    Job,
    JobState,
    Notification,
    Result,
    Study,
    StudyState,
)

#: Seconds; from "a few seconds" (the target) to an hour (something is wrong).
BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def _seconds(later: datetime.datetime | None, earlier: datetime.datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    if (later.tzinfo is None) != (earlier.tzinfo is None):
        later, earlier = later.replace(tzinfo=None), earlier.replace(tzinfo=None)
    return max(0.0, (later - earlier).total_seconds())


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + inner + "}"


class Exposition:
    """Collects metric families and renders them as text."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float, **labels: str) -> None:
        self.lines.append(f"{name}{_labels(labels)} {float(value):g}")

    def histogram(self, name: str, values: Iterable[float], **labels: str) -> None:
        data = sorted(values)
        total = 0
        for bound in BUCKETS:
            while total < len(data) and data[total] <= bound:
                total += 1
            self.sample(f"{name}_bucket", total, **labels, le=f"{bound:g}")
        self.sample(f"{name}_bucket", len(data), **labels, le="+Inf")
        self.sample(f"{name}_sum", sum(data), **labels)
        self.sample(f"{name}_count", len(data), **labels)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render_metrics(session: Session) -> str:
    """All metrics, as the text a Prometheus scrape expects."""
    out = Exposition()
    out.family("triage_instances_received_total", "counter", "DICOM instances stored.")
    out.sample(
        "triage_instances_received_total", session.scalar(select(func.count(Instance.id))) or 0
    )

    out.family("triage_studies", "gauge", "Studies by worklist state.")
    counts = dict(
        session.execute(select(Study.state, func.count(Study.id)).group_by(Study.state)).all()
    )
    for state in StudyState:
        out.sample("triage_studies", counts.get(state.value, 0), state=state.value)

    out.family("triage_queue_depth", "gauge", "Jobs waiting to be claimed (queued or to retry).")
    waiting = select(func.count(Job.id)).where(Job.state.in_([JobState.QUEUED, JobState.FAILED]))
    out.sample("triage_queue_depth", session.scalar(waiting) or 0)

    jobs = session.execute(
        select(Job.started_at, Job.finished_at).where(Job.state == JobState.DONE)
    ).all()
    out.family("triage_job_duration_seconds", "histogram", "Claim to result, per finished job.")
    out.histogram("triage_job_duration_seconds", _present(_seconds(f, s) for s, f in jobs))
    _latency(session, out)
    _positives(session, out)
    _failures(session, out)
    return out.text()


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def _latency(session: Session, out: Exposition) -> None:
    """Last image received → result, and → SEG delivered (the slowest destination)."""
    results = session.execute(
        select(Study.last_instance_at, Job.finished_at)
        .join(Job, Job.study_id == Study.id)
        .where(Job.state == JobState.DONE)
    ).all()
    delivered = session.execute(
        select(Study.id, Study.last_instance_at, func.max(Export.sent_at))
        .join(Job, Job.study_id == Study.id)
        .join(Result, Result.job_id == Job.id)
        .join(Export, Export.result_id == Result.id)
        .where(Export.state == ExportState.SENT)
        .group_by(Study.id, Study.last_instance_at)
    ).all()
    out.family(
        "triage_latency_seconds",
        "histogram",
        "End to end, from the study's last image received to its result or SEG delivered.",
    )
    out.histogram(
        "triage_latency_seconds", _present(_seconds(f, r) for r, f in results), stage="result"
    )
    out.histogram(
        "triage_latency_seconds",
        _present(_seconds(sent, r) for _, r, sent in delivered),
        stage="delivered",
    )


def _positives(session: Session, out: Exposition) -> None:
    rows = session.execute(
        select(Job.model_version, Result.positive, func.count(Result.id))
        .join(Job, Job.id == Result.job_id)
        .where(Result.status == "analysed")
        .group_by(Job.model_version, Result.positive)
    ).all()
    totals: dict[str, list[int]] = {}
    for version, is_positive, count in rows:
        totals.setdefault(version, [0, 0])
        totals[version][0] += count
        totals[version][1] += count if is_positive else 0
    out.family("triage_images_analysed_total", "counter", "Images analysed, per model version.")
    for version, (analysed, _) in sorted(totals.items()):
        out.sample("triage_images_analysed_total", analysed, model_version=version)
    out.family("triage_positive_rate", "gauge", "Share of analysed images called positive.")
    for version, (analysed, called) in sorted(totals.items()):
        rate = called / analysed if analysed else 0.0
        out.sample("triage_positive_rate", rate, model_version=version)


def _failures(session: Session, out: Exposition) -> None:
    for name, table, what in (
        ("triage_export_failures_total", Export, "Failed SEG delivery attempts."),
        ("triage_notification_failures_total", Notification, "Failed webhook attempts."),
    ):
        by_state = {
            state: (int(items), int(attempts or 0))
            for state, items, attempts in session.execute(
                select(table.state, func.count(table.id), func.sum(table.attempts)).group_by(
                    table.state
                )
            )
        }
        # A sent item's last attempt succeeded; every other attempt failed.
        failed = sum(
            attempts - (items if state == ExportState.SENT else 0)
            for state, (items, attempts) in by_state.items()
        )
        out.family(name, "counter", what)
        out.sample(name, failed)
        gauge = name.replace("_failures_total", "s")
        out.family(gauge, "gauge", "Items by delivery state.")
        for state in ExportState:
            out.sample(gauge, by_state.get(state.value, (0, 0))[0], state=state.value)
