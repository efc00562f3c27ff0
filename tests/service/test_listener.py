"""The listener with real associations: pynetdicom and dcmtk as peers."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless
from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation, Verification
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from service.db.models import Instance, Study, StudyState
from service.listener import Listener, ListenerSettings, Status
from tests.factory import make_dataset, write


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def listener(data_dir, sessions):
    running = Listener(ListenerSettings(port=0), data_dir, sessions).start()
    yield running
    running.stop()


def send(port: int, datasets, calling: str = "MODALITY") -> list[int]:
    ae = AE(ae_title=calling)
    ae.add_requested_context(
        DigitalXRayImageStorageForPresentation,
        [str(ds.file_meta.TransferSyntaxUID) for ds in datasets][:1],
    )
    assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def count(sessions, model) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_store_is_durable_and_recorded(listener, data_dir, sessions):
    ds = make_dataset(rows=64, columns=64, AccessionNumber="ACC1")
    assert send(listener.port, [ds]) == [Status.SUCCESS]
    path = data_dir / "inbox" / ds.StudyInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    assert path.is_file()
    assert pydicom.dcmread(path).SOPInstanceUID == ds.SOPInstanceUID
    with sessions() as session:
        instance = session.scalars(select(Instance)).one()
        study = session.scalars(select(Study)).one()
    assert instance.path == str(path) and instance.calling_ae == "MODALITY"
    assert study.state == StudyState.RECEIVING and study.accession_number == "ACC1"
    assert not list((data_dir / "inbox").rglob("*.tmp"))


def test_same_instance_twice_is_stored_once(listener, sessions):
    ds = make_dataset(rows=64, columns=64)
    assert send(listener.port, [ds, ds]) == [Status.SUCCESS, Status.SUCCESS]
    assert send(listener.port, [ds]) == [Status.SUCCESS]
    assert count(sessions, Instance) == 1


def test_malformed_uid_is_refused_and_nothing_written(listener, data_dir, sessions):
    ds = make_dataset(rows=64, columns=64)
    ds.StudyInstanceUID = "1.2.3/../../etc"
    assert send(listener.port, [ds]) == [Status.CANNOT_UNDERSTAND]
    assert count(sessions, Instance) == 0
    assert not list((data_dir / "inbox").rglob("*.dcm"))


def test_database_failure_answers_a700_and_leaves_no_file(
    listener, data_dir, sessions, monkeypatch
):
    def broken(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(listener.handler, "_record", broken)
    ds = make_dataset(rows=64, columns=64)
    assert send(listener.port, [ds]) == [Status.OUT_OF_RESOURCES]
    assert not list((data_dir / "inbox").rglob("*.dcm"))
    assert not list((data_dir / "inbox").rglob("*.tmp"))
    monkeypatch.undo()
    assert send(listener.port, [ds]) == [Status.SUCCESS]  # and the listener still serves


def test_concurrent_senders_lose_nothing(listener, sessions):
    batches = [[make_dataset(rows=32, columns=32) for _ in range(5)] for _ in range(10)]
    statuses: list[int] = []
    lock = threading.Lock()

    def sender(batch):
        result = send(listener.port, batch)
        with lock:
            statuses.extend(result)

    threads = [threading.Thread(target=sender, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [Status.SUCCESS] * 50
    assert count(sessions, Instance) == 50


def test_calling_ae_not_on_the_allow_list_is_rejected(data_dir, sessions):
    settings = ListenerSettings(port=0, allowed_calling_aets=("PACS",))
    running = Listener(settings, data_dir, sessions).start()
    try:
        ae = AE(ae_title="STRANGER")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", running.port, ae_title="TRIAGE")
        assert assoc.is_rejected
        ae = AE(ae_title="PACS")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", running.port, ae_title="TRIAGE")
        assert assoc.is_established and assoc.send_c_echo().Status == 0
        assoc.release()
    finally:
        running.stop()


@pytest.mark.peers
def test_dcmtk_peers_echo_and_send_compressed(listener, tmp_path, sessions, require_tool):
    echoscu, dcmsend = require_tool("echoscu"), require_tool("dcmsend")
    env = {"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [echoscu, "-aec", "TRIAGE", "127.0.0.1", str(listener.port)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "send"
    folder.mkdir()
    sent = []
    for syntax in (RLELossless, JPEG2000Lossless):
        ds = make_dataset(rows=64, columns=96)
        ds.compress(syntax)
        sent.append(write(ds, folder / f"{ds.SOPInstanceUID}.dcm"))
    done = subprocess.run(
        [
            dcmsend,
            "-aec",
            "TRIAGE",
            "--decompress-never",
            "+sd",
            "127.0.0.1",
            str(listener.port),
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with sessions() as session:
        stored = {i.sop_instance_uid: i for i in session.scalars(select(Instance))}
    for path in sent:
        original = pydicom.dcmread(path)
        instance = stored[original.SOPInstanceUID]
        assert instance.transfer_syntax_uid == original.file_meta.TransferSyntaxUID  # as received
        assert pydicom.dcmread(instance.path).PixelData == original.PixelData


def test_storage_failure_answers_a700_and_leaves_no_file(listener, data_dir, sessions, monkeypatch):
    import service.listener as module

    real_replace = module.os.replace

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module.os, "replace", disk_full)
    ds = make_dataset(rows=64, columns=64)
    assert send(listener.port, [ds]) == [Status.OUT_OF_RESOURCES]
    assert not [p for p in (data_dir / "inbox").rglob("*") if p.is_file()]
    assert count(sessions, Instance) == 0
    monkeypatch.setattr(module.os, "replace", real_replace)
    assert send(listener.port, [ds]) == [Status.SUCCESS]


def test_calling_ae_tied_to_another_host_is_aborted(data_dir, sessions):
    settings = ListenerSettings(port=0, allowed_calling_aets=("PACS@10.9.9.9", "LOCAL@127.0.0.1"))
    running = Listener(settings, data_dir, sessions).start()
    try:
        ae = AE(ae_title="PACS")
        ae.add_requested_context(DigitalXRayImageStorageForPresentation)
        assoc = ae.associate("127.0.0.1", running.port, ae_title="TRIAGE")
        if assoc.is_established:  # aborted by us right after establishment
            with contextlib.suppress(RuntimeError):  # the abort may land first
                assoc.send_c_store(make_dataset(rows=32, columns=32))
        deadline = time.monotonic() + 10
        while assoc.is_established and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not assoc.is_established
        assert count(sessions, Instance) == 0
        ae = AE(ae_title="LOCAL")
        ae.add_requested_context(DigitalXRayImageStorageForPresentation)
        assoc = ae.associate("127.0.0.1", running.port, ae_title="TRIAGE")
        assert assoc.is_established
        assert assoc.send_c_store(make_dataset(rows=32, columns=32)).Status == 0
        assoc.release()
    finally:
        running.stop()
