"""Export to a real PACS stand-in (dcmtk storescp): down, then up, delivered once."""

from __future__ import annotations

import datetime
import socket
import subprocess
import time

import numpy as np
import pydicom
import pytest
from sqlalchemy import select

from service.db.models import Export, ExportState, Job, Result, Study, utcnow
from service.sender import Destination, Sender
from tests.factory import make_dataset
from triage.dicom.seg import Algorithm, build_segmentation, write_segmentation


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seg_export(tmp_path, sessions, destination: str) -> str:
    source = make_dataset(rows=64, columns=64)
    mask = np.zeros((64, 64), bool)
    mask[10:30, 5:20] = True
    algorithm = Algorithm(name="ptx-test", version="1", research_only=True)
    path = write_segmentation(build_segmentation(source, mask, algorithm), tmp_path / "a.seg.dcm")
    with sessions() as session:
        study = Study(study_instance_uid=source.StudyInstanceUID)
        session.add(study)
        session.flush()
        job = Job(study_id=study.id, model_version="m")
        session.add(job)
        session.flush()
        result = Result(
            job_id=job.id,
            sop_instance_uid=source.SOPInstanceUID,
            status="analysed",
            seg_path=str(path),
        )
        session.add(result)
        session.flush()
        session.add(Export(result_id=result.id, destination=destination))
        session.commit()
    return pydicom.dcmread(path).SOPInstanceUID


def start_storescp(port: int, folder) -> subprocess.Popen:
    from tests.conftest import require_tool

    storescp, echoscu = require_tool("storescp"), require_tool("echoscu")
    env = {"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [storescp, "-aet", "PACS", "-od", str(folder), str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # readiness probe, not a fixed sleep
        probe = subprocess.run(
            [echoscu, "-aec", "PACS", "127.0.0.1", str(port)],
            env=env,
            capture_output=True,
            timeout=10,
        )
        if probe.returncode == 0:
            return process
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("storescp did not start")


def test_destination_parsing():
    assert str(Destination.parse("PACS@pacs.example:11112")) == "PACS@pacs.example:11112"
    with pytest.raises(ValueError, match="AET@HOST:PORT"):
        Destination.parse("PACS:104")


@pytest.mark.peers
def test_destination_down_then_up_delivers_once(tmp_path, sessions):
    port = free_port()
    seg_uid = seg_export(tmp_path, sessions, f"PACS@127.0.0.1:{port}")
    sender = Sender(sessions, timeout=5)
    first = sender.send_due()
    assert (first.sent, first.failed) == (0, 1)
    with sessions() as session:
        export = session.scalars(select(Export)).one()
        assert export.state == ExportState.FAILED and "no association" in export.last_error
        retry_at = export.next_attempt_at
    received = tmp_path / "pacs"
    received.mkdir()
    pacs = start_storescp(port, received)
    try:
        assert sender.send_due().sent == 0  # backoff not over yet
        later = utcnow() + datetime.timedelta(hours=1)
        assert retry_at.replace(tzinfo=None) < later.replace(tzinfo=None)
        assert sender.send_due(now=later).sent == 1
        assert sender.send_due(now=later).sent == 0  # nothing left to send
    finally:
        pacs.terminate()
        pacs.wait(timeout=10)
    files = list(received.iterdir())
    assert len(files) == 1
    assert pydicom.dcmread(files[0]).SOPInstanceUID == seg_uid
    with sessions() as session:
        export = session.scalars(select(Export)).one()
        assert export.state == ExportState.SENT and export.attempts == 2


def test_exports_die_after_the_last_attempt(tmp_path, sessions):
    seg_export(tmp_path, sessions, f"PACS@127.0.0.1:{free_port()}")
    sender = Sender(sessions, timeout=2, max_attempts=2)
    sender.send_due()
    report = sender.send_due(now=utcnow() + datetime.timedelta(days=1))
    assert report.dead == 1
    with sessions() as session:
        assert session.scalars(select(Export)).one().state == ExportState.DEAD
