"""``triage demo``: the whole service on one machine, with a modality and a PACS stand-in.

Starts ``triage serve`` in-process on embedded defaults (SQLite in a fresh data folder, the
bundled model package, free local ports), plays the modality by sending phantom studies
(and the real sample images when present) over C-STORE, receives the SEGs at a local
storage SCP standing in for PACS, receives the webhook messages at a local HTTP stand-in,
then prints the worklist and, per study, the time from its last image acknowledged to its
SEG received by the PACS. The worklist page is served on 127.0.0.1 (``--keep`` leaves it
running for a browser).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import shutil
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pynetdicom import AE, evt
from pynetdicom.sop_class import SegmentationStorage  # type: ignore[attr-defined]

from service.listener import ListenerSettings
from service.notify import WebhookSettings
from service.serve import Service, ServiceSettings
from service.web.access import Access
from service.worklist import format_worklist, worklist

log = logging.getLogger(__name__)

FINISHED = ("positive", "negative", "not_analysed", "dead")


class PacsStandIn:
    """A storage SCP that keeps each SEG it receives and when it arrived."""

    def __init__(self, ae_title: str = "PACS", folder: Path | None = None) -> None:
        self.ae_title = ae_title
        self.folder = folder
        self.arrivals: dict[str, tuple[str, float]] = {}  # SEG SOP UID -> (study, time)
        self.deliveries = 0  # C-STOREs received, duplicates included
        self._lock = threading.Lock()
        ae = AE(ae_title=ae_title)
        ae.add_supported_context(SegmentationStorage)
        server = ae.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )
        assert server is not None  # a non-blocking start returns its server
        self.server = server
        self.port = int(self.server.server_address[1])

    @property
    def destination(self) -> str:
        """This SCP as ``AET@HOST:PORT``."""
        return f"{self.ae_title}@127.0.0.1:{self.port}"

    def _store(self, event: evt.Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            ds.save_as(self.folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
        with self._lock:
            self.deliveries += 1
            self.arrivals.setdefault(
                str(ds.SOPInstanceUID), (str(ds.StudyInstanceUID), time.monotonic())
            )
        return 0x0000

    def stop(self) -> None:
        """Close the server."""
        self.server.shutdown()


def send_study(port: int, paths: Iterable[Path], calling_ae: str = "MODALITY") -> float:
    """C-STORE ``paths`` in one association; returns when the last was acknowledged."""
    datasets = [pydicom.dcmread(p) for p in paths]
    ae = AE(ae_title=calling_ae)
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    if not assoc.is_established:
        raise RuntimeError(f"the listener on port {port} refused the association")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if getattr(status, "Status", None) != 0:
                raise RuntimeError(f"C-STORE of {ds.SOPInstanceUID} failed: {status}")
    finally:
        assoc.release()
    return time.monotonic()


def demo_studies(folder: Path, shared_real: Path | None) -> dict[str, list[Path]]:
    """Phantom studies plus the real sample images, grouped by study."""
    from training.phantoms import write_studies

    studies: dict[str, list[Path]] = {}
    for image in write_studies(folder, studies=6, seed=4242, prevalence=0.5, sizes=(512, 2048)):
        studies.setdefault(image.study_instance_uid, []).append(image.path)
    extra = sorted(shared_real.glob("*.dcm")) if shared_real and shared_real.is_dir() else []
    try:
        from pydicom.data import get_testdata_file

        extra += [Path(str(get_testdata_file(n))) for n in ("RG1_UNCR.dcm", "RG3_J2KR.dcm")]
    except (ImportError, ValueError, TypeError):
        pass
    for path in extra:
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
        studies.setdefault(uid, []).append(path)
    return studies


class WebhookStandIn:
    """An HTTP server on loopback that keeps every JSON message POSTed to it."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        messages = self.messages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                messages.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        """Where to POST."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def _service(out: Path, pacs: PacsStandIn, hook: WebhookStandIn, web_port: int) -> Service:
    def settings(port: int) -> ServiceSettings:
        return ServiceSettings(
            data_dir=out / "data",
            listener=ListenerSettings(port=0),
            destinations=(pacs.destination,),
            stable_age=5.0,
            access=Access(host="127.0.0.1"),
            web_port=port,
            webhooks=WebhookSettings(urls=(hook.url,), page_url=f"http://127.0.0.1:{port}"),
        )

    try:
        return Service(settings(web_port))
    except OSError:  # the port is taken: any free one will do for a demo
        print(f"port {web_port} is busy; the worklist page gets a free port instead")
        return Service(settings(0))


def run_demo(
    out: Path,
    *,
    shared_real: Path | None,
    keep: bool,
    timeout: float = 300.0,
    web_port: int = 8080,
) -> int:
    """Run the demo; returns a process exit status."""
    if out.exists():
        shutil.rmtree(out)
    pacs = PacsStandIn(folder=out / "pacs")
    hook = WebhookStandIn()
    service = _service(out, pacs, hook, web_port).start()
    assert service.web is not None
    print(
        f"triage serve listening as TRIAGE on 127.0.0.1:{service.listener.port}; "
        f"PACS stand-in {pacs.destination}; data in {out / 'data'}\n"
        f"worklist page: {service.web.url}"
    )
    try:
        studies = demo_studies(out / "modality", shared_real)
        sent_at = {}
        for uid, paths in studies.items():
            sent_at[uid] = send_study(service.listener.port, paths)
        print(f"sent {sum(map(len, studies.values()))} images in {len(studies)} studies")
        rows = _wait(service, len(studies), timeout)
        print()
        print(format_worklist(rows))
        print()
        _print_latencies(rows, sent_at, pacs)
        notified = _wait_notified(hook, rows, timeout=30.0)
        print(f"webhook: {len(hook.messages)} message(s) for {notified} positive study(ies)")
        if keep:
            print(
                f"\n--keep: still serving; open {service.web.url} in a browser, "
                "press Ctrl-C to stop"
            )
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
    finally:
        service.stop()
        pacs.stop()
        hook.stop()
    return 0 if all(r["state"] in FINISHED for r in rows) else 1


def _wait_notified(hook: WebhookStandIn, rows: list[dict], timeout: float) -> int:
    """Wait until every positive study's webhook message arrived; returns how many should."""
    expected = sum(1 for r in rows if r["state"] == "positive" and r["priority"] >= 50.0)
    deadline = time.monotonic() + timeout
    while len(hook.messages) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return expected


def _wait(service: Service, count: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        with service.sessions() as session:
            rows = worklist(session)
        done = len(rows) == count and all(r["state"] in FINISHED for r in rows)
        sent = all(e["state"] in ("sent", "dead") for r in rows for e in r["exports"])
        if (done and sent) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def _print_latencies(rows: list[dict], sent_at: dict[str, float], pacs: PacsStandIn) -> None:
    arrivals: dict[str, float] = {}
    for study, at in pacs.arrivals.values():
        arrivals[study] = max(at, arrivals.get(study, 0.0))
    print("study                      state         last image acknowledged -> SEG at PACS")
    for row in rows:
        uid = row["study_instance_uid"]
        seconds = arrivals.get(uid)
        shown = "" if seconds is None else f"{seconds - sent_at[uid]:.1f} s"
        if seconds is None and row["state"] == "positive":
            shown = "SEG not delivered"
        print(f"…{uid[-25:]:25s}  {row['state']:12s}  {shown}")
    print(
        f"\n{len(pacs.arrivals)} SEG(s) received by the PACS stand-in "
        "(each phantom-trained result says NOT FOR CLINICAL USE)"
    )
