"""Closing lines of ``make demo``: where the results are and whether the SEGs validate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from service.validate import dciodvfy, dciodvfy_available


def main(results_dir: str) -> int:
    """Validate every SEG listed in ``results_dir/results.json`` and print a summary."""
    folder = Path(results_dir)
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    segs = [Path(r["seg_path"]) for r in results if r.get("seg_path")]
    overlays = [r["overlay_path"] for r in results if r.get("overlay_path")]
    print(f"\n{len(segs)} DICOM Segmentations and {len(overlays)} overlay pictures in {folder}/")
    if not dciodvfy_available():
        print("dciodvfy not installed (apt-get install dicom3tools): SEGs not validated")
        return 0
    invalid = 0
    for seg in segs:
        verdict = dciodvfy(seg)
        invalid += not verdict.valid
        state = "valid" if verdict.valid else f"INVALID: {verdict.errors[0]}"
        print(f"  dciodvfy {seg.name}: {state}")
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
