"""Diff-IF fusion knowledge prior: targeted search over existing methods' fused training images.

Yi, Tang, Zhang, Xu, Ma, "Diff-IF: multi-modality image fusion via diffusion model with fusion
knowledge prior", Information Fusion 2024 (102450); ``../shared/spec/diffif.md`` §1.2-1.3.

For every **training** image and every candidate (names of ``fusion.methods`` entries, any kind,
``precomputed`` included, in the configured order) three metrics are computed in the **cddfuse**
convention of :mod:`pipeline.metrics` (F = candidate, A = infrared, B = visible, grey as OpenCV
BGR→grey on float32 then rounded):

* ``SSIM`` = SSIM_sum = SSIM(F, A) + SSIM(F, B), scikit-image defaults with **data_range = 2** (the
  float dtype range older scikit-image used silently; the official script passes none and fails
  under its own pins, spec §1.2 pitfall — recorded in ``summary.json`` as ``ssim_data_range``);
* ``VIF`` = VIF_sum = VIF(A→F) + VIF(B→F); ``Qabf``.

Score = w_SSIM·SSIM_sum + w_VIF·VIF_sum + w_Qabf·Qabf (default 2, 1, 3), **no normalisation**. The
best score starts at −1 and a candidate wins only with a strictly larger score, so **ties go to the
first listed**. The winner's file is copied **unchanged** (bytes) to ``<out>/<dataset>/<name><ext>``
(the ``Fusion_K`` folder the Diff-IF trainer reads).

Where the candidate images come from: a ``precomputed`` candidate's own files (located by name, the
registry's count/size checks apply); any other candidate is fused on the training images by the
registry (:func:`pipeline.fusion.stage.fuse_samples`, the same code and colour rule as
``fuse@<method>``) into ``<cache>/<dataset>/fused/<candidate>/``, a folder stamped with the
candidate's options, its weights file digest and the fusion code (a changed stamp refuses the stale
folder and refuses nothing else). The prior does not read ``data/fused``: ``fuse@diffif_lite`` depends on
this stage, so reading the other methods' ``fuse@`` outputs would make the DVC graph cyclic.

Metric values are cached in ``<cache>/<dataset>/metrics.json`` keyed by the SHA-256 of the three
images' bytes, so changing the weights (or the order) re-scores without recomputing one metric.

Guards: ``split`` must be ``train`` (the prior exists for training images only; Diff-IF's
evaluation images have none, spec §1.3 item 4); the single-modality ``ir`` / ``vis`` pass-through
rows are refused as candidates unless ``force_passthrough: true`` (spec §1.2: the score rewards a
source returned unchanged). The faithful IVF set is :data:`FAITHFUL_CANDIDATES` with weights (2, 1, 3);
any other set is a **variant** and labelled so.

Outputs (:func:`build_prior`): the Fusion_K images; ``<results>/<dataset>/scores.csv`` (every image ×
candidate: the three metrics, the score, whether it won); ``winners.csv`` (image, winner, score, file);
``summary.json`` (candidates, weights, label, winner histogram, metric cache hits).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from pipeline.errors import ConfigError, DataError

METRICS = ("SSIM", "VIF", "Qabf")
COLUMNS = {"SSIM": "SSIM_sum", "VIF": "VIF_sum", "Qabf": "Qabf"}
CONVENTION = "cddfuse"
SSIM_DATA_RANGE = 2
DEFAULT_WEIGHTS = {"SSIM": 2.0, "VIF": 1.0, "Qabf": 3.0}
START_SCORE = -1.0
#: the released IVF prior set (``targeted_search.py``, in its order); MoE-Fusion is commented out there
FAITHFUL_CANDIDATES = ("ddfm", "metafusion", "u2fusion", "tardal")
TRAINING_SPLIT = "train"
PASSTHROUGH_REASON = ("the targeted-search score rewards returning a source unchanged (spec diffif.md "
                      "§1.2: on MFNet 00004N a copied visible image scored 4.822, above every fused "
                      "candidate), so a pass-through row would become the 'best fusion' target")
WHERE = "prior"


@dataclass(frozen=True)
class PriorConfig:
    dataset: str
    split: str
    candidates: tuple[str, ...]
    weights: dict
    force_passthrough: bool
    out: Path
    results: Path
    cache: Path

    @property
    def label(self) -> str:
        faithful = self.candidates == FAITHFUL_CANDIDATES and self.weights == DEFAULT_WEIGHTS
        return "faithful" if faithful else "variant"


def check_config(cfg: Mapping | None, fusion_methods: Mapping) -> PriorConfig:
    """Validate the ``prior`` params section against ``fusion.methods`` (ConfigError naming the key)."""
    from pipeline.fusion.registry import get_method

    cfg = dict(cfg or {})
    known = {"dataset", "split", "candidates", "weights", "force_passthrough", "out", "results", "cache"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ConfigError(f"{WHERE}: unknown key(s) {unknown}; known: {sorted(known)}")
    split = cfg.get("split", TRAINING_SPLIT)
    if split != TRAINING_SPLIT:
        raise ConfigError(f"{WHERE}.split is {split!r}: the fusion knowledge prior is built from TRAINING "
                          f"images only (split {TRAINING_SPLIT!r}); a prior on {split!r} images would leak "
                          "them into Diff-IF's training target (spec diffif.md §1.3, leakage guard)")
    candidates = tuple(cfg.get("candidates") or ())
    if not candidates:
        raise ConfigError(f"{WHERE}.candidates is empty: list fusion.methods entries to search over")
    if len(set(candidates)) != len(candidates):
        raise ConfigError(f"{WHERE}.candidates lists a method twice: {list(candidates)}")
    force = bool(cfg.get("force_passthrough", False))
    for name in candidates:
        if name not in fusion_methods:
            raise ConfigError(f"{WHERE}.candidates: {name!r} is not under fusion.methods "
                              f"(configured: {', '.join(fusion_methods)})")
        method = get_method(name, **(fusion_methods[name] or {}))
        if getattr(method, "source", None) is not None and not force:
            raise ConfigError(f"{WHERE}.candidates: {name!r} passes the {method.source} image through "
                              f"unchanged; refused because {PASSTHROUGH_REASON}. Set "
                              f"{WHERE}.force_passthrough: true to include it anyway")
    weights = dict(DEFAULT_WEIGHTS)
    given = dict(cfg.get("weights") or {})
    bad = sorted(set(given) - set(METRICS))
    if bad:
        raise ConfigError(f"{WHERE}.weights: unknown metric(s) {bad}; the score uses {list(METRICS)}")
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{WHERE}.weights.{key} must be a number, got {value!r}")
        weights[key] = float(value)
    if not cfg.get("dataset"):
        raise ConfigError(f"{WHERE}.dataset must name a `datasets:` entry (the training set)")
    return PriorConfig(str(cfg["dataset"]), split, candidates, weights, force,
                       Path(cfg.get("out", "data/prior")), Path(cfg.get("results", "results/prior")),
                       Path(cfg.get("cache", "models/prior_cache")))


def score(values: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Raw weighted sum of the metrics (no normalisation, spec §1.2 step 3)."""
    return float(sum(float(weights[m]) * float(values[m]) for m in METRICS))


def search(values: Mapping[str, Mapping[str, Mapping[str, float]]], candidates: Sequence[str],
           weights: Mapping[str, float]) -> tuple[dict[str, str], pd.DataFrame]:
    """Targeted search: ``values[name][candidate] = {SSIM, VIF, Qabf}`` -> ``({name: winner}, scores)``.

    Best score starts at −1; strict ``>``, so ties go to the first candidate in ``candidates``. A
    :class:`DataError` when no candidate scores above −1 (the official script would copy nothing).
    """
    winners, rows = {}, []
    for name in values:
        best, winner = START_SCORE, None
        scored = []
        for cand in candidates:
            s = score(values[name][cand], weights)
            scored.append((cand, s))
            if s > best:
                best, winner = s, cand
        if winner is None:
            raise DataError(f"no candidate scores above {START_SCORE} for image {name!r}", name)
        winners[name] = winner
        for cand, s in scored:
            rows.append({"name": name, "candidate": cand,
                         **{COLUMNS[m]: float(values[name][cand][m]) for m in METRICS},
                         "score": s, "winner": cand == winner})
    return winners, pd.DataFrame(rows, columns=["name", "candidate", *COLUMNS.values(), "score", "winner"])


def histogram(winners: Mapping[str, str], candidates: Sequence[str]) -> dict[str, int]:
    """Winner counts in candidate order (zero counts kept)."""
    return {c: sum(1 for w in winners.values() if w == c) for c in candidates}


class MetricCache:
    """``{key: {SSIM, VIF, Qabf}}`` in a JSON file; key = SHA-256 of the three images' bytes."""

    def __init__(self, path: Path):
        from pipeline.results import read_json

        self.path = Path(path)
        self.data = read_json(self.path) if self.path.is_file() else {}
        self.hits = self.computed = 0

    @staticmethod
    def key(ir: Path, vis: Path, fused: Path) -> str:
        from pipeline.fingerprint import content_key, file_digest

        return content_key(64, convention=CONVENTION, metrics=list(METRICS), ir=file_digest(ir),
                           vis=file_digest(vis), fused=file_digest(fused))

    def get(self, ir: Path, vis: Path, fused: Path) -> dict[str, float]:
        from pipeline.metrics import compute_triple, load_triple

        key = self.key(ir, vis, fused)
        if key in self.data:
            self.hits += 1
            return dict(self.data[key])
        values = compute_triple(load_triple(ir, vis, fused, CONVENTION), list(METRICS))
        self.data[key] = values
        self.computed += 1
        return values

    def save(self) -> None:
        from pipeline.results import write_json

        write_json(self.path, self.data)


def _stamp(method, options: Mapping) -> dict:
    from pipeline.fingerprint import code_digest, file_digest

    weights = getattr(method, "weights_path", None)
    return {"options": dict(options), "weights": file_digest(weights) if weights and Path(weights).is_file() else None,
            "code": code_digest(["pipeline.fusion.stage", f"pipeline.fusion.{_module(method)}"])}


def _module(method) -> str:
    return type(method).__module__.rsplit(".", 1)[-1]


def candidate_files(name: str, options: Mapping, samples: Sequence, folder: Path, dataset: str,
                    progress: bool = False) -> dict[str, Path]:
    """``{sample name: fused file}`` of one candidate on the training samples (module docstring)."""
    from pipeline.fusion.registry import get_method
    from pipeline.fusion.stage import fuse_samples
    from pipeline.results import read_json, write_json

    method = get_method(name, **dict(options or {}))
    if method.kind == "precomputed":
        return method.locate([s.name for s in samples], dataset)
    stamp_file = folder / ".stamp.json"
    stamp = _stamp(method, options or {})
    if folder.is_dir() and (not stamp_file.is_file() or read_json(stamp_file) != stamp):
        shutil.rmtree(folder)                     # another method version: never reuse its images
    folder.mkdir(parents=True, exist_ok=True)
    write_json(stamp_file, stamp)
    fuse_samples(method, samples, folder, dataset=dataset, progress=progress)
    return {s.name: folder / f"{s.name}.png" for s in samples}


def build_prior(params: Mapping, root: str | Path = ".", progress: bool = False, log=None) -> dict:
    """Run the targeted search of the ``prior`` section; write the outputs; return the summary."""
    from pipeline.config import section
    from pipeline.datasets import load_configured
    from pipeline.imageio import atomic_path
    from pipeline.results import provenance, write_csv, write_json

    root = Path(root)
    methods = dict(section(dict(params), "fusion.methods") or {})
    cfg = check_config(section(dict(params), "prior"), methods)
    dataset = load_configured(dict(params), cfg.dataset)
    samples = dataset.split(cfg.split)
    if not samples:
        raise DataError(f"dataset {cfg.dataset!r} has no {cfg.split!r} images (splits: "
                        f"{sorted(dataset.splits)}); the prior needs training images", dataset.root)
    cache_dir = root / cfg.cache / cfg.dataset
    files = {c: candidate_files(c, methods[c], samples, cache_dir / "fused" / c, cfg.dataset, progress)
             for c in cfg.candidates}
    cache = MetricCache(cache_dir / "metrics.json")
    values = {s.name: {c: cache.get(s.ir, s.vis, files[c][s.name]) for c in cfg.candidates} for s in samples}
    cache.save()
    winners, scores = search(values, cfg.candidates, cfg.weights)

    out = root / cfg.out / cfg.dataset
    if out.is_dir():
        shutil.rmtree(out)
    rows = []
    for s in samples:
        src = files[winners[s.name]][s.name]
        dst = out / f"{s.name}{src.suffix.lower()}"
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        best = scores[(scores.name == s.name) & scores.winner].iloc[0]
        rows.append({"name": s.name, "winner": winners[s.name], "score": float(best.score), "file": str(dst)})
    res = root / cfg.results / cfg.dataset
    write_csv(res / "scores.csv", scores)
    write_csv(res / "winners.csv", pd.DataFrame(rows, columns=["name", "winner", "score", "file"]))
    summary = {"dataset": cfg.dataset, "split": cfg.split, "images": len(samples),
               "candidates": list(cfg.candidates), "weights": cfg.weights, "label": cfg.label,
               "faithful_candidates": list(FAITHFUL_CANDIDATES), "convention": CONVENTION,
               "ssim_data_range": SSIM_DATA_RANGE, "histogram": histogram(winners, cfg.candidates),
               "metrics_computed": cache.computed, "metrics_cached": cache.hits,
               "force_passthrough": cfg.force_passthrough, "fusion_k": str(out),
               "provenance": provenance({"prior": section(dict(params), "prior"),
                                         "candidates": {c: methods[c] for c in cfg.candidates}},
                                        split=dataset.manifest().get("splits"))}
    write_json(res / "summary.json", summary)
    if log:
        log(f"prior {cfg.dataset}/{cfg.split}: {len(samples)} images, winners {summary['histogram']} "
            f"({cache.computed} metric triples computed, {cache.hits} from the cache)")
    return summary
