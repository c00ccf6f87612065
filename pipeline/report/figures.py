"""The report's pictures (matplotlib, Agg): gain bar charts with interval error bars and image grids.

Figures are returned as encoded bytes (PNG for charts, JPEG for photo grids) so the HTML can embed
them as ``data:`` URIs and the Markdown can link the same bytes saved beside it.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pandas as pd

from pipeline.imageio import read_image

LABELS = {"vs_ir": "vs infrared only", "vs_vis": "vs visible only", "vs_best_single": "vs best single"}
COLOURS = {"vs_ir": "#d98c3a", "vs_vis": "#4a90c2", "vs_best_single": "#3a8f5c"}
BOX_COLOURS = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _encode(fig, fmt: str = "png") -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    kwargs = {"pil_kwargs": {"quality": 85}} if fmt == "jpeg" else {}
    fig.savefig(buffer, format=fmt, dpi=fig.dpi, bbox_inches="tight", **kwargs)
    plt.close(fig)
    return buffer.getvalue()


def gain_chart(frame: pd.DataFrame, title: str, level: str = "95 %") -> bytes:
    """Horizontal grouped bars of one task/dataset's gains (rows of :func:`tables.gains_frame`),
    each with its ``level`` interval (e.g. "95 %") as an error bar; the zero line marks "no change";
    controls are labelled as such."""
    plt = _pyplot()
    roles = frame["role"] if "role" in frame else pd.Series(["method"] * len(frame), index=frame.index)
    methods = [m if r == "method" else f"{m} ({r})" for m, r in zip(frame["method"], roles)]
    keys = [k for k in LABELS if frame[k].notna().any()]
    height = 0.8 / max(len(keys), 1)
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.55 * len(methods) * max(len(keys), 1) / 2), dpi=100)
    lows = {"vs_ir": "vs_ir_ci95_low", "vs_vis": "vs_vis_ci95_low", "vs_best_single": "ci95_low"}
    for k, key in enumerate(keys):
        values = frame[key].astype(float).to_numpy()
        low = frame[lows[key]].astype(float).to_numpy()
        high = frame[lows[key].replace("low", "high")].astype(float).to_numpy()
        err = np.vstack([np.clip(values - low, 0, None), np.clip(high - values, 0, None)])
        err = np.where(np.isfinite(err), err, 0.0)
        y = np.arange(len(methods)) + (k - (len(keys) - 1) / 2) * height
        ax.barh(y, np.nan_to_num(values), height=height * 0.92, xerr=err, color=COLOURS[key],
                label=LABELS[key], error_kw={"elinewidth": 1, "capsize": 3, "ecolor": "#222"})
    ax.axvline(0, color="#222", linewidth=0.8)
    ax.set_yticks(np.arange(len(methods)), methods)
    ax.invert_yaxis()
    metric = frame["metric"].iloc[0]
    ax.set_xlabel(f"gain in {metric} (fraction; 0.01 = 1 point), bars: {level} bootstrap interval")
    ax.set_title(title)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _encode(fig, "png")


def thumbnail(image: np.ndarray, width: int) -> np.ndarray:
    """Resize to ``width`` pixels wide (area interpolation), keeping the aspect ratio."""
    h, w = image.shape[:2]
    if w <= width:
        return image
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def load_panel(path: Path | None, width: int) -> np.ndarray | None:
    """A thumbnail of the image at ``path`` as RGB, or ``None`` when there is no such file."""
    loaded = load_scaled(path, width)
    return None if loaded is None else loaded[0]


def load_scaled(path: Path | None, width: int) -> tuple[np.ndarray, float] | None:
    """``(RGB thumbnail, thumbnail width / original width)`` or ``None`` when there is no file."""
    if path is None or not Path(path).is_file():
        return None
    image = read_image(path, "rgb")
    small = thumbnail(image, width)
    return small, small.shape[1] / image.shape[1]


def draw_boxes(image: np.ndarray, record: dict | None, scale: float, threshold: float,
               classes: Sequence[str] = ()) -> np.ndarray:
    """Boxes of one ``predictions.json`` record (``{"gt": {boxes, classes}, "pred": {boxes, scores,
    classes}}``, pixels, see :mod:`pipeline.detection.ap`) drawn on an RGB thumbnail ``scale`` times
    the original size: ground truth thin white, detections with score >= ``threshold`` coloured by
    class and labelled."""
    out = image.copy()
    if record is None:
        return out
    gt, pred = record.get("gt") or {}, record.get("pred") or {}
    for box in gt.get("boxes") or []:
        x1, y1, x2, y2 = (int(round(v * scale)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (255, 255, 255), 1)
    classes = list(classes)
    for box, score, label in zip(pred.get("boxes") or [], pred.get("scores") or [], pred.get("classes") or []):
        if score < threshold:
            continue
        if label not in classes:
            classes.append(label)
        hex_colour = BOX_COLOURS[classes.index(label) % len(BOX_COLOURS)]
        colour = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
        x1, y1, x2, y2 = (int(round(v * scale)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(out, f"{label} {score:.2f}", (x1, max(9, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    colour, 1, cv2.LINE_AA)
    return out


def image_grid(rows: list[tuple[str, list[np.ndarray | None]]], columns: list[str],
               panel_inches: float = 2.2) -> bytes:
    """A JPEG grid: one row per scene (labelled at the left), one titled column per panel; a
    ``None`` panel shows the word "missing"."""
    plt = _pyplot()
    shapes = [p.shape for _, panels in rows for p in panels if p is not None]
    aspect = shapes[0][0] / shapes[0][1] if shapes else 0.75
    fig, axes = plt.subplots(len(rows), len(columns), squeeze=False, dpi=90,
                             figsize=(panel_inches * len(columns), panel_inches * aspect * len(rows) + 0.4))
    for r, (label, panels) in enumerate(rows):
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if panel is None:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", color="#888", transform=ax.transAxes)
                ax.set_facecolor("#f2f2f2")
            else:
                ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=255)
            if r == 0:
                ax.set_title(columns[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.subplots_adjust(wspace=0.03, hspace=0.08)
    return _encode(fig, "jpeg")
