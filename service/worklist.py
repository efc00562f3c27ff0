"""The prioritised worklist: queries and the table ``triage worklist`` prints."""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import Export, Feedback, Job, Notification, Result, Study
from service.tables import render_table
from triage.postprocess import hemithorax_percent

FIELDS = (
    "study_instance_uid",
    "accession_number",
    "state",
    "reason",
    "priority",
    "probability",
    "area_mm2",
    "laterality",
    "received_at",
    "finished_at",
    "seg_sop_instance_uids",
    "exports",
    "area_fraction",
    "hemithorax_percent",
    "last_instance_at",
    "model_version",
    "feedback",
    "priority_set_by_human",
)


def _iso(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive values; we store UTC
        value = value.replace(tzinfo=datetime.UTC)
    return value.isoformat(timespec="seconds")


def worklist(
    session: Session, *, states: Sequence[str] = (), study_instance_uid: str | None = None
) -> list[dict[str, Any]]:
    """Studies by priority (highest first), ties by arrival (oldest first); optionally only
    those in ``states``, or only one study."""
    chosen = select(Study.id)
    if states:
        chosen = chosen.where(Study.state.in_(states))
    if study_instance_uid is not None:
        chosen = chosen.where(Study.study_instance_uid == study_instance_uid)
    query = select(Study).where(Study.id.in_(chosen))
    studies = session.scalars(
        query.order_by(Study.priority.desc(), Study.received_at, Study.id)
    ).all()
    segs: dict[int, set[str]] = defaultdict(set)
    exports: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    rows = session.execute(
        select(
            Job.study_id,
            Result.seg_sop_instance_uid,
            Export.destination,
            Export.state,
            Export.last_error,
        )
        .join(Result, Result.job_id == Job.id)
        .outerjoin(Export, Export.result_id == Result.id)
        .where(Result.seg_sop_instance_uid.is_not(None), Job.study_id.in_(chosen))
    ).all()
    versions = dict(
        session.execute(
            select(Job.study_id, Job.model_version)
            .where(Job.study_id.in_(chosen))
            .order_by(Job.created_at, Job.id)
        ).all()
    )  # the latest job's version wins
    verdicts = dict(
        session.execute(
            select(Feedback.study_id, Feedback.kind)
            .where(Feedback.study_id.in_(chosen))
            .order_by(Feedback.at, Feedback.id)
        ).all()
    )
    for study_id, seg_uid, destination, state, error in rows:
        segs[study_id].add(str(seg_uid))
        if destination is not None:
            exports[study_id][f"{seg_uid}@{destination}"] = {
                "seg_sop_instance_uid": seg_uid,
                "destination": destination,
                "state": state,
                "last_error": error,
            }
    return [
        {
            "study_instance_uid": s.study_instance_uid,
            "accession_number": s.accession_number,
            "state": s.state,
            "reason": s.reason,
            "priority": s.priority,
            "probability": None if s.probability is None else round(s.probability, 4),
            "area_mm2": None if s.area_mm2 is None else round(s.area_mm2, 1),
            "laterality": s.laterality,
            "received_at": _iso(s.received_at),
            "finished_at": _iso(s.finished_at),
            "seg_sop_instance_uids": sorted(segs[s.id]),
            "exports": list(exports[s.id].values()),
            "area_fraction": None if s.area_fraction is None else round(s.area_fraction, 5),
            "hemithorax_percent": None
            if s.area_fraction is None
            else round(hemithorax_percent(s.area_fraction), 1),
            "last_instance_at": _iso(s.last_instance_at),
            "model_version": versions.get(s.id),
            "feedback": verdicts.get(s.id),
            "priority_set_by_human": s.priority_set_by_human,
        }
        for s in studies
    ]


def format_worklist(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width table of the worklist for the terminal."""
    header = ("#", "priority", "state", "prob", "area cm²", "side", "accession", "study", "reason")
    table = [header]
    for rank, row in enumerate(rows, 1):
        table.append(
            (
                str(rank),
                f"{row['priority']:.1f}",
                row["state"],
                "" if row["probability"] is None else f"{row['probability']:.3f}",
                "" if row["area_mm2"] is None else f"{row['area_mm2'] / 100:.1f}",
                row["laterality"] or "",
                row["accession_number"] or "",
                "…" + row["study_instance_uid"][-20:],
                (row["reason"] or "")[:60],
            )
        )
    return render_table(table[0], table[1:])


def study_detail(session: Session, study_instance_uid: str) -> dict[str, Any] | None:
    """One study: its worklist row, images with results and SEGs, exports, feedback,
    notifications and timeline; None if there is no such study."""
    study = session.scalars(
        select(Study).where(Study.study_instance_uid == study_instance_uid)
    ).one_or_none()
    if study is None:
        return None
    (row,) = worklist(session, study_instance_uid=study.study_instance_uid)
    jobs = session.scalars(
        select(Job).where(Job.study_id == study.id).order_by(Job.created_at, Job.id)
    ).all()
    job = jobs[-1] if jobs else None
    results: dict[str, Result] = {}
    if job is not None:
        rows = session.scalars(select(Result).where(Result.job_id == job.id))
        results = {r.sop_instance_uid: r for r in rows}
    images = []
    for instance in sorted(study.instances, key=lambda i: (i.received_at, i.id)):
        result = results.get(instance.sop_instance_uid)
        images.append(
            {
                "sop_instance_uid": instance.sop_instance_uid,
                "series_instance_uid": instance.series_instance_uid,
                "status": None if result is None else result.status,
                "reason": None if result is None else result.reason,
                "probability": None
                if result is None or result.probability is None
                else round(result.probability, 4),
                "positive": None if result is None else result.positive,
                "area_mm2": None
                if result is None or result.area_mm2 is None
                else round(result.area_mm2, 1),
                "laterality": None if result is None else result.laterality,
                "seg_sop_instance_uid": None if result is None else result.seg_sop_instance_uid,
                "exports": []
                if result is None
                else [
                    {
                        "destination": e.destination,
                        "state": e.state,
                        "attempts": e.attempts,
                        "last_error": e.last_error,
                        "sent_at": _iso(e.sent_at),
                    }
                    for e in result.exports
                ],
            }
        )
    sent = [e.sent_at for r in results.values() for e in r.exports if e.sent_at is not None]
    feedback = session.scalars(
        select(Feedback).where(Feedback.study_id == study.id).order_by(Feedback.at, Feedback.id)
    ).all()
    notifications = session.scalars(
        select(Notification).where(Notification.study_id == study.id).order_by(Notification.id)
    ).all()
    return {
        **row,
        "timeline": {
            "received": _iso(study.received_at),
            "last_image": _iso(study.last_instance_at),
            "settled": _iso(job.created_at if job else None),
            "analysed": _iso(job.finished_at if job else None),
            "seg_delivered": _iso(max(sent)) if sent else None,
        },
        "job": None
        if job is None
        else {
            "state": job.state,
            "attempts": job.attempts,
            "last_error": job.last_error,
            "model_version": job.model_version,
        },
        "images": images,
        "feedback_history": [
            {
                "kind": f.kind,
                "reader": f.reader,
                "at": _iso(f.at),
                "model_version": f.model_version,
                "comment": f.comment,
                "sop_instance_uid": f.sop_instance_uid,
            }
            for f in feedback
        ],
        "notifications": [
            {
                "url": n.url,
                "state": n.state,
                "attempts": n.attempts,
                "last_error": n.last_error,
                "sent_at": _iso(n.sent_at),
            }
            for n in notifications
        ],
    }
