"""Option ``robustness.retrain: true``: retrain each method's downstream models on perturbed data.

The default robustness protocol never retrains (models trained on clean images meet perturbed test
images). With ``retrain: true`` each perturbed level additionally gets the *retrain* protocol: every
pair of the task's dataset (train, val and test) is perturbed with the level (the perturb stage's
deterministic :func:`pipeline.perturb.families.apply_level`, same seed), fused with the method, and
the detection / segmentation stage is run unchanged on those fused images (its own
:func:`pipeline.detection.stage.run_method` / :func:`pipeline.segmentation.run.run_method`, with the
fused, results and model folders pointed at a scratch folder). It answers "does the gain come back
when the downstream model may adapt to the degradation?" at the price of one full downstream
training per method, level and seed (never in the demo).

Results (test images of the perturbed subset only, so they pair with the no-retrain rows)::

    <robustness.out>/<method>/retrain_detection_seed<k>.json    records keyed <family>/<level>/<name>
    <robustness.out>/<method>/retrain_segmentation_seed<k>.npz  names, classes, confusion
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np

from pipeline.config import section
from pipeline.results import read_json, write_json


def fuse_level_everywhere(ctx, method: str, task: str, family: str, level: int, root: Path) -> Path:
    """Every pair of the task's dataset at one level, fused into ``<root>/<dataset>/<method>/``."""
    from pipeline.datasets import read_pair
    from pipeline.fusion.registry import get_method
    from pipeline.fusion.stage import fuse_pair
    from pipeline.imageio import write_image
    from pipeline.perturb.families import apply_level, parse_families
    from pipeline.perturb.stage import perturb_settings

    settings = perturb_settings(ctx.params)
    families = parse_families(settings)
    dataset = ctx.datasets[task]
    fusion = get_method(method, **dict((section(ctx.params, "fusion.methods") or {}).get(method) or {}))
    out = root / dataset.name / method
    for sample in dataset.samples:
        ir, vis = apply_level(families[family], level, *read_pair(sample), seed=int(settings["seed"]),
                              dataset=dataset.name, name=sample.name)
        write_image(out / f"{sample.name}.png", fuse_pair(fusion, ir, vis, gray=bool(section(ctx.params, "fusion.gray", False))))
    return root


def retrain_level(ctx, method: str, task: str, family: str, level: int, out: Path, log=lambda _: None) -> None:
    """Train and test the task's models on one perturbed level; write the keyed per-image results."""
    from pipeline.hermetic import state_dir
    from pipeline.segmentation.run import save_npz

    scratch = state_dir() / "robustness_retrain" / method / f"{task}_{family}_{level}"
    shutil.rmtree(scratch, ignore_errors=True)
    fused = fuse_level_everywhere(ctx, method, task, family, level, scratch / "fused")
    params = copy.deepcopy(ctx.params)
    keep = {s.name for s in ctx.samples(task)}
    prefix = f"{family}/{level}"
    if task == "detection":
        from pipeline.detection.stage import run_method

        params["detection"] = {**params.get("detection", {}), "fused_root": str(fused),
                               "results": str(scratch / "results"), "models_root": str(scratch / "models"),
                               "methods": None}
        run_method(params, method)
        for seed in ctx.seeds(task):
            path = scratch / "results" / ctx.datasets[task].name / method / f"seed_{seed}" / "predictions.json"
            records = [{**r, "name": f"{prefix}/{r['name']}"} for r in read_json(path)["images"] if r["name"] in keep]
            target = out / f"retrain_detection_seed{seed}.json"
            previous = read_json(target)["images"] if target.is_file() else []
            previous = [r for r in previous if not r["name"].startswith(prefix + "/")]
            write_json(target, {"method": method, "seed": seed, "images": previous + records})
    else:
        from pipeline.segmentation.run import run_method

        params["segmentation"] = {**params.get("segmentation", {}), "fused_root": str(fused),
                                  "results_root": str(scratch / "results"), "models_root": str(scratch / "models")}
        run_method(params, method, progress=False)
        for seed in ctx.seeds(task):
            with np.load(scratch / "results" / ctx.datasets[task].name / method / f"seed_{seed}" /
                         "per_image_confusion.npz") as data:
                names, conf, classes = list(data["names"]), data["confusion"], data["classes"]
            idx = [i for i, n in enumerate(names) if n in keep]
            target = out / f"retrain_segmentation_seed{seed}.npz"
            old_names, old_conf = [], np.zeros((0, *conf.shape[1:]), conf.dtype)
            if target.is_file():
                with np.load(target) as data:
                    mask = [not str(n).startswith(prefix + "/") for n in data["names"]]
                    old_names, old_conf = [str(n) for n, m in zip(data["names"], mask) if m], data["confusion"][mask]
            save_npz(target, names=np.array(old_names + [f"{prefix}/{names[i]}" for i in idx]), classes=classes,
                     confusion=np.concatenate([old_conf, conf[idx]]))
    shutil.rmtree(scratch, ignore_errors=True)
    log(f"robustness retrain {method} {task} {prefix}: done")


def retrain_method(ctx, method: str, out: Path, log=lambda _: None) -> list[str]:
    """Every perturbed level of every task (level 0 is the stages' own clean training)."""
    done = []
    for task in ctx.settings["tasks"]:
        for family, level in ctx.levels(ctx.datasets[task].name):
            retrain_level(ctx, method, task, family, level, out, log)
            done.append(f"{task}:{family}/{level}")
    return done
