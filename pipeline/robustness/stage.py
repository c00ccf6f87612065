"""The ``robustness`` stage: every method's downstream models on its own fusion of perturbed pairs.

For each method (every ``fusion.methods`` entry, ``ir`` and ``vis`` included, or ``robustness.methods``) and
each perturbed level written by the ``perturb`` stage (``data/perturbed/index.json``):

1. the perturbed test pairs are fused with the method (:func:`pipeline.fusion.stage.fuse_pair`;
   the ``ir`` / ``vis`` rows are the perturbed source itself); level 0 is the method's clean fused
   image from ``data/fused`` (nothing is fused again);
2. the detector and the segmenter **already trained on that method's clean images** (by the
   ``detect@`` / ``segment@`` stages; seeds ``robustness.seeds``, null = every trained seed) are
   applied unchanged (:mod:`pipeline.robustness.evaluate`); nothing is retrained.

So the extra cost of a level is fusion + inference only; it is measured (CPU and wall seconds per
level and per image) and written in ``summary.json``. The same process also applies the frozen
evaluator (:mod:`pipeline.robustness.frozen`) to every method's clean test images.

Outputs, per method (``robustness.out`` = ``results/robustness``)::

    <method>/summary.json             scores per task/family/level/seed, labels, cost, fingerprint
    <method>/detection_seed<k>.json   per-image records (key = family/level/name; clean/0/name)
    <method>/segmentation_seed<k>.npz names, classes, per-image confusion (N×C×C)

A method whose ``summary.json`` fingerprint (settings, perturbed data, its clean fused images and
model files, this code) matches is not computed again (the output folder is persistent), so adding
one method to ``fusion.methods`` runs only that method.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from pipeline.config import checked, section
from pipeline.errors import ConfigError
from pipeline.results import read_json, write_json

KEYS = ("methods", "seeds", "tasks", "threads", "frozen_images", "other_metrics_images", "retrain", "out",
        "frozen_out")
CLEAN = "clean/0"


def robustness_settings(params: Mapping) -> dict:
    settings = checked(section(dict(params), "robustness"), "robustness", KEYS)
    bad = sorted(set(settings["tasks"]) - {"detection", "segmentation"})
    if bad:
        raise ConfigError(f"robustness.tasks: unknown task(s) {bad}; use detection and/or segmentation")
    if not isinstance(settings["retrain"], bool):
        raise ConfigError(f"robustness.retrain must be true or false, got {settings['retrain']!r}")
    return settings


def methods(params: Mapping, settings: Mapping) -> list[str]:
    """``robustness.methods`` (null: every ``fusion.methods`` entry, where the ``ir`` / ``vis``
    baselines have their downstream stages like any method), without the
    controls (registry kind ``control``: their downstream answer is known by construction and they
    are built from the clean scene, so they are neither perturbed nor ranked)."""
    from pipeline.fusion.controls import CONTROL_ROLES

    configured = section(dict(params), "fusion.methods") or {}
    chosen = settings["methods"] or list(configured)
    controls = {m for m in chosen if ((configured.get(m) or {}).get("kind") or m) in CONTROL_ROLES}
    return [m for m in dict.fromkeys(chosen) if m not in controls]


def split_key(key: str) -> tuple[str, int, str]:
    family, level, name = key.split("/", 2)
    return family, int(level), name


@dataclass
class Context:
    """What every method shares: settings, datasets, the perturbed index, devices."""

    params: dict
    settings: dict
    index: dict
    perturb_out: Path
    det: dict = field(default_factory=dict)        # detection settings
    seg: dict = field(default_factory=dict)        # resolved segmentation config
    datasets: dict = field(default_factory=dict)   # task -> PairDataset
    device: str = "cpu"

    def levels(self, dataset: str) -> list[tuple[str, int]]:
        per = self.index["levels"].get(dataset, {})
        return [(f, int(k)) for f, ks in per.items() for k in ks]

    def samples(self, task: str) -> list:
        dataset = self.datasets[task]
        names = self.index["datasets"].get(dataset.name)
        if names is None:
            raise ConfigError(f"dataset {dataset.name!r} was not perturbed: add it to perturb.datasets")
        return [dataset.by_name(n) for n in names]

    def seeds(self, task: str) -> list[int]:
        chosen = self.settings["seeds"]
        trained = (self.det if task == "detection" else self.seg)["seeds"]
        return list(trained if chosen is None else chosen)


def make_context(params: Mapping) -> Context:
    from pipeline.datasets import load_configured
    from pipeline.detection.stage import detection_settings, load_detection_dataset
    from pipeline.device import resolve_device
    from pipeline.perturb.stage import perturb_settings, read_index
    from pipeline.segmentation.model import resolve_config

    params = dict(params)
    settings = robustness_settings(params)
    out = Path(perturb_settings(params)["out"])
    ctx = Context(params, settings, read_index(out), out)
    ctx.det = detection_settings(params)
    ctx.seg = resolve_config(params.get("segmentation"))
    ctx.datasets = {"detection": load_detection_dataset(params, ctx.det),
                    "segmentation": load_configured(params, ctx.seg["dataset"])}
    ctx.device = resolve_device(ctx.det["device"])
    return ctx


def fused_levels(ctx: Context, method: str, task: str, scratch: Path) -> tuple[list, dict]:
    """Items (key, image, sample) of every level for one task's dataset, fusing perturbed pairs
    into ``scratch``; returns (items, {"cpu", "wall", "pairs"}) of the fusion."""
    from pipeline.datasets import read_pair
    from pipeline.fusion.registry import get_method
    from pipeline.fusion.stage import fuse_pair
    from pipeline.imageio import write_image
    from pipeline.perturb.stage import level_pair_paths

    dataset = ctx.datasets[task]
    samples = ctx.samples(task)
    clean = clean_images(ctx, method, task)
    items = [(f"{CLEAN}/{s.name}", clean[s.name], s) for s in samples]
    options = dict((section(ctx.params, "fusion.methods") or {}).get(method) or {})
    if options.get("kind") == "precomputed":
        return items, {"cpu": 0.0, "wall": 0.0, "pairs": 0, "note": "precomputed method: clean level only"}
    fusion = get_method(method, **options)
    cpu = wall = 0.0
    for family, level in ctx.levels(dataset.name):
        for sample in samples:
            ir_path, vis_path = level_pair_paths(ctx.perturb_out, ctx.index, sample, dataset.name, family, level)
            ir, vis = read_pair(dataclasses.replace(sample, ir=ir_path, vis=vis_path))
            c0, w0 = time.process_time(), time.perf_counter()
            image = fuse_pair(fusion, ir, vis, gray=bool(section(ctx.params, "fusion.gray", False)))
            cpu, wall = cpu + time.process_time() - c0, wall + time.perf_counter() - w0
            key = f"{family}/{level}/{sample.name}"
            items.append((key, write_image(scratch / dataset.name / f"{key.replace('/', '__')}.png", image), sample))
    return items, {"cpu": cpu, "wall": wall, "pairs": len(items) - len(samples)}


def clean_images(ctx: Context, method: str, task: str) -> dict:
    """``{name: clean fused image}`` of the perturbed subset (``ir`` / ``vis``: the sources when the
    method has no folder)."""
    from pipeline.detection.yolo_data import method_images

    fused_root = (ctx.det if task == "detection" else ctx.seg)["fused_root"]
    images, _ = method_images(ctx.datasets[task], Path(fused_root), method)
    return {s.name: images[s.name] for s in ctx.samples(task)}


def _stamp(ctx: Context, method: str, model_files: list[Path]) -> str:
    """Everything the method's robustness results depend on (its fused images follow from its clean
    fused images, which change with its weights, and from the perturbed pairs)."""
    from pipeline.fingerprint import code_digest, content_key, file_digest, params_digest

    clean = sorted({str(p) for task in ctx.settings["tasks"] for p in clean_images(ctx, method, task).values()})
    return content_key(
        method=method, settings=params_digest([ctx.settings, ctx.det, ctx.seg, ctx.index,
                                               (section(ctx.params, "fusion.methods") or {}).get(method)]),
        models=[file_digest(p) for p in model_files], clean=[file_digest(p) for p in clean],
        perturbed=[file_digest(p) for p in sorted(ctx.perturb_out.rglob("*.png"))],
        code=code_digest(["pipeline.robustness.stage"]))


def run_method(ctx: Context, method: str, log=lambda _: None) -> dict:
    """Fuse every level, evaluate every seed's models, write the method's outputs (or reuse them)."""
    from pipeline.hermetic import state_dir
    from pipeline.robustness import evaluate as E
    from pipeline.robustness.models import detector_path, load_segmenter, require, segmenter_path
    from pipeline.segmentation.run import save_npz

    out = Path(ctx.settings["out"]) / method
    scratch = state_dir() / "robustness" / method
    shutil.rmtree(scratch, ignore_errors=True)
    tasks = ctx.settings["tasks"]
    models = {"detection": [require(detector_path(ctx.det, ctx.datasets["detection"].name, method, s), "detector")
                            for s in ctx.seeds("detection")] if "detection" in tasks else [],
              "segmentation": [require(segmenter_path(ctx.seg, ctx.datasets["segmentation"].name, method, s),
                                       "segmentation model") for s in ctx.seeds("segmentation")]
              if "segmentation" in tasks else []}
    key = _stamp(ctx, method, models["detection"] + models["segmentation"])
    previous = out / "summary.json"
    if previous.is_file() and read_json(previous).get("fingerprint") == key:
        log(f"robustness {method}: unchanged, kept {previous}")
        return read_json(previous)
    items, fusion_cost = {}, {}
    for task in tasks:
        items[task], fusion_cost[task] = fused_levels(ctx, method, task, scratch)
    if out.exists():
        shutil.rmtree(out)
    scores: dict = {}
    cost: dict = {}
    for task in tasks:
        dataset = ctx.datasets[task]
        task_items = [E.Item(*i) for i in items[task]]
        n_levels = len(ctx.levels(dataset.name)) + 1
        c0, w0 = time.process_time(), time.perf_counter()
        per_seed = {}
        for seed, path in zip(ctx.seeds(task), models[task]):
            if task == "detection":
                records = E.detection_records(path, task_items, dataset.box_classes, ctx.det, ctx.device,
                                              scratch / f"det_{seed}")
                write_json(out / f"detection_seed{seed}.json", {"method": method, "seed": seed, "images": records})
                per_seed[seed] = E.map50_by_group(records, lambda k: k.rsplit("/", 1)[0])
            else:
                model = load_segmenter(path, ctx.device)
                conf = E.segmentation_confusions(model, task_items, len(dataset.seg_classes), ctx.seg, ctx.device,
                                                 dataset.ignore_index)
                keys = [i.key for i in task_items]
                save_npz(out / f"segmentation_seed{seed}.npz", names=np.array(keys),
                         classes=np.array(dataset.seg_classes), confusion=conf)
                per_seed[seed] = E.miou_by_group(keys, conf, lambda k: k.rsplit("/", 1)[0])
        infer_cpu, infer_wall = time.process_time() - c0, time.perf_counter() - w0
        groups = sorted({g for s in per_seed.values() for g in s})
        scores[task] = {g: {str(s): v[g] for s, v in per_seed.items()} for g in groups}
        images = len(ctx.samples(task))
        per_level = max(n_levels - 1, 1)
        cost[task] = {"images_per_level": images, "levels": n_levels - 1, "seeds": len(per_seed),
                      "fusion_cpu_s_per_level": fusion_cost[task]["cpu"] / per_level,
                      "fusion_wall_s_per_level": fusion_cost[task]["wall"] / per_level,
                      "inference_cpu_s_per_level": infer_cpu / n_levels,
                      "inference_wall_s_per_level": infer_wall / n_levels,
                      "note": fusion_cost[task].get("note")}
    summary = {"method": method, "fingerprint": key, "metric": {"detection": "mAP50", "segmentation": "mIoU"},
               "datasets": {t: ctx.datasets[t].name for t in tasks},
               "seeds": {t: ctx.seeds(t) for t in tasks}, "scores": scores,
               "labels": ctx.index["families"], "cost": cost,
               "protocol": "models trained on the method's clean images, applied unchanged to its fusion of "
                           "the perturbed test pairs; inference cost per level includes level 0 (clean)"}
    if ctx.settings["other_metrics_images"] != 0:
        write_json(out / "fusion_metrics_other.json", other_convention(ctx, method))
    if ctx.settings["retrain"]:
        from pipeline.robustness.retrain import retrain_method

        summary["retrained"] = retrain_method(ctx, method, out, log)
    write_json(out / "summary.json", summary)
    shutil.rmtree(scratch, ignore_errors=True)
    log(f"robustness {method}: " + ", ".join(
        f"{t} fusion {c['fusion_cpu_s_per_level']:.2f} + inference {c['inference_cpu_s_per_level']:.2f} CPU s/level"
        for t, c in cost.items()))
    return summary


def other_convention(ctx: Context, method: str) -> dict:
    """The fusion metrics of the convention the metrics stage did not compute, on the first
    ``robustness.other_metrics_images`` test images of each task's dataset (both conventions then
    enter the report's metric-prediction section)."""
    from pipeline.detection.yolo_data import method_images
    from pipeline.metrics.registry import metric_directions
    from pipeline.metrics.stage import TripleJob, evaluate_triples, summarise

    main = section(ctx.params, "metrics.convention", "matlab")
    other = "cddfuse" if main == "matlab" else "matlab"
    n = ctx.settings["other_metrics_images"]          # null: every test image
    out = {"method": method, "convention": other, "images": n or "all", "directions": metric_directions(other), "datasets": {}}
    c0 = time.process_time()
    for task in ctx.settings["tasks"]:
        dataset = ctx.datasets[task]
        images, _ = method_images(dataset, Path((ctx.det if task == "detection" else ctx.seg)["fused_root"]), method)
        test = sorted(dataset.split("test"), key=lambda s: s.name)[:n or None]
        jobs = [TripleJob(s.name, s.split, Path(s.ir), Path(s.vis), images[s.name]) for s in test]
        out["datasets"][dataset.name] = summarise(evaluate_triples(jobs, other, workers=1, progress=False))
    out["cpu_seconds"] = time.process_time() - c0
    return out


def remove_stale(out: Path, keep: list[str]) -> None:
    if Path(out).is_dir():
        for folder in Path(out).iterdir():
            if folder.is_dir() and folder.name not in keep and not folder.name.startswith("."):
                shutil.rmtree(folder)
