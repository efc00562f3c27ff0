"""Validation of the objects we write with dicom3tools' ``dciodvfy``."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What ``dciodvfy`` said about one file: its error and warning lines."""

    path: Path
    errors: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def valid(self) -> bool:
        """True when dciodvfy printed no error line."""
        return not self.errors


def dciodvfy_available() -> bool:
    """Whether the ``dciodvfy`` program is on the PATH."""
    return shutil.which("dciodvfy") is not None


def dciodvfy(path: str | Path, *, timeout: float = 60.0) -> Verdict:
    """Run ``dciodvfy`` on ``path`` and collect its ``Error`` and ``Warning`` lines.

    Raises
    ------
    FileNotFoundError
        If dciodvfy is not installed (Debian package dicom3tools).
    """
    program = shutil.which("dciodvfy")
    if program is None:
        raise FileNotFoundError("dciodvfy not found: apt-get install dicom3tools")
    done = subprocess.run(
        [program, str(path)], capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = (done.stdout + done.stderr).splitlines()
    return Verdict(
        path=Path(path),
        errors=tuple(line for line in lines if line.startswith("Error")),
        warnings=tuple(line for line in lines if line.startswith("Warning")),
    )
