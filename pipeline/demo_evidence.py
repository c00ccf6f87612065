"""Evidence maps of the demo scenes: which modality shows each labelled object (for the ``oracle``).

The generator knows every labelled region (an object instance, or a segmentation region such as a
curb or a speed bump) and renders it in both modalities, so it can say where the evidence for that
label is. Per region ``R`` and modality ``m`` the **contrast-to-noise ratio**

    CNR_m = max over channels |mean_R(I_m) - mean_B(I_m)| / (std_B(I_m) + 1)

compares the region with its background ring ``B`` (the pixels within ``RING`` px of ``R`` that
carry no label; the whole ring when fewer than ``MIN_PIXELS`` such pixels exist), in the rendered
8-bit images the cameras actually deliver (visible: the three RGB channels, so colour contrast
counts; infrared: one channel). CNR is the standard measure of how visible a region is against
noise and clutter (Rose 1948, *J. Opt. Soc. Am.* 38; Bushberg et al., *The Essential Physics of
Medical Imaging*, ch. 4); the +1 keeps a flat ring from dividing by zero. A modality *carries* the
region's evidence when ``CNR >= CARRIES`` and it is at least ``DOMINANT`` times the other
modality's CNR. Evidence code per pixel (uint8 PNG):

    0  no labelled region, or both / neither modality carries it
    1  infrared only (warm people at night, engines, ...)
    2  visible only (painted, cold objects: cones, bumps, curbs, car stops, bicycles, ...)

Regions are the labelled object instances (``scene.inst``) and, when ``segmentation`` is true (MSRS),
also the connected components of labelled segmentation classes without an instance (curbs, bumps).
"""
from __future__ import annotations

import cv2
import numpy as np

NONE, IR_ONLY, VIS_ONLY = 0, 1, 2
RING = 5           # px of background ring around a region
MIN_PIXELS = 30    # smallest region / ring used
CARRIES = 5.0      # Rose's k = CNR * sqrt(area) at which a modality shows the region
DOMINANT = 2.0     # ... and by this factor more than the other modality


def contrast_to_noise(image: np.ndarray, region: np.ndarray, ring: np.ndarray) -> float:
    """``max_c |mean_R - mean_B| / (std_B + 1)`` over the channels of ``image`` (H×W or H×W×C)."""
    values = np.asarray(image, dtype=np.float64)
    values = values[..., None] if values.ndim == 2 else values
    inside, around = values[region], values[ring]
    return float(np.max(np.abs(inside.mean(0) - around.mean(0)) / (around.std(0) + 1.0)))


def _regions(label: np.ndarray, inst: np.ndarray, segmentation: bool) -> list[np.ndarray]:
    regions = [inst == k for k in np.unique(inst) if k > 0]
    if segmentation:
        rest = (label > 0) & (inst == 0)
        for cls in np.unique(label[rest]):
            count, parts = cv2.connectedComponents(((label == cls) & rest).astype(np.uint8), connectivity=8)
            regions += [parts == k for k in range(1, count)]
    return [r for r in regions if int(r.sum()) >= MIN_PIXELS]


def classify(cnr_ir: float, cnr_vis: float, area: int) -> int:
    """Evidence code of one region of ``area`` pixels from its two CNRs (module docstring)."""
    root = float(np.sqrt(area))
    if cnr_vis * root >= CARRIES and cnr_vis >= DOMINANT * cnr_ir:
        return VIS_ONLY
    if cnr_ir * root >= CARRIES and cnr_ir >= DOMINANT * cnr_vis:
        return IR_ONLY
    return NONE


def evidence_map(ir: np.ndarray, vis: np.ndarray, label: np.ndarray, inst: np.ndarray,
                 segmentation: bool) -> np.ndarray:
    """uint8 H×W evidence codes of one rendered scene (``ir`` H×W, ``vis`` H×W×3, ``label`` class
    ids, ``inst`` instance ids)."""
    out = np.zeros(label.shape, np.uint8)
    labelled = (label > 0) | (inst > 0)
    kernel = np.ones((2 * RING + 1, 2 * RING + 1), np.uint8)
    for region in _regions(label, inst, segmentation):
        ring = (cv2.dilate(region.astype(np.uint8), kernel) > 0) & ~region
        if int((ring & ~labelled).sum()) >= MIN_PIXELS:
            ring &= ~labelled
        if int(ring.sum()) < MIN_PIXELS:
            continue
        out[region] = classify(contrast_to_noise(ir, region, ring), contrast_to_noise(vis, region, ring),
                               int(region.sum()))
    return out
