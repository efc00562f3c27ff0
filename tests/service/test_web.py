"""The web page and its API on a real uvicorn server, over studies the worker analysed."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from sqlalchemy import select

from service.db.engine import make_engine, make_sessionmaker, sqlite_url
from service.db.migrate import upgrade
from service.db.models import AuditEvent, Feedback, Study
from service.web.access import Access, AccessError, hash_password, verify_password
from service.web.server import WebServer
from service.worker import Worker
from service.worklist import FIELDS
from tests.service.test_worker import receive, settle_and_work
from training.phantoms import write_studies
from triage.cascade import Cascade
from triage.models.package import default_package_path, load_package
from triage.overlay import OUTLINE


class World:
    """Analysed studies in a data folder, and a web server over them."""

    def __init__(self, tmp_path, *, positives: int = 2, negatives: int = 1) -> None:
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir(parents=True)
        self.engine = make_engine(sqlite_url(self.data_dir / "triage.db"))
        upgrade(self.engine)
        self.sessions = make_sessionmaker(self.engine)
        positives = write_studies(
            tmp_path / "pos", studies=positives, seed=2024, prevalence=1.0, sizes=(512, 700)
        )
        negatives = write_studies(
            tmp_path / "neg", studies=negatives, seed=77, prevalence=0.0, sizes=(512, 700)
        )
        self.images = positives + negatives
        receive(tmp_path, self.sessions, [i.path for i in self.images])
        cascade = Cascade(load_package(default_package_path()), device="cpu")
        worker = Worker(self.sessions, cascade, self.data_dir, destinations=())
        settle_and_work(self.sessions, worker)

    def server(self, access: Access) -> WebServer:
        return WebServer(sessions=self.sessions, data_dir=self.data_dir, access=access, port=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = World(tmp_path_factory.mktemp("web"))
    yield world
    world.engine.dispose()


@pytest.fixture(scope="module")
def web(world):
    server = world.server(Access()).start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
    server.stop()


def positive_uid(client: httpx.Client) -> str:
    rows = client.get("/api/worklist", params={"state": "positive"}).json()
    assert rows, "the bundled package found no pneumothorax in the positive phantoms"
    return rows[0]["study_instance_uid"]


def test_probes_metrics_and_openapi(web):
    assert web.get("/healthz").json()["status"] == "ok"
    metrics = web.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'triage_latency_seconds_bucket{stage="result",le="+Inf"} 3' in text
    assert 'triage_studies{state="positive"}' in text
    assert "triage_job_duration_seconds_count 3" in text
    assert "triage_instances_received_total" in text
    paths = web.get("/openapi.json").json()["paths"]
    for path in ("/api/worklist", "/api/studies/{uid}", "/api/studies/{uid}/feedback"):
        assert path in paths


def test_worklist_json_is_in_priority_order_with_every_field(web):
    rows = web.get("/api/worklist").json()
    assert len(rows) == 3
    assert [r["priority"] for r in rows] == sorted((r["priority"] for r in rows), reverse=True)
    assert all(set(FIELDS) <= set(r) for r in rows)
    positive = [r for r in rows if r["state"] == "positive"]
    assert positive and all(0 < r["hemithorax_percent"] <= 100 for r in positive)
    assert all(r["model_version"].startswith("ptx-") for r in rows)
    only = web.get("/api/worklist", params={"state": "negative"}).json()
    assert only and {r["state"] for r in only} == {"negative"}


def test_worklist_page_lists_the_studies_in_order(web):
    page = web.get("/").text
    rows = web.get("/api/worklist").json()
    positions = [page.index(r["study_instance_uid"]) for r in rows]
    assert positions == sorted(positions)
    assert "NOT FOR CLINICAL USE" in page and "/static/worklist.js" in page
    assert "setInterval" in web.get("/static/worklist.js").text


def test_study_page_json_and_overlay_picture(web, world):
    uid = positive_uid(web)
    detail = web.get(f"/api/studies/{uid}").json()
    assert detail["timeline"]["analysed"] and detail["timeline"]["settled"]
    image = next(i for i in detail["images"] if i["positive"])
    assert image["seg_sop_instance_uid"]
    page = web.get(f"/studies/{uid}").text
    assert image["seg_sop_instance_uid"] in page
    picture = web.get(f"/studies/{uid}/images/{image['sop_instance_uid']}.png")
    assert picture.headers["content-type"] == "image/png"
    rgb = np.asarray(Image.open(io.BytesIO(picture.content)).convert("RGB"))
    assert max(rgb.shape[:2]) <= 1024
    assert (rgb == OUTLINE).all(axis=2).sum() > 20  # the outline is drawn
    negative = web.get("/api/worklist", params={"state": "negative"}).json()[0]
    sop = web.get(f"/api/studies/{negative['study_instance_uid']}").json()["images"][0]
    plain = web.get(
        f"/studies/{negative['study_instance_uid']}/images/{sop['sop_instance_uid']}.png"
    )
    rgb = np.asarray(Image.open(io.BytesIO(plain.content)).convert("RGB"))
    assert (rgb == OUTLINE).all(axis=2).sum() == 0
    assert web.get(f"/studies/{uid}/images/1.2.3.png").status_code == 404
    assert web.get("/api/studies/1.2.3").status_code == 404
    with world.sessions() as session:
        views = session.scalars(select(AuditEvent).where(AuditEvent.kind == "study_viewed")).all()
    assert {v.study_instance_uid for v in views} >= {uid}
    assert all(v.actor == "local" for v in views)


def test_feedback_needs_the_csrf_token_and_is_recorded(web, world):
    uid = positive_uid(web)
    token = web.get("/api/session").json()["csrf_token"]
    url = f"/api/studies/{uid}/feedback"
    assert web.post(url, json={"kind": "agree"}).status_code == 403
    assert (
        web.post(url, json={"kind": "agree"}, headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    )
    bad = web.post(url, json={"kind": "maybe"}, headers={"X-CSRF-Token": token})
    assert bad.status_code == 422 and "unknown verdict" in bad.json()["detail"]
    done = web.post(
        url, json={"kind": "agree", "comment": "clear"}, headers={"X-CSRF-Token": token}
    )
    assert done.status_code == 201 and done.json()["reader"] == "local"
    form = web.post(
        f"/studies/{uid}/feedback",
        data={"kind": "wrong_extent", "csrf_token": token},
        follow_redirects=False,
    )
    assert form.status_code == 303
    assert web.post(f"/studies/{uid}/feedback", data={"kind": "agree"}).status_code == 403
    row = next(r for r in web.get("/api/worklist").json() if r["study_instance_uid"] == uid)
    assert row["feedback"] == "wrong_extent"
    history = web.get(f"/api/studies/{uid}").json()["feedback_history"]
    assert [f["kind"] for f in history] == ["agree", "wrong_extent"]
    assert history[0]["comment"] == "clear" and history[0]["model_version"]
    listed = web.get("/api/feedback").json()
    assert [(f["study_instance_uid"], f["feedback"]) for f in listed] == [(uid, "wrong_extent")]
    kept = world.data_dir / "feedback" / uid
    assert list((kept / "images").glob("*.dcm")) and list((kept / "ours").glob("*.dcm"))


def test_a_reader_sets_a_priority_that_analysis_keeps(web, world):
    negative = web.get("/api/worklist", params={"state": "negative"}).json()[0]
    uid = negative["study_instance_uid"]
    token = web.get("/api/session").json()["csrf_token"]
    url = f"/api/studies/{uid}/priority"
    assert web.post(url, json={"priority": 95}).status_code == 403
    assert web.post(url, json={"priority": 150}, headers={"X-CSRF-Token": token}).status_code == 422
    assert web.post(url, json={"priority": 95}, headers={"X-CSRF-Token": token}).status_code == 200
    top = web.get("/api/worklist").json()[0]
    assert top["study_instance_uid"] == uid and top["priority"] == 95.0
    assert top["priority_set_by_human"] is True
    form = web.post(
        f"/studies/{uid}/priority", data={"priority": "90", "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert form.status_code == 303 and "(set by a reader)" in web.get(f"/studies/{uid}").text
    with world.sessions() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.kind == "priority_set")).all()
    assert [e.detail for e in events] == ["0.0 -> 95.0", "95.0 -> 90.0"]


def test_non_loopback_without_login_is_refused():
    with pytest.raises(AccessError, match=r"refusing to serve the worklist on 0\.0\.0\.0"):
        Access(host="0.0.0.0")
    with pytest.raises(AccessError, match="hash-password"):
        Access(host="0.0.0.0", users={"ann": "secret"})
    Access(host="0.0.0.0", proxy_header="X-Remote-User")  # a proxy logs readers in


def test_password_hashes_round_trip():
    stored = hash_password("correct horse", iterations=1000)
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong", stored) and not verify_password("x", "garbage")


def test_users_must_log_in(world):
    access = Access(host="127.0.0.1", users={"ann": hash_password("pw", iterations=1000)})
    server = world.server(access).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            refused = client.get("/api/worklist")
            assert refused.status_code == 401 and "Basic" in refused.headers["www-authenticate"]
            assert client.get("/api/worklist", auth=("ann", "nope")).status_code == 401
            assert client.get("/api/worklist", auth=("ann", "pw")).status_code == 200
            session = client.get("/api/session", auth=("ann", "pw")).json()
            assert session["reader"] == "ann" and session["mode"] == "users"
            assert client.get("/healthz").status_code == 200  # probes need no login
    finally:
        server.stop()


def test_trusted_proxy_header_names_the_reader(world):
    server = world.server(Access(host="127.0.0.1", proxy_header="X-Remote-User")).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/api/session").status_code == 401
            reply = client.get("/api/session", headers={"X-Remote-User": "dr.bea"})
            assert reply.json()["reader"] == "dr.bea"
    finally:
        server.stop()


def test_cli_refuses_a_public_bind_without_users(tmp_path, capsys):
    from service.cli import main

    assert main(["web", "--data-dir", str(tmp_path), "--web-host", "0.0.0.0"]) == 2
    assert "refusing to serve the worklist on 0.0.0.0 without a login" in capsys.readouterr().err


def test_train_on_feedback_needs_the_data_folder(tmp_path, capsys):
    from service.cli import main

    assert main(["train", "--dataset", "feedback", "--out", str(tmp_path / "p")]) == 2
    assert "--dataset feedback needs --data-dir" in capsys.readouterr().err
    assert main(["feedback-export", "--data-dir", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "no service database" in capsys.readouterr().err


def test_hash_password_command_reads_stdin(monkeypatch, capsys):
    from service.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    assert main(["hash-password"]) == 0
    assert verify_password("s3cret", capsys.readouterr().out.strip())


def test_a_corrected_seg_sent_by_c_store_becomes_feedback(world, tmp_path):
    from pynetdicom import AE
    from pynetdicom.sop_class import SegmentationStorage

    from service.listener import Listener, ListenerSettings
    from service.worklist import study_detail

    with world.sessions() as session:
        uid = next(
            s.study_instance_uid
            for s in session.scalars(select(Study).where(Study.state == "positive"))
        )
        detail = study_detail(session, uid)
        studies_before = len(session.scalars(select(Study)).all())
    seg_path = next(world.data_dir.glob(f"outbox/{uid}/*.dcm"))
    ours = pydicom.dcmread(seg_path)
    corrected = pydicom.dcmread(seg_path)
    corrected.SOPInstanceUID = corrected.file_meta.MediaStorageSOPInstanceUID = "2.25.4242"
    corrected.SeriesInstanceUID = "2.25.4243"
    stranger = pydicom.dcmread(seg_path)
    stranger.SOPInstanceUID = stranger.file_meta.MediaStorageSOPInstanceUID = "2.25.4244"
    for item in stranger.ReferencedSeriesSequence:
        for ref in item.ReferencedInstanceSequence:
            ref.ReferencedSOPInstanceUID = "2.25.999"
    for frame in stranger.PerFrameFunctionalGroupsSequence:
        for derivation in frame.DerivationImageSequence:
            for source in derivation.SourceImageSequence:
                source.ReferencedSOPInstanceUID = "2.25.999"
    listener = Listener(ListenerSettings(port=0), world.data_dir, world.sessions).start()
    try:
        ae = AE(ae_title="SLICER")
        ae.add_requested_context(SegmentationStorage, ours.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", listener.port, ae_title="TRIAGE")
        assert assoc.send_c_store(ours).Status == 0  # our own SEG echoed back: ignored
        assert assoc.send_c_store(corrected).Status == 0
        assert assoc.send_c_store(corrected).Status == 0  # twice: recorded once
        assert assoc.send_c_store(stranger).Status == 0xC000  # an image we never had
        assoc.release()
    finally:
        listener.stop()
    with world.sessions() as session:
        rows = session.scalars(select(Feedback).where(Feedback.kind == "corrected")).all()
        assert len(session.scalars(select(Study)).all()) == studies_before
    assert len(rows) == 1 and rows[0].reader == "SLICER"
    assert rows[0].sop_instance_uid in {i["sop_instance_uid"] for i in detail["images"]}
    assert pydicom.dcmread(rows[0].seg_path).SOPInstanceUID == "2.25.4242"

    from service.feedback import export_training_set
    from training.datasets import DicomSegDataset

    with world.sessions() as session:
        summary = export_training_set(session, world.data_dir, tmp_path / "export")
    samples = list(DicomSegDataset(root=tmp_path / "export", images_without_seg_are_negative=True))
    assert summary.with_mask >= 1 and len(samples) == summary.images
    assert any(s.positive for s in samples)


def test_basic_auth_header_parsing_is_strict():
    access = Access(users={"ann": hash_password("pw", iterations=1000)})
    good = "Basic " + base64.b64encode(b"ann:pw").decode()
    assert access.reader({"authorization": good}) == "ann"
    assert access.reader({"authorization": "Basic !!!"}) is None
    assert access.reader({"authorization": "Bearer x"}) is None
    assert access.csrf_ok("ann", access.csrf_token("ann"))
    assert not access.csrf_ok("bob", access.csrf_token("ann"))


@pytest.mark.slow
def test_confirmed_cases_train_a_package(tmp_path):
    """Readers agree with every result; `triage train --dataset feedback` learns from them."""
    import json

    from service.cli import main
    from service.feedback import record_verdict

    world = World(tmp_path / "w", positives=4, negatives=2)
    with world.sessions() as session:
        for study in session.scalars(select(Study)).all():
            record_verdict(
                session, world.data_dir, study_instance_uid=study.study_instance_uid,
                kind="agree", reader="dr.test",
            )  # fmt: skip
        session.commit()
    out = tmp_path / "pkg"
    code = main([
        "train", "--dataset", "feedback", "--data-dir", str(world.data_dir), "--folds", "2",
        "--epochs", "1", "--no-baseline", "--out", str(out), "--device", "cpu",
    ])  # fmt: skip
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    training = manifest["training"]
    assert training["dataset"] == "dicom-seg" and training["synthetic"] is True
    exported = list((tmp_path / "pkg-feedback-data").rglob("*.dcm"))
    segs = [p for p in exported if p.name.startswith("seg-")]
    assert training["images"] == len(exported) - len(segs) >= 6  # every analysed image
    assert training["positives"] == len(segs) > 0

    # Retention empties the inbox but first keeps a labelled study's files.
    import datetime
    import shutil

    from service.scheduler import purge_finished

    uid = next(p.name for p in (world.data_dir / "feedback").iterdir())
    shutil.rmtree(world.data_dir / "feedback" / uid)
    with world.sessions() as session:
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        assert purge_finished(session, data_dir=world.data_dir, retention=0, now=later) == 6
    world.engine.dispose()
    assert not (world.data_dir / "inbox" / uid).exists()
    assert list((world.data_dir / "feedback" / uid / "images").glob("*.dcm"))
