"""Mutual information between the fused image and each source (grey-level histograms).

MI = MI(F, A) + MI(F, B) (Qu, Zhang & Yan, Electron. Lett. 2002), ↑. The two conventions differ:

* ``cddfuse``: ``sklearn.metrics.mutual_info_score`` on the flattened grey levels, i.e. the 256-bin
  joint-histogram MI in **nats**, with terms below machine epsilon zeroed and the sum clipped at 0
  (re-implemented here with ``np.bincount``; scikit-learn is not needed).
* ``matlab`` (``MI_evaluation.m`` + ``Hab.m``): in **bits**, ``H(X) + H(F) − H(F, X)`` with marginal
  entropies from 256-bin histograms and a joint histogram indexed with the uint8 ``value + 1``,
  which saturates: grey levels 254 and 255 share one joint bin on both axes (not in the marginals).
"""
from __future__ import annotations

import numpy as np

from pipeline.metrics.basic import entropy_bits
from pipeline.metrics.inputs import Triple


def joint_histogram(x: np.ndarray, y: np.ndarray, merge_top: bool = False) -> np.ndarray:
    """256×256 counts of (x, y) grey-level pairs (uint8 inputs). ``merge_top`` puts 255 into the 254
    bin on both axes (the toolbox's saturating uint8 index)."""
    x = x.ravel().astype(np.intp)
    y = y.ravel().astype(np.intp)
    if merge_top:
        x = np.minimum(x, 254)
        y = np.minimum(y, 254)
    return np.bincount(x * 256 + y, minlength=256 * 256).reshape(256, 256)


def mutual_information_nats(x: np.ndarray, y: np.ndarray) -> float:
    """``Σ p_xy·ln(p_xy / (p_x p_y))`` over non-empty joint bins, as scikit-learn's
    ``mutual_info_score`` computes it (per-term ``|·| < eps`` → 0, result clipped at ≥ 0)."""
    joint = joint_histogram(x, y)
    rows, cols = np.nonzero(joint)
    n_xy = joint[rows, cols].astype(np.float64)
    n_x = joint.sum(axis=1).astype(np.float64)
    n_y = joint.sum(axis=0).astype(np.float64)
    total = n_xy.sum()
    p_xy = n_xy / total
    log_outer = np.log(n_x.sum()) + np.log(n_y.sum()) - np.log(n_x[rows] * n_y[cols])
    terms = p_xy * (np.log(n_xy) - np.log(total)) + p_xy * log_outer
    terms[np.abs(terms) < np.finfo(np.float64).eps] = 0.0
    return float(max(terms.sum(), 0.0))


def mutual_information_toolbox_bits(x: np.ndarray, y: np.ndarray) -> float:
    """``H(x) + H(y) − H(x, y)`` in bits with the toolbox's 254/255 joint-bin merge (uint8 inputs)."""
    joint = joint_histogram(x, y, merge_top=True)
    p = joint[joint > 0] / x.size
    joint_entropy = float(-np.sum(p * np.log2(p)))
    return entropy_bits(x) + entropy_bits(y) - joint_entropy


def mi(t: Triple) -> float:
    """MI ↑ — ``MI(F,A) + MI(F,B)``: nats for ``cddfuse``, bits with the 254/255 merge for ``matlab``."""
    if t.convention == "cddfuse":
        f = np.round(t.f).astype(np.uint8)
        return (mutual_information_nats(f, np.round(t.a).astype(np.uint8))
                + mutual_information_nats(f, np.round(t.b).astype(np.uint8)))
    return (mutual_information_toolbox_bits(t.uint8("a"), t.uint8("f"))
            + mutual_information_toolbox_bits(t.uint8("b"), t.uint8("f")))
