"""The report folder of a training or evaluation run: ``report.html``, its pictures and
``metrics.json``.

Pictures are drawn with matplotlib's object API (no global pyplot state) and saved as
small PNGs beside the page, so the folder can be zipped, mailed or opened offline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from scipy import ndimage

from training.config import jsonable

TRUTH = (40, 200, 90)  # green: the reference outline
PREDICTED = (255, 120, 0)  # orange: the model's outline, as in the worker's overlays

PAGE = jinja2.Template(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222 }
h1 { font-size: 1.6em } h2 { margin-top: 2em; border-bottom: 1px solid #ddd }
table { border-collapse: collapse; margin: .5em 0 } td, th { padding: .25em .7em;
 border-bottom: 1px solid #eee; text-align: right }
th:first-child, td:first-child { text-align: left }
.warn { background: #fff3cd; padding: .6em 1em; border-left: 4px solid #e0a800 }
figure { display: inline-block; margin: .3em; vertical-align: top } figcaption { font-size: .85em }
img { max-width: 100% }
</style></head><body>
<h1>{{ title }}</h1>
{% for note in notes %}<p class="warn">{{ note }}</p>{% endfor %}
{% for section in sections %}
<h2>{{ section.heading }}</h2>
{% if section.text %}<p>{{ section.text }}</p>{% endif %}
{% for table in section.tables %}
<table><tr>{% for c in table.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in table.rows %}<tr>{% for v in row %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}
</table>{% endfor %}
{% for image in section.images %}<figure><img src="{{ image.file }}" alt="{{ image.caption }}">
<figcaption>{{ image.caption }}</figcaption></figure>{% endfor %}
{% endfor %}
</body></html>
""",
    autoescape=True,
)


@dataclass(frozen=True, kw_only=True)
class Table:
    """A table of the report: column names and rows of already formatted values."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True, kw_only=True)
class Picture:
    """An image file in the report folder and its caption."""

    file: str
    caption: str


@dataclass(frozen=True, kw_only=True)
class Section:
    """A heading with optional text, tables and pictures."""

    heading: str
    text: str = ""
    tables: Sequence[Table] = field(default_factory=tuple)
    images: Sequence[Picture] = field(default_factory=tuple)


def write_report(
    folder: Path,
    *,
    title: str,
    sections: Sequence[Section],
    metrics: Mapping[str, Any],
    notes: Sequence[str] = (),
) -> Path:
    """Write ``report.html`` and ``metrics.json`` into ``folder``; returns the page's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(
        json.dumps(jsonable(metrics), indent=2) + "\n", encoding="utf-8"
    )
    page = folder / "report.html"
    page.write_text(PAGE.render(title=title, sections=sections, notes=notes), encoding="utf-8")
    return page


def fmt(value: Any) -> str:
    """A table cell: floats to 3 decimals, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    labels = np.asarray(labels, dtype=bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    hits = labels[order]
    last = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(hits) - 1]
    tp = np.cumsum(hits)[last]
    fp = np.cumsum(~hits)[last]
    tpr = np.r_[0.0, tp / max(1, labels.sum())]
    fpr = np.r_[0.0, fp / max(1, (~labels).sum())]
    return fpr, tpr


def roc_png(
    path: Path, labels: np.ndarray, scores: np.ndarray, *, auc: float | None, threshold: float
) -> Path:
    """The ROC curve of the classifier with the operating threshold marked."""
    fig = Figure(figsize=(4.2, 4.0), dpi=100)
    ax = fig.add_subplot()
    fpr, tpr = roc_points(labels, scores)
    ax.plot(fpr, tpr, color="#1f77b4", label=f"AUC {auc:.3f}" if auc is not None else None)
    ax.plot([0, 1], [0, 1], color="#bbb", linestyle="--", linewidth=1)
    labels = np.asarray(labels, dtype=bool)
    chosen = np.asarray(scores) >= threshold
    if labels.any() and (~labels).any():
        ax.plot(
            [chosen[~labels].mean()],
            [chosen[labels].mean()],
            "o",
            color="#d62728",
            label=f"threshold {threshold:.2f}",
        )
    ax.set_xlabel("1 − specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("Classifier ROC")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    return path


def dice_histogram_png(path: Path, dices: np.ndarray, labels: np.ndarray) -> Path:
    """Histogram of per-image Dice, positives and negatives apart."""
    fig = Figure(figsize=(5.0, 3.6), dpi=100)
    ax = fig.add_subplot()
    labels = np.asarray(labels, dtype=bool)
    bins = np.linspace(0, 1, 21)
    ax.hist(
        [dices[labels], dices[~labels]],
        bins=bins,
        stacked=True,
        color=["#d62728", "#7f7f7f"],
        label=[f"with pneumothorax ({labels.sum()})", f"without ({(~labels).sum()})"],
    )
    ax.set_xlabel("Dice per image (empty on empty = 1)")
    ax.set_ylabel("images")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    return path


def learning_curves_png(path: Path, histories: Mapping[str, Sequence[Sequence[Mapping]]]) -> Path:
    """Training loss and validation score per epoch, one row per stage, one line per fold."""
    stages = [s for s in histories if histories[s]]
    fig = Figure(figsize=(9.0, 2.6 * max(1, len(stages))), dpi=100)
    for row, stage in enumerate(stages):
        loss_ax = fig.add_subplot(len(stages), 2, 2 * row + 1)
        valid_ax = fig.add_subplot(len(stages), 2, 2 * row + 2)
        for k, history in enumerate(histories[stage]):
            epochs = [h["epoch"] for h in history]
            loss_ax.plot(epochs, [h["loss"] for h in history], label=f"fold {k + 1}")
            valid_ax.plot(epochs, [h["validation"] for h in history], label=f"fold {k + 1}")
        loss_ax.set_title(f"{stage}: training loss")
        valid_ax.set_title(f"{stage}: validation {_score_name(stage)}")
        for ax in (loss_ax, valid_ax):
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        valid_ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _score_name(stage: str) -> str:
    return {
        "classifier": "AUC",
        "segmenter": "Dice on positives",
        "baseline": "mean Dice",
    }.get(stage, "score")


def overlay_png(
    path: Path, pixels: np.ndarray, truth: np.ndarray | None, predicted: np.ndarray | None
) -> Path:
    """The image with the reference outline in green and the model's in orange."""
    grey = (np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for mask, colour in ((truth, TRUTH), (predicted, PREDICTED)):
        if mask is not None and mask.any():
            edge = mask & ~ndimage.binary_erosion(mask, iterations=1)
            rgb[edge] = colour
    Image.fromarray(rgb).save(path, optimize=True)
    return path
