"""Reader feedback: verdicts from the web page, corrected SEGs sent back by C-STORE, and
their export as training data.

When feedback arrives, the study's images (and our SEGs) are copied into
``<data>/feedback/<StudyUID>/``, so retention, which empties the inbox, cannot take a
labelled case away. The export writes pairs of image + SEG (and images that are truly
empty) in the layout :class:`training.datasets.DicomSegDataset` reads.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import AuditEvent, Feedback, FeedbackKind, Instance, Job, Result, Study

log = logging.getLogger(__name__)

#: Verdicts a reader can give on the web page (a corrected SEG comes by C-STORE).
READER_VERDICTS = (
    FeedbackKind.AGREE,
    FeedbackKind.FALSE_POSITIVE,
    FeedbackKind.MISSED,
    FeedbackKind.WRONG_EXTENT,
)


class FeedbackError(ValueError):
    """The feedback cannot be recorded as given."""


def feedback_folder(data_dir: Path, study_instance_uid: str) -> Path:
    """Where a study's labelled files are kept."""
    return Path(data_dir) / "feedback" / study_instance_uid


def _latest_job(session: Session, study: Study) -> Job | None:
    return session.scalars(
        select(Job).where(Job.study_id == study.id).order_by(Job.created_at.desc(), Job.id.desc())
    ).first()


def keep_study_files(session: Session, data_dir: Path, study: Study) -> Path:
    """Copy the study's images and our SEGs into its feedback folder (once each)."""
    folder = feedback_folder(data_dir, study.study_instance_uid)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "ours").mkdir(parents=True, exist_ok=True)
    for instance in session.scalars(select(Instance).where(Instance.study_id == study.id)):
        _copy(Path(instance.path), folder / "images" / f"{instance.sop_instance_uid}.dcm")
    job = _latest_job(session, study)
    if job is not None:
        for result in session.scalars(select(Result).where(Result.job_id == job.id)):
            if result.seg_path:
                _copy(Path(result.seg_path), folder / "ours" / Path(result.seg_path).name)
    return folder


def _copy(source: Path, target: Path) -> None:
    if target.exists():
        return
    if not source.exists():
        log.warning("cannot keep %s for feedback: the file is gone", source.name)
        return
    shutil.copy2(source, target)


def record_verdict(
    session: Session,
    data_dir: Path,
    *,
    study_instance_uid: str,
    kind: str,
    reader: str,
    comment: str | None = None,
) -> Feedback:
    """Record a reader's verdict on a study (the caller commits).

    Raises
    ------
    FeedbackError
        If the verdict is unknown, the study does not exist or has no result yet.
    """
    if kind not in READER_VERDICTS:
        raise FeedbackError(
            f"unknown verdict {kind!r}; choose from {', '.join(v.value for v in READER_VERDICTS)}"
        )
    study = session.scalars(
        select(Study).where(Study.study_instance_uid == study_instance_uid)
    ).one_or_none()
    if study is None:
        raise FeedbackError(f"no study {study_instance_uid}")
    job = _latest_job(session, study)
    if job is None or job.finished_at is None:
        raise FeedbackError("the study has no result yet: feedback needs one")
    keep_study_files(session, data_dir, study)
    row = Feedback(
        study_id=study.id,
        kind=kind,
        reader=reader[:64],
        model_version=job.model_version,
        comment=(comment or "").strip()[:2000] or None,
    )
    session.add(row)
    session.add(
        AuditEvent(
            kind="feedback",
            study_instance_uid=study.study_instance_uid,
            actor=reader[:64],
            detail=f"{kind} on {job.model_version}",
        )
    )
    return row


def referenced_images(seg: Dataset) -> list[str]:
    """SOP Instance UIDs of the images a SEG was drawn on."""
    uids = [
        str(ref.ReferencedSOPInstanceUID)
        for series in seg.get("ReferencedSeriesSequence", [])
        for ref in series.get("ReferencedInstanceSequence", [])
    ]
    for frame in seg.get("PerFrameFunctionalGroupsSequence", []):
        for derivation in frame.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                uids.append(str(source.ReferencedSOPInstanceUID))
    return list(dict.fromkeys(uids))


def record_correction(
    session: Session,
    *,
    study_id: int,
    sop_instance_uid: str,
    seg_path: Path,
    reader: str,
) -> None:
    """Record a corrected SEG kept at ``seg_path`` (once per file; the caller commits)."""
    if session.scalar(select(Feedback.id).where(Feedback.seg_path == str(seg_path))):
        return  # the same SEG sent twice
    study = session.get(Study, study_id)
    assert study is not None
    # No copying here (this runs on a DICOM association): retention copies a labelled
    # study's files to its feedback folder before it empties the inbox.
    job = _latest_job(session, study)
    session.add(
        Feedback(
            study_id=study.id,
            kind=FeedbackKind.CORRECTED,
            reader=reader[:64] or "unknown",
            model_version=None if job is None else job.model_version,
            sop_instance_uid=sop_instance_uid,
            seg_path=str(seg_path),
        )
    )
    session.add(
        AuditEvent(
            kind="feedback",
            study_instance_uid=study.study_instance_uid,
            actor=reader[:64],
            detail=f"corrected SEG for {sop_instance_uid}",
        )
    )


@dataclass(frozen=True, kw_only=True)
class ExportSummary:
    """What :func:`export_training_set` wrote and what it left out."""

    images: int
    with_mask: int
    skipped: list[tuple[str, str]]  # (study UID, reason)


def export_training_set(session: Session, data_dir: Path, out: Path) -> ExportSummary:
    """Write every labelled case to ``out`` as image + SEG pairs (negatives: image only).

    The latest feedback on a study decides: a corrected SEG is the truth for its image;
    "agree" keeps our SEGs (or an empty mask for a negative result); "false positive"
    makes every image empty; "missed" and "wrong extent" without a corrected SEG give no
    mask to learn from and are listed as skipped.
    """
    out.mkdir(parents=True, exist_ok=True)
    images = with_mask = 0
    skipped: list[tuple[str, str]] = []
    studies = session.scalars(
        select(Study).where(Study.id.in_(select(Feedback.study_id))).order_by(Study.id)
    ).all()
    for study in studies:
        rows = session.scalars(
            select(Feedback).where(Feedback.study_id == study.id).order_by(Feedback.at, Feedback.id)
        ).all()
        folder = keep_study_files(session, data_dir, study)  # a no-op once kept
        corrected = [r for r in rows if r.kind == FeedbackKind.CORRECTED and r.seg_path]
        verdict = next((r.kind for r in reversed(rows) if r.kind != FeedbackKind.CORRECTED), None)
        if corrected:
            segs = [Path(r.seg_path) for r in corrected if r.seg_path]
        elif verdict == FeedbackKind.AGREE:
            segs = sorted((folder / "ours").glob("*.dcm"))
        elif verdict == FeedbackKind.FALSE_POSITIVE:
            segs = []
        else:
            skipped.append((study.study_instance_uid, f"{verdict}: no corrected SEG to learn from"))
            continue
        job = _latest_job(session, study)
        analysed = set()
        if job is not None:
            analysed = set(
                session.scalars(
                    select(Result.sop_instance_uid).where(
                        Result.job_id == job.id, Result.status == "analysed"
                    )
                )
            )
        target = out / study.study_instance_uid
        target.mkdir(parents=True, exist_ok=True)
        # Only the images the cascade analysed (frontal chest): a lateral is no negative.
        for image in sorted((folder / "images").glob("*.dcm")):
            if image.stem in analysed:
                shutil.copy2(image, target / image.name)
                images += 1
        for seg in segs:
            shutil.copy2(seg, target / f"seg-{seg.name}")
            with_mask += 1
    return ExportSummary(images=images, with_mask=with_mask, skipped=skipped)
