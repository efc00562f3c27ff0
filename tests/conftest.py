"""Shared fixtures: external tools (peers) and the real sample data in ../shared/data."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

#: Debian package that provides each external program the tests use.
TOOL_PACKAGES = {
    "dcmcjpeg": "dcmtk",
    "dcmdjpeg": "dcmtk",
    "dcmconv": "dcmtk",
    "storescu": "dcmtk",
    "storescp": "dcmtk",
    "dcmsend": "dcmtk",
    "echoscu": "dcmtk",
    "dciodvfy": "dicom3tools",
    "Orthanc": "orthanc",
    "chromium": "chromium",
}

#: Real sample images and labels, next to the project (see ../shared/data/README.md).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def require_tool(name: str) -> str:
    """Return the path of program ``name``; skip the test, or fail it in CI, when missing.

    With ``TRIAGE_REQUIRE_PEERS=1`` (set in CI) a missing peer fails the test, so a broken
    CI image cannot pass by skipping.
    """
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if path is not None:
        return path
    package = TOOL_PACKAGES.get(name, "unknown")
    message = f"{name} not installed (Debian package {package}): apt-get install {package}"
    if os.environ.get("TRIAGE_REQUIRE_PEERS") == "1":
        pytest.fail(f"{message}; TRIAGE_REQUIRE_PEERS=1 requires it")
    pytest.skip(message)


@pytest.fixture(name="require_tool")
def require_tool_fixture() -> Callable[[str], str]:
    """The :func:`require_tool` function, for tests that need an external program."""
    return require_tool


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ../shared/data folder; skips the test when it is absent (a user's checkout)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (see shared/data/README.md)")
    return SHARED_DATA


def _postgres_bin(name: str) -> str | None:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else shutil.which(name)


@pytest.fixture(scope="session")
def postgres_server():
    """A throw-away PostgreSQL cluster on a free loopback port; yields its base URL."""
    import socket
    import subprocess
    import time

    initdb, postgres = _postgres_bin("initdb"), _postgres_bin("postgres")
    if initdb is None or postgres is None:
        message = "PostgreSQL server not installed (Debian package postgresql)"
        if os.environ.get("TRIAGE_REQUIRE_PEERS") == "1":
            pytest.fail(f"{message}; TRIAGE_REQUIRE_PEERS=1 requires it")
        pytest.skip(message)
    import tempfile

    # Not under pytest's tmp_path: its parents are private to root, and the server runs
    # as the postgres user, which must be able to reach its folder.
    folder = Path(tempfile.mkdtemp(prefix="triage-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(folder, user="postgres")
        folder.chmod(0o700)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = folder / "data"
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "triage"],
        check=True,
        capture_output=True,
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            *as_user,
            postgres,
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(folder),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ready = _postgres_bin("pg_isready")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (
            subprocess.run(
                [ready, "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            ).returncode
            == 0
        ):
            break
        time.sleep(0.1)
    else:
        server.terminate()
        pytest.fail("PostgreSQL did not become ready")
    yield f"postgresql+psycopg://triage@127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server, request):
    """A fresh, empty database on the test cluster."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return f"{postgres_server}/{name}"
