"""`triage serve` end to end: a modality sends, the PACS stand-in receives one SEG."""

from __future__ import annotations

import time

from pynetdicom import AE

from service.demo import PacsStandIn
from service.listener import ListenerSettings
from service.serve import Service, ServiceSettings
from service.worklist import format_worklist, worklist
from tests.service.test_worker import send_files
from training.phantoms import write_studies


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_studies_flow_from_modality_to_pacs(tmp_path):
    pacs = PacsStandIn()
    settings = ServiceSettings(
        data_dir=tmp_path / "data",
        listener=ListenerSettings(port=0),
        destinations=(f"PACS@127.0.0.1:{pacs.port}",),
        stable_age=1.0,
        device="cpu",
    )
    service = Service(settings).start()
    try:
        images = write_studies(
            tmp_path / "in", studies=2, seed=4242, prevalence=1.0, sizes=(512, 900)
        )
        send_files(service.listener.port, [i.path for i in images])

        def finished() -> bool:
            with service.sessions() as session:
                rows = worklist(session)
            done = all(r["state"] in ("positive", "negative", "not_analysed") for r in rows)
            sent = all(e["state"] == "sent" for r in rows for e in r["exports"])
            return len(rows) == 2 and done and sent

        wait_for(finished)
        with service.sessions() as session:
            rows = worklist(session)
    finally:
        service.stop()
        pacs.stop()
    positives = [r for r in rows if r["state"] == "positive"]
    assert positives, format_worklist(rows)
    assert [r["priority"] for r in rows] == sorted((r["priority"] for r in rows), reverse=True)
    expected = {uid for r in rows for uid in r["seg_sop_instance_uids"]}
    assert set(pacs.arrivals) == expected  # every SEG arrived
    assert pacs.deliveries == len(expected)  # and each once


def test_demo_runs_end_to_end(tmp_path, capsys):
    from service.demo import run_demo

    assert run_demo(tmp_path / "demo", shared_real=None, keep=False, web_port=0) == 0
    out = capsys.readouterr().out
    assert "positive" in out and "SEG(s) received by the PACS stand-in" in out
    assert "SEG not delivered" not in out
    assert list((tmp_path / "demo" / "pacs").glob("*.dcm"))
    import re

    sent, positives = map(int, re.search(r"webhook: (\d+) message\(s\) for (\d+)", out).groups())
    assert sent == positives > 0  # once per positive study


def test_serve_process_stops_cleanly_on_sigterm(tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys

    from pynetdicom.sop_class import Verification

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    port, web_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--port",
            str(port),
            "--web-port",
            str(web_port),
            "--device",
            "cpu",
        ],
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def answers() -> bool:
            ae = AE(ae_title="PROBE")
            ae.add_requested_context(Verification)
            assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
            if not assoc.is_established:
                return False
            ok = assoc.send_c_echo().Status == 0
            assoc.release()
            return ok

        wait_for(answers, timeout=60)
        assert (tmp_path / "d" / "heartbeat").is_file()
        import json
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/healthz", timeout=10) as reply:
            assert json.load(reply)["status"] == "ok"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_service_on_postgresql_and_the_worklist_command(tmp_path, postgres_url, capsys):
    """Listener, worker and the worklist command on a shared PostgreSQL database."""
    import json

    from service.cli import main

    settings = ServiceSettings(
        data_dir=tmp_path / "data",
        listener=ListenerSettings(port=0),
        stable_age=1.0,
        device="cpu",
        database_url=postgres_url,
    )
    service = Service(settings).start()
    try:
        images = write_studies(tmp_path / "in", studies=1, seed=99, prevalence=1.0)
        send_files(service.listener.port, [i.path for i in images])

        def finished() -> bool:
            with service.sessions() as session:
                rows = worklist(session)
            return len(rows) == 1 and rows[0]["state"] in ("positive", "negative")

        wait_for(finished)
    finally:
        service.stop()
    assert not (tmp_path / "data" / "triage.db").exists()  # nothing went to SQLite
    code = main(["worklist", "--database-url", postgres_url, "--json", "--data-dir", "x"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["study_instance_uid"] for r in rows] == [images[0].study_instance_uid]
