"""Service speed, each figure beside a reference measured in the same run.

(a) ingest: images per second stored by our listener (fsync + database commit per image)
    against dcmtk's ``storescp`` receiving the same files from the same ``dcmsend``;
(b) end-to-end latency, last image acknowledged -> SEG received by a PACS stand-in, p50
    and p95, at a steady rate of one study per second;
(c) worker throughput in studies per second with the queue full.

    python -m benchmarks.service [--images 200] [--seconds 120] [--queue 40]

dcmtk tools run with TCP_NODELAY=1: without it each C-STORE waits about 44 ms for
Nagle and delayed ACK and dcmtk looks many times slower than it is.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from service.db.engine import make_engine, make_sessionmaker, sqlite_url
from service.db.migrate import upgrade
from service.db.models import utcnow
from service.demo import PacsStandIn, send_study
from service.listener import Listener, ListenerSettings
from service.scheduler import settle_studies
from service.serve import Service, ServiceSettings
from service.worker import Worker
from training.phantom_data import phantom_radiograph
from triage.cascade import Cascade
from triage.models.package import default_package_path, load_package

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_files(folder: Path, count: int) -> list[Path]:
    """``count`` images of about 1 MB (one phantom, new UIDs per copy)."""
    _, _, ds = phantom_radiograph(11, 0, prevalence=0.0, sizes=(724, 724))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.{index + 1}"
        ds.StudyInstanceUID = f"1.2.826.0.2.{index // 2 + 1}"
        path = folder / f"{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def dcmsend_seconds(port: int, folder: Path, aet: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        ["dcmsend", "-aec", aet, "+sd", "+sp", "*.dcm", "127.0.0.1", str(port), str(folder)],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    return time.perf_counter() - started


def wait_for_echo(port: int, aet: str) -> None:
    for _ in range(200):
        if (
            subprocess.run(
                ["echoscu", "-aec", aet, "127.0.0.1", str(port)], env=DCMTK_ENV, capture_output=True
            ).returncode
            == 0
        ):
            return
        time.sleep(0.05)
    raise RuntimeError("peer did not start")


def ingest(tmp: Path, images: int) -> None:
    files = make_files(tmp / "files", images)
    port = free_port()
    out = tmp / "storescp"
    out.mkdir()
    process = subprocess.Popen(
        ["storescp", "-aet", "STORESCP", "-od", str(out), str(port)],
        env=DCMTK_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_echo(port, "STORESCP")
        reference = dcmsend_seconds(port, files[0].parent, "STORESCP")
    finally:
        process.terminate()
        process.wait()
    plain = _plain_pynetdicom_seconds(files[0].parent)
    engine = make_engine(sqlite_url(tmp / "ingest.db"))
    upgrade(engine)
    listener = Listener(ListenerSettings(port=0), tmp / "data", make_sessionmaker(engine)).start()
    try:
        ours = dcmsend_seconds(listener.port, files[0].parent, "TRIAGE")
    finally:
        listener.stop()
        engine.dispose()
    size = files[0].stat().st_size / 1e6
    print(f"(a) ingest of {images} images of {size:.1f} MB from dcmsend:")
    print(f"    dcmtk storescp {images / reference:7.1f} images/s (reference)")
    print(
        f"    plain pynetdicom SCP {images / plain:7.1f} images/s (writes nothing: the "
        "library's own ceiling)"
    )
    print(f"    our listener   {images / ours:7.1f} images/s (fsync + rename + SQLite commit)")
    print(f"    ratio {reference / ours:.2f}x of storescp's rate (target >= 0.7)")


def _plain_pynetdicom_seconds(folder: Path) -> float:
    """dcmsend into a pynetdicom storage SCP that acknowledges and stores nothing."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        DigitalXRayImageStorageForPresentation,
        Verification,
    )

    ae = AE(ae_title="PLAIN")
    ae.add_supported_context(Verification)
    ae.add_supported_context(DigitalXRayImageStorageForPresentation, ALL_TRANSFER_SYNTAXES)
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)]
    )
    assert server is not None
    try:
        return dcmsend_seconds(server.server_address[1], folder, "PLAIN")
    finally:
        server.shutdown()


def latency(tmp: Path, seconds: float) -> None:
    pacs = PacsStandIn()
    service = Service(
        ServiceSettings(
            data_dir=tmp / "latency",
            listener=ListenerSettings(port=0),
            destinations=(pacs.destination,),
            device="cpu",
        )
    ).start()
    sent: dict[str, float] = {}
    try:
        studies = int(seconds)
        folder = tmp / "latency-in"
        folder.mkdir()
        start = time.monotonic()
        for index in range(studies):
            _, _, ds = phantom_radiograph(21, index, prevalence=0.5, sizes=(1024, 2048))
            path = folder / f"{index}.dcm"
            ds.save_as(path, enforce_file_format=True)
            delay = start + index - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent[str(ds.StudyInstanceUID)] = send_study(service.listener.port, [path])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _pending(service):
            time.sleep(0.2)
    finally:
        service.stop()
        pacs.stop()
    arrivals = {study: at for study, at in pacs.arrivals.values()}
    waits = sorted(arrivals[s] - sent[s] for s in arrivals if s in sent)
    if not waits:
        print("(b) no SEG arrived")
        return
    p50, p95 = np.percentile(waits, [50, 95])
    print(
        f"(b) {len(sent)} studies at 1 per second, {len(waits)} with a SEG: last image "
        f"acknowledged -> SEG at PACS p50 {p50:.2f} s, p95 {p95:.2f} s, max {max(waits):.2f} s "
        f"(target p95 <= 2 s; mean {statistics.mean(waits):.2f} s)"
    )


def _pending(service: Service) -> bool:
    from service.worklist import worklist

    with service.sessions() as session:
        rows = worklist(session)
    return any(r["state"] in ("receiving", "queued", "processing") for r in rows) or any(
        e["state"] in ("pending", "failed") for r in rows for e in r["exports"]
    )


def throughput(tmp: Path, studies: int) -> None:
    engine = make_engine(sqlite_url(tmp / "queue.db"))
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    listener = Listener(ListenerSettings(port=0), tmp / "queue", sessions).start()
    folder = tmp / "queue-in"
    folder.mkdir()
    try:
        for index in range(studies):
            _, _, ds = phantom_radiograph(31, index, prevalence=0.2, sizes=(1024, 2048))
            path = folder / f"{index}.dcm"
            ds.save_as(path, enforce_file_format=True)
            send_study(listener.port, [path])
    finally:
        listener.stop()
    cascade = Cascade(load_package(default_package_path()), device="cpu")
    worker = Worker(sessions, cascade, tmp / "queue")
    with sessions() as session:
        settle_studies(
            session,
            model_version=worker.model_version,
            stable_age=0,
            now=utcnow() + datetime.timedelta(seconds=10),
        )
        session.commit()
    started = time.perf_counter()
    done = 0
    while worker.run_once():
        done += 1
    elapsed = time.perf_counter() - started
    reference = _cascade_only(cascade, folder)
    print(
        f"(c) worker with a full queue: {done / elapsed:.2f} studies/s ({done} one-image "
        f"studies of 1024-2048 px); the cascade alone on the same files "
        f"{studies / reference:.2f} images/s (reference: no database, no SEG files)"
    )
    engine.dispose()


def _cascade_only(cascade: Cascade, folder: Path) -> float:
    from triage.dicom.read import read_radiograph

    started = time.perf_counter()
    for path in sorted(folder.glob("*.dcm")):
        cascade.run([read_radiograph(path)[1]])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="images for (a)")
    parser.add_argument("--seconds", type=float, default=120, help="duration of (b)")
    parser.add_argument("--queue", type=int, default=40, help="studies for (c)")
    args = parser.parse_args()
    if shutil.which("storescp") is None:
        raise SystemExit("dcmtk is needed: apt-get install dcmtk")
    print(f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        ingest(Path(tmp), args.images)
    with tempfile.TemporaryDirectory() as tmp:
        latency(Path(tmp), args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        throughput(Path(tmp), args.queue)


if __name__ == "__main__":
    main()
