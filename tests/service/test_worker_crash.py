"""A `triage work` process killed with SIGKILL mid-job: the lease expires, the job runs again."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import time

import pydicom
from pynetdicom import AE
from sqlalchemy import select

from service.db import queue
from service.db.engine import make_engine, make_sessionmaker, sqlite_url
from service.db.migrate import upgrade
from service.db.models import Export, Job, JobState, Result, utcnow
from service.listener import Listener, ListenerSettings
from service.scheduler import settle_studies
from service.worker import Worker
from training.phantoms import write_studies
from triage.cascade import Cascade
from triage.models.package import default_package_path, load_package

DESTINATION = "PACS@127.0.0.1:104"


def test_killed_worker_loses_its_lease_and_the_job_runs_once_more(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    engine = make_engine(sqlite_url(data / "triage.db"))
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    images = write_studies(tmp_path / "in", studies=1, seed=99, prevalence=1.0, sizes=(2000, 2600))
    listener = Listener(ListenerSettings(port=0), data, sessions).start()
    try:
        for image in images:
            ds = pydicom.dcmread(image.path)
            ae = AE(ae_title="MODALITY")
            ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
            assoc = ae.associate("127.0.0.1", listener.port, ae_title="TRIAGE")
            assert assoc.send_c_store(ds).Status == 0
            assoc.release()
    finally:
        listener.stop()
    package = load_package(default_package_path())
    version = f"{package.name}:{package.version}"
    with sessions() as session:
        settle_studies(
            session,
            model_version=version,
            stable_age=0,
            now=utcnow() + datetime.timedelta(seconds=5),
        )
        session.commit()

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "work",
            "--data-dir",
            str(data),
            "--lease-seconds",
            "2",
            "--device",
            "cpu",
            "--destination",
            DESTINATION,
        ],
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with sessions() as session:
                state = session.scalars(select(Job.state)).one()
            if state == JobState.RUNNING:
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    with sessions() as session:
        job = session.scalars(select(Job)).one()
        assert job.state == JobState.RUNNING, "the worker must die in the middle of the job"
        assert session.scalars(select(Result)).all() == []  # nothing half-written

    expired, deadline = 0, time.monotonic() + 15
    while not expired and time.monotonic() < deadline:  # the 2 s lease runs out for real
        with sessions() as session:
            expired = queue.expire_leases(session)
            session.commit()
        time.sleep(0.1)
    assert expired == 1
    worker = Worker(sessions, Cascade(package, device="cpu"), data, destinations=(DESTINATION,))
    while worker.run_once():
        pass
    with sessions() as session:
        job = session.scalars(select(Job)).one()
        results = session.scalars(select(Result)).all()
        exports = session.scalars(select(Export)).all()
    assert job.state == JobState.DONE and job.attempts == 2
    frontal = [i for i in images if i.mask_path is not None]
    assert len(results) == len(images)
    segs = {r.seg_sop_instance_uid for r in results if r.seg_sop_instance_uid}
    assert len(exports) == len(segs) >= 1 and len(frontal) >= 1
    engine.dispose()
