"""Settling: a quiet period, or sooner once the delivering association is released."""

from __future__ import annotations

import datetime

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation
from sqlalchemy import select

from service.db.models import Association, Job, Study, StudyState, utcnow
from service.listener import Listener, ListenerSettings
from service.scheduler import settle_studies
from tests.factory import make_dataset

SOON = datetime.timedelta(seconds=2)


@pytest.fixture
def listener(tmp_path, sessions):
    running = Listener(ListenerSettings(port=0), tmp_path / "data", sessions).start()
    yield running
    running.stop()


def open_association(port: int):
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(DigitalXRayImageStorageForPresentation)
    assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    assert assoc.is_established
    return assoc


def settle(sessions, after: datetime.timedelta, stable_age: float = 60.0) -> list[str]:
    with sessions() as session:
        settled = settle_studies(
            session,
            model_version="m",
            stable_age=stable_age,
            release_grace=1.0,
            now=utcnow() + after,
        )
        session.commit()
    return settled


def wait_closed(sessions) -> None:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with sessions() as session:
            if all(a.closed_at for a in session.scalars(select(Association))):
                return
        time.sleep(0.05)
    raise AssertionError("association end not recorded")


def test_released_association_settles_after_the_grace(listener, sessions):
    ds = make_dataset(rows=64, columns=64)
    assoc = open_association(listener.port)
    assert assoc.send_c_store(ds).Status == 0
    assert settle(sessions, SOON) == []  # still open: keep waiting
    assoc.release()
    wait_closed(sessions)
    assert settle(sessions, datetime.timedelta(0)) == []  # inside the grace
    assert settle(sessions, SOON) == [ds.StudyInstanceUID]
    with sessions() as session:
        assert session.scalars(select(Study)).one().state == StudyState.QUEUED
        assert session.scalars(select(Job)).one().model_version == "m"


def test_quiet_period_settles_even_with_an_open_association(listener, sessions):
    ds = make_dataset(rows=64, columns=64)
    assoc = open_association(listener.port)
    try:
        assert assoc.send_c_store(ds).Status == 0
        assert settle(sessions, SOON, stable_age=5) == []
        assert settle(sessions, datetime.timedelta(seconds=6), stable_age=5) == [
            ds.StudyInstanceUID
        ]
        assert settle(sessions, datetime.timedelta(seconds=7), stable_age=5) == []  # once
    finally:
        assoc.release()


def test_retention_removes_files_of_finished_and_delivered_studies_only(tmp_path, sessions):
    from service.db.models import Export, Result
    from service.scheduler import purge_finished, write_heartbeat

    data = tmp_path / "data"
    old = utcnow() - datetime.timedelta(days=10)
    with sessions() as session:
        for uid, state, export_state in (
            ("1.1", StudyState.NEGATIVE, None),
            ("1.2", StudyState.POSITIVE, "failed"),  # a SEG still to deliver: keep
            ("1.3", StudyState.QUEUED, None),  # not finished: keep
            ("1.4", StudyState.POSITIVE, "sent"),
        ):
            study = Study(study_instance_uid=uid, state=state, finished_at=old)
            session.add(study)
            session.flush()
            for box in ("inbox", "outbox"):
                (data / box / uid).mkdir(parents=True)
                (data / box / uid / "x.dcm").write_bytes(b"x")
            if export_state:
                job = Job(study_id=study.id, model_version="m")
                session.add(job)
                session.flush()
                result = Result(job_id=job.id, sop_instance_uid=uid + ".1", status="analysed")
                session.add(result)
                session.flush()
                session.add(Export(result_id=result.id, destination="P@h:1", state=export_state))
        session.commit()
        assert purge_finished(session, data_dir=data, retention=86400 * 30) == 0  # too young
        assert purge_finished(session, data_dir=data, retention=86400) == 2
    remaining = sorted(p.name for p in (data / "inbox").iterdir())
    assert remaining == ["1.2", "1.3"]
    assert write_heartbeat(data).read_text().startswith(str(utcnow().year))
