"""Closing lines of ``make demo``: validate the SEGs the PACS received, point at pictures."""

from __future__ import annotations

import sys
from pathlib import Path

from service.validate import dciodvfy, dciodvfy_available


def main(pacs_dir: str, pictures_dir: str) -> int:
    """Validate every SEG in ``pacs_dir`` with dciodvfy and print a summary."""
    segs = sorted(Path(pacs_dir).glob("*.dcm"))
    pictures = sorted(Path(pictures_dir).glob("*.overlay.png"))
    print(f"\n{len(pictures)} overlay pictures (outline in orange) in {pictures_dir}/")
    if not dciodvfy_available():
        print("dciodvfy not installed (apt-get install dicom3tools): SEGs not validated")
        return 0
    invalid = 0
    for seg in segs:
        verdict = dciodvfy(seg)
        invalid += not verdict.valid
        state = "valid" if verdict.valid else f"INVALID: {verdict.errors[0]}"
        print(f"dciodvfy {seg.name}: {state}")
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
