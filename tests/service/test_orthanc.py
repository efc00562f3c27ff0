"""Orthanc as the PACS, dcmtk as the modality: every positive image gets one valid SEG."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest
from sqlalchemy import func, select

from service.db.models import Job
from service.listener import ListenerSettings
from service.serve import Service, ServiceSettings
from service.validate import dciodvfy
from service.worklist import worklist
from training.phantoms import write_studies

pytestmark = [pytest.mark.peers, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Orthanc:
    """Orthanc on loopback with a temporary configuration, ready when /system answers."""

    def __init__(self, program: str, folder) -> None:
        self.dicom_port, self.http_port = free_port(), free_port()
        config = {
            "Name": "triage-test",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"),
            "DicomAet": "ORTHANC",
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "Plugins": [],
            "HttpServerEnabled": True,
        }
        path = folder / "orthanc.json"
        path.write_text(json.dumps(config))
        self.process = subprocess.Popen(
            [program, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("Orthanc did not start")

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def seg_uids(self) -> list[str]:
        uids = []
        for instance in self.get("/instances"):
            tags = self.get(f"/instances/{instance}/simplified-tags")
            if tags.get("Modality") == "SEG":
                uids.append(tags["SOPInstanceUID"])
        return uids

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def dcmsend(program: str, port: int, folder) -> None:
    done = subprocess.run(
        [
            program,
            "-aec",
            "TRIAGE",
            "--decompress-never",
            "+sd",
            "+r",
            "+sp",
            "*.dcm",
            "127.0.0.1",
            str(port),
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def wait_settled(service: Service, studies: int, timeout: float = 180) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with service.sessions() as session:
            rows = worklist(session)
        finished = all(r["state"] in ("positive", "negative", "not_analysed") for r in rows)
        delivered = all(e["state"] == "sent" for r in rows for e in r["exports"])
        if len(rows) == studies and finished and delivered:
            return rows
        time.sleep(0.25)
    raise AssertionError(f"not settled in time: {rows}")


def test_orthanc_receives_exactly_one_valid_seg_per_positive_image(tmp_path, require_tool):
    orthanc = Orthanc(require_tool("Orthanc"), tmp_path)
    sender = require_tool("dcmsend")
    require_tool("dciodvfy")
    service = Service(
        ServiceSettings(
            data_dir=tmp_path / "data",
            listener=ListenerSettings(port=0),
            destinations=(f"ORTHANC@127.0.0.1:{orthanc.dicom_port}",),
            stable_age=2.0,
            device="cpu",
        )
    ).start()
    try:
        write_studies(tmp_path / "in", studies=3, seed=1234, prevalence=0.7, sizes=(512, 1200))
        dcmsend(sender, service.listener.port, tmp_path / "in")
        rows = wait_settled(service, 3)
        expected = sorted(uid for r in rows for uid in r["seg_sop_instance_uids"])
        assert expected, "at least one positive image among the phantoms"
        assert sorted(orthanc.seg_uids()) == expected

        dcmsend(sender, service.listener.port, tmp_path / "in")  # the same studies again
        time.sleep(0.1)
        rows = wait_settled(service, 3)
        assert sorted(orthanc.seg_uids()) == expected  # still one SEG each
        with service.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Job)) == 3  # one job each
        for row in rows:
            for path in (tmp_path / "data" / "outbox" / row["study_instance_uid"]).glob("*.dcm"):
                assert dciodvfy(path).errors == ()
    finally:
        service.stop()
        orthanc.stop()
