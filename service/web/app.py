"""The web app: the worklist, study pages, feedback, and their JSON twins under ``/api/``.

Every HTML page has a JSON twin; FastAPI describes the API in ``/openapi.json``.
``/healthz`` and ``/metrics`` answer without a login (probes and scrapers; no patient
data). Everything else needs a reader (see :mod:`service.web.access`), and every request
that changes state needs the reader's CSRF token.
"""

import datetime
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Header, HTTPException, Query, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

import triage
from service.db.models import AuditEvent, Instance, Job, Result, Study
from service.feedback import READER_VERDICTS, FeedbackError, feedback_folder, record_verdict
from service.metrics import render_metrics
from service.web.access import Access
from service.web.render import study_image_png
from service.worklist import study_detail, worklist
from triage.errors import ReadError

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
VERDICT_LABELS = {
    "agree": "Agree",
    "false_positive": "False positive",
    "missed": "Missed pneumothorax",
    "wrong_extent": "Wrong extent",
    "corrected": "Corrected SEG received",
}


class PriorityIn(BaseModel):
    """A reader's priority for a study (0-100), kept over automatic results."""

    priority: float = Field(ge=0.0, le=100.0)


class FeedbackIn(BaseModel):
    """A reader's verdict on a study's result."""

    kind: str = Field(description="agree, false_positive, missed or wrong_extent")
    comment: str | None = Field(default=None, max_length=2000)


def create_app(*, sessions: sessionmaker[Session], data_dir: Path, access: Access) -> FastAPI:
    """The ASGI app for one data folder and database."""
    app = FastAPI(
        title="ptx-triage worklist",
        version=triage.__version__,
        description="Pneumothorax triage worklist: research software, NOT FOR CLINICAL USE.",
    )
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["ago"] = _ago
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def reader(request: Request) -> str:
        name = access.reader(request.headers)
        if name is None:
            headers = {"WWW-Authenticate": 'Basic realm="ptx-triage"'} if access.users else None
            raise HTTPException(401, "log in to read the worklist", headers=headers)
        return name

    Reader = Annotated[str, Depends(reader)]

    def session_scope():
        with sessions() as session:
            yield session

    Db = Annotated[Session, Depends(session_scope)]

    def check_csrf(name: str, token: str | None) -> None:
        if not access.csrf_ok(name, token):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")

    def viewed(session: Session, uid: str, name: str) -> None:
        session.add(AuditEvent(kind="study_viewed", study_instance_uid=uid, actor=name))
        session.commit()

    @app.get("/healthz", tags=["service"])
    def healthz(db: Db) -> dict[str, str]:
        """Liveness and database reachability, for probes."""
        db.execute(text("SELECT 1"))
        return {"status": "ok", "version": triage.__version__}

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"])
    def metrics(db: Db) -> PlainTextResponse:
        """Prometheus text exposition."""
        return PlainTextResponse(render_metrics(db), media_type="text/plain; version=0.0.4")

    @app.get("/api/session", tags=["api"])
    def api_session(name: Reader) -> dict[str, str]:
        """Who you are, and the CSRF token to send with state-changing requests."""
        return {"reader": name, "csrf_token": access.csrf_token(name), "mode": access.mode}

    @app.get("/api/worklist", tags=["api"])
    def api_worklist(
        name: Reader, db: Db, state: Annotated[list[str] | None, Query()] = None
    ) -> list[dict[str, Any]]:
        """Studies by priority (highest first), ties by arrival; filter with ?state=."""
        return worklist(db, states=state or ())

    @app.get("/api/studies/{uid}", tags=["api"])
    def api_study(uid: str, name: Reader, db: Db) -> dict[str, Any]:
        """One study: results per image, SEG UIDs, exports, timeline, feedback."""
        detail = study_detail(db, uid)
        if detail is None:
            raise HTTPException(404, f"no study {uid}")
        viewed(db, uid, name)
        return detail

    @app.get("/api/feedback", tags=["api"])
    def api_feedback(name: Reader, db: Db) -> list[dict[str, Any]]:
        """Every study with feedback, newest verdict first."""
        rows = [r for r in worklist(db) if r["feedback"]]
        return [
            {
                "study_instance_uid": r["study_instance_uid"],
                "feedback": r["feedback"],
                "state": r["state"],
                "model_version": r["model_version"],
            }
            for r in rows
        ]

    @app.post("/api/studies/{uid}/feedback", status_code=201, tags=["api"])
    def api_post_feedback(
        uid: str,
        body: FeedbackIn,
        name: Reader,
        db: Db,
        x_csrf_token: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Record a verdict (needs the X-CSRF-Token header)."""
        check_csrf(name, x_csrf_token)
        row = _record(db, data_dir, uid, body.kind, name, body.comment)
        return {
            "study_instance_uid": uid,
            "kind": row.kind,
            "reader": row.reader,
            "model_version": row.model_version,
        }

    @app.post("/api/studies/{uid}/priority", tags=["api"])
    def api_priority(
        uid: str,
        body: PriorityIn,
        name: Reader,
        db: Db,
        x_csrf_token: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Set a study's priority by hand (needs X-CSRF-Token); analysis never overrides it."""
        check_csrf(name, x_csrf_token)
        _set_priority(db, uid, body.priority, name)
        return {"study_instance_uid": uid, "priority": body.priority, "set_by": name}

    @app.post("/studies/{uid}/priority", include_in_schema=False)
    def page_priority(
        uid: str,
        name: Reader,
        db: Db,
        priority: Annotated[float, Form(ge=0.0, le=100.0)],
        csrf_token: Annotated[str | None, Form()] = None,
    ) -> RedirectResponse:
        check_csrf(name, csrf_token)
        _set_priority(db, uid, priority, name)
        return RedirectResponse(f"/studies/{uid}", status_code=303)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page_worklist(request: Request, name: Reader, db: Db, state: str | None = None):
        rows = worklist(db, states=[state] if state else ())
        return templates.TemplateResponse(
            request,
            "worklist.html",
            {
                "rows": rows,
                "state": state or "",
                "reader": name,
                "labels": VERDICT_LABELS,
                "states": [
                    "positive",
                    "negative",
                    "queued",
                    "processing",
                    "receiving",
                    "not_analysed",
                    "failed",
                    "dead",
                ],
            },
        )

    @app.get("/studies/{uid}", response_class=HTMLResponse, include_in_schema=False)
    def page_study(uid: str, request: Request, name: Reader, db: Db):
        detail = study_detail(db, uid)
        if detail is None:
            raise HTTPException(404, f"no study {uid}")
        viewed(db, uid, name)
        return templates.TemplateResponse(
            request,
            "study.html",
            {
                "study": detail,
                "reader": name,
                "csrf_token": access.csrf_token(name),
                "verdicts": [(v.value, VERDICT_LABELS[v.value]) for v in READER_VERDICTS],
                "labels": VERDICT_LABELS,
            },
        )

    @app.post("/studies/{uid}/feedback", include_in_schema=False)
    def page_feedback(
        uid: str,
        name: Reader,
        db: Db,
        kind: Annotated[str, Form()],
        csrf_token: Annotated[str | None, Form()] = None,
        comment: Annotated[str | None, Form()] = None,
    ) -> RedirectResponse:
        check_csrf(name, csrf_token)
        _record(db, data_dir, uid, kind, name, comment)
        return RedirectResponse(f"/studies/{uid}#feedback", status_code=303)

    @app.get("/studies/{uid}/images/{sop}.png", tags=["api"], response_class=Response)
    def study_image(uid: str, sop: str, name: Reader, db: Db) -> Response:
        """The image with the pneumothorax outline of our SEG, as PNG."""
        path, segs = _image_files(db, data_dir, uid, sop)
        try:
            png = study_image_png(path, segs, sop)
        except (ReadError, OSError) as exc:
            raise HTTPException(422, f"cannot render the image: {exc}") from exc
        return Response(
            png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"}
        )

    @app.exception_handler(FeedbackError)
    def feedback_error(request: Request, exc: FeedbackError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    return app


def _record(db: Session, data_dir: Path, uid: str, kind: str, name: str, comment: str | None):
    row = record_verdict(
        db, data_dir, study_instance_uid=uid, kind=kind, reader=name, comment=comment
    )
    db.commit()
    log.info("feedback %s on study %s by a reader", kind, uid)
    return row


def _set_priority(db: Session, uid: str, priority: float, name: str) -> None:
    study = db.scalars(select(Study).where(Study.study_instance_uid == uid)).one_or_none()
    if study is None:
        raise HTTPException(404, f"no study {uid}")
    before = study.priority
    study.priority, study.priority_set_by_human = float(priority), True
    db.add(
        AuditEvent(
            kind="priority_set",
            study_instance_uid=uid,
            actor=name,
            detail=f"{before:.1f} -> {priority:.1f}",
        )
    )
    db.commit()


def _image_files(db: Session, data_dir: Path, uid: str, sop: str) -> tuple[Path, list[Path]]:
    """The stored image (inbox, else the feedback copy) and our SEG files for it."""
    instance = db.execute(
        select(Instance.path)
        .join(Study, Study.id == Instance.study_id)
        .where(Study.study_instance_uid == uid, Instance.sop_instance_uid == sop)
    ).first()
    if instance is None:
        raise HTTPException(404, f"no image {sop} in study {uid}")
    path = Path(instance.path)
    if not path.exists():
        path = feedback_folder(data_dir, uid) / "images" / f"{sop}.dcm"
    if not path.exists():
        raise HTTPException(410, "the image is no longer stored (retention)")
    segs = [
        Path(p)
        for (p,) in db.execute(
            select(Result.seg_path)
            .join(Job, Job.id == Result.job_id)
            .join(Study, Study.id == Job.study_id)
            .where(
                Study.study_instance_uid == uid,
                Result.sop_instance_uid == sop,
                Result.seg_path.is_not(None),
            )
            .order_by(Job.created_at.desc())
            .limit(1)
        ).all()
        if p and Path(p).exists()
    ]
    return path, segs


def _ago(value: str | None) -> str:
    """'3 min ago' from an ISO time (the page updates it live)."""
    if not value:
        return "–"
    then = datetime.datetime.fromisoformat(value)
    if then.tzinfo is None:
        then = then.replace(tzinfo=datetime.UTC)
    seconds = max(0, int((datetime.datetime.now(datetime.UTC) - then).total_seconds()))
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 5400:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"
