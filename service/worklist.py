"""The prioritised worklist: queries and the table ``triage worklist`` prints."""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import Export, Job, Result, Study
from service.tables import render_table

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
)


def _iso(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def worklist(session: Session, *, states: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Studies by priority (highest first), ties by arrival (oldest first)."""
    query = select(Study).order_by(Study.priority.desc(), Study.received_at, Study.id)
    if states:
        query = query.where(Study.state.in_(states))
    studies = session.scalars(query).all()
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
        .where(Result.seg_sop_instance_uid.is_not(None))
    ).all()
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
