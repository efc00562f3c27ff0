"""Run the web app with uvicorn in a background thread (inside ``triage serve``) or in the
foreground (``triage web``)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import uvicorn
from sqlalchemy.orm import Session, sessionmaker

from service.web.access import Access
from service.web.app import create_app

log = logging.getLogger(__name__)


class WebServer:
    """The worklist web server; ``start`` returns once it accepts connections."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        data_dir: Path,
        access: Access,
        port: int = 8080,
    ) -> None:
        self.access = access
        self._socket = socket.socket(
            socket.AF_INET6 if ":" in access.host else socket.AF_INET, socket.SOCK_STREAM
        )
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((access.host, port))  # bound now: a busy port fails at start-up
        app = create_app(sessions=sessions, data_dir=data_dir, access=access)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """The page's address."""
        host = f"[{self.access.host}]" if ":" in self.access.host else self.access.host
        return f"http://{host}:{self.port}/"

    def start(self, timeout: float = 15.0) -> WebServer:
        """Serve in a background thread; wait until it is up."""
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True, name="web"
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not start on {self.url}")
            time.sleep(0.02)
        log.info("worklist page on %s (%s access)", self.url, self.access.mode)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()
