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
