"""Listener → settle → worker on a real database with the bundled model package."""

from __future__ import annotations

import datetime

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE
from sqlalchemy import select

from service.db.models import Export, Job, JobState, Result, Study, StudyState, utcnow
from service.db.queue import RetryPolicy
from service.listener import Listener, ListenerSettings
from service.scheduler import settle_studies
from service.validate import dciodvfy
from service.worker import Worker
from tests.packages import make_package
from training.phantoms import write_studies
from triage.cascade import Cascade
from triage.models.package import default_package_path, load_package

LATER = datetime.timedelta(seconds=60)


@pytest.fixture(scope="module")
def cascade():
    return Cascade(load_package(default_package_path()), device="cpu")


def send_files(port: int, paths) -> None:
    for path in paths:  # one association per file keeps the contexts simple
        ds = pydicom.dcmread(path)
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
        assert assoc.is_established
        assert assoc.send_c_store(ds).Status == 0
        assoc.release()


def receive(tmp_path, sessions, paths):
    listener = Listener(ListenerSettings(port=0), tmp_path / "data", sessions).start()
    try:
        send_files(listener.port, paths)
    finally:
        listener.stop()


def settle_and_work(sessions, worker) -> None:
    with sessions() as session:
        settle_studies(
            session, model_version=worker.model_version, stable_age=5, now=utcnow() + LATER
        )
        session.commit()
    while worker.run_once():
        pass


def test_positive_study_gets_a_valid_seg_and_an_export_per_destination(
    tmp_path, sessions, cascade, require_tool
):
    images = write_studies(
        tmp_path / "phantoms", studies=3, seed=2024, prevalence=1.0, sizes=(512, 900)
    )
    tibia = get_testdata_file("RG3_J2KR.dcm")
    receive(tmp_path, sessions, [i.path for i in images] + [tibia])
    worker = Worker(
        sessions,
        cascade,
        tmp_path / "data",
        destinations=("PACS@127.0.0.1:104", "ARCHIVE@127.0.0.1:105"),
    )
    settle_and_work(sessions, worker)
    with sessions() as session:
        studies = {s.study_instance_uid: s for s in session.scalars(select(Study))}
        jobs = session.scalars(select(Job)).all()
        results = session.scalars(select(Result)).all()
        exports = session.scalars(select(Export)).all()
    assert all(job.state == JobState.DONE for job in jobs) and len(jobs) == 4
    phantom_studies = {i.study_instance_uid for i in images}
    positives = [
        studies[uid] for uid in phantom_studies if studies[uid].state == StudyState.POSITIVE
    ]
    assert len(positives) >= 2
    for study in positives:
        assert 50 <= study.priority <= 100 and study.laterality in ("L", "R", "B")
    tibia_study = studies[pydicom.dcmread(tibia, stop_before_pixels=True).StudyInstanceUID]
    assert tibia_study.state == StudyState.NOT_ANALYSED
    assert "EXTREMITY" in tibia_study.reason
    segs = [r for r in results if r.seg_path]
    assert len(exports) == 2 * len(segs)
    require_tool("dciodvfy")
    for row in segs:
        assert dciodvfy(row.seg_path).errors == ()
        assert pydicom.dcmread(row.seg_path).SOPInstanceUID == row.seg_sop_instance_uid


def test_a_failing_job_is_retried_then_dead_with_its_reason(tmp_path, sessions):
    package = make_package(tmp_path / "pkg")
    cascade = Cascade(package, device="cpu")
    images = write_studies(
        tmp_path / "phantoms", studies=1, seed=7, prevalence=0.0, sizes=(512, 600)
    )
    receive(tmp_path, sessions, [images[0].path])

    def explode(radiographs):
        raise RuntimeError("out of memory on the accelerator")

    cascade.run = explode
    worker = Worker(sessions, cascade, tmp_path / "data", policy=RetryPolicy(base_seconds=0))
    settle_and_work(sessions, worker)
    with sessions() as session:
        job = session.scalars(select(Job)).one()
        study = session.scalars(select(Study)).one()
    assert job.state == JobState.DEAD and job.attempts == 3
    assert "out of memory" in job.last_error
    assert study.state == StudyState.DEAD and "out of memory" in study.reason


def test_new_images_after_a_result_analyse_the_study_again(tmp_path, sessions):
    package = make_package(tmp_path / "pkg", classifier_bias=-6.0)
    worker = Worker(sessions, Cascade(package, device="cpu"), tmp_path / "data")
    images = write_studies(
        tmp_path / "phantoms", studies=1, seed=9, prevalence=0.0, sizes=(512, 600)
    )
    receive(tmp_path, sessions, [images[0].path])
    settle_and_work(sessions, worker)
    with sessions() as session:
        assert session.scalars(select(Study)).one().state == StudyState.NEGATIVE
    more = write_studies(tmp_path / "more", studies=1, seed=9, prevalence=0.0, sizes=(512, 600))
    ds = pydicom.dcmread(more[0].path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".9"
    ds.save_as(tmp_path / "extra.dcm", enforce_file_format=True)
    receive(tmp_path, sessions, [tmp_path / "extra.dcm"])
    with sessions() as session:
        assert session.scalars(select(Study)).one().state == StudyState.RECEIVING
    settle_and_work(sessions, worker)
    with sessions() as session:
        job = session.scalars(select(Job)).one()
        assert job.state == JobState.DONE
        assert len(session.scalars(select(Result)).all()) == 1 + 2  # first run + second run


def test_analyses_and_failures_are_audit_events(tmp_path, sessions):
    from service.db.models import AuditEvent

    package = make_package(tmp_path / "pkg", classifier_bias=-6.0)
    worker = Worker(sessions, Cascade(package, device="cpu"), tmp_path / "data")
    images = write_studies(tmp_path / "p", studies=1, seed=5, prevalence=0.0, sizes=(512, 600))
    receive(tmp_path, sessions, [images[0].path])
    settle_and_work(sessions, worker)
    with sessions() as session:
        events = session.scalars(select(AuditEvent)).all()
    assert [e.kind for e in events] == ["analysed"]
    assert events[0].study_instance_uid == images[0].study_instance_uid
    assert "1 of 1 images analysed" in events[0].detail
