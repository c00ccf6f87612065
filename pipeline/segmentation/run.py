"""The segmentation stage for one method: train + evaluate per seed, then aggregate over seeds.

Outputs (``<results_root>/<dataset>/<method>/``, all written atomically)::

    seed_<k>/metrics.json            scores of seed k (+ loss history, timings)
    seed_<k>/confusion.csv           its test-set confusion matrix (rows ground truth, cols predicted)
    seed_<k>/per_image_confusion.npz names (N,), classes (C,), confusion (N×C×C int64)
    metrics.json                     mean/std over seeds, per-seed values, params, provenance
    confusion.csv                    test-set confusion summed over seeds
    per_image_confusion.npz          names (N,) str, classes (C,) str, seeds (S,) int64,
                                     confusion (N×C×C int64, summed over seeds),
                                     per_seed (S×N×C×C int64, ``per_seed[s]`` is seed ``seeds[s]``)
    overlays/<name>.png              [image | ground truth | prediction] of the first seed

Every seed works in ``<models_root>/<dataset>/<method>/seed_<k>/`` (a persisted DVC output, not
deleted before a run): ``model.pth`` (final weights), ``last.pth`` (mid-run resume state, removed
once trained), ``key.json`` and the seed's finished ``seed_<k>/`` files above plus its overlays,
which are copied into the results folder. The seed's key (:func:`seed_key`) is a content
fingerprint of the settings, the seed, the bytes of every training and test image and label and
the stage's code: a re-run after a failure reuses every finished seed with the current key,
resumes a killed training after its last checkpoint, and empties a seed folder of another key.
Headline numbers (``mIoU``, ``mIoU_no_bg``, ``pixel_accuracy``, ``IoU``) are the means over seeds
of the per-seed values; each per-seed value comes from that seed's test-set confusion matrix.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from pipeline.config import section
from pipeline.datasets import PairDataset, load_configured
from pipeline.errors import ConfigError, DataError
from pipeline.imageio import atomic_path
from pipeline.results import provenance, read_json, seed_mean_std, write_csv, write_json
from pipeline.segmentation import metrics as M
from pipeline.fused import fused_folder
from pipeline.segmentation.data import SegItem, fused_items, validate_items
from pipeline.segmentation.model import resolve_config

ABSENT_RULE = ("IoU of a class with no ground-truth and no predicted pixel in the test set is "
               "undefined: null, listed in absent_classes, excluded from mIoU (denominator "
               "n_classes_scored). A class predicted but absent from the ground truth scores 0.")
_HEADLINE = ("mIoU", "mIoU_no_bg", "pixel_accuracy")


@dataclass
class Job:
    """Everything one method's segmentation run needs (picklable, shared by its seed units)."""

    cfg: dict
    dataset: str
    method: str
    classes: tuple[str, ...]
    ignore_index: int
    train: list[SegItem]
    test: list[SegItem]
    out_dir: Path
    model_dir: Path
    device: str
    image_folder: Path | None = None
    split: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    workers: int = 1              # seeds trained at once (pipeline.seedpool); > 1: one thread each
    _arrays: dict = field(default_factory=dict, repr=False)

    def arrays(self, split: str) -> list:
        """The decoded ``(image, label)`` pairs of ``split`` (read once, shared by the seeds)."""
        from pipeline.segmentation.data import read_items

        if split not in self._arrays:
            self._arrays[split] = read_items(getattr(self, split), len(self.classes), self.ignore_index)
        return self._arrays[split]

    def __getstate__(self) -> dict:
        """Pickled for a fork-server worker without the decoded images (it decodes its own)."""
        return {**self.__dict__, "_arrays": {}}


def seed_threads(job: Job) -> int:
    """Torch threads a seed trains with: 1 in a seed worker, else ``threads`` (null: the process's)."""
    import torch

    return 1 if job.workers > 1 else int(job.cfg["threads"] or torch.get_num_threads())


def method_names(params: Mapping) -> list[str]:
    """Methods to evaluate: ``ir`` and ``vis`` first (always, the reference rows), then
    every ``fusion.methods`` entry (each has its ``segment@<method>`` DVC stage), without repeats."""
    chosen = list(section(params, "fusion.methods") or {})
    return list(dict.fromkeys(["ir", "vis", *(str(n) for n in chosen)]))


def make_job(cfg: Mapping, dataset: PairDataset, method: str, items: Sequence[SegItem],
             device: str = "auto", image_folder: Path | None = None, params: Mapping | None = None) -> Job:
    """A :class:`Job` from a resolved config and ready items; checks every label first."""
    from pipeline.device import resolve_device

    classes = tuple(dataset.seg_classes)
    if not classes:
        raise DataError("dataset has no segmentation classes (expected kind msrs)", dataset.root)
    train = [i for i in items if i.split == "train"]
    test = [i for i in items if i.split == "test"]
    for split, part in (("train", train), ("test", test)):
        if not part:
            raise DataError(f"no {split} images for segmentation", image_folder or dataset.root)
    validate_items(items, len(classes), dataset.ignore_index)
    from pipeline.seedpool import resolve_workers

    name = dataset.name
    device = resolve_device(device)
    workers = resolve_workers(cfg.get("parallel_seeds", "auto"), len(cfg["seeds"]), device,
                              "segmentation.parallel_seeds")
    return Job(dict(cfg), name, method, classes, dataset.ignore_index, train, test,
               Path(cfg["results_root"]) / name / method, Path(cfg["models_root"]) / name / method,
               device, image_folder,
               {"train": [i.name for i in train], "test": [i.name for i in test]}, dict(params or {}), workers)


def prepare(params: Mapping, method: str, dataset: str | None = None) -> Job:
    """Resolve ``params["segmentation"]``, load the dataset and the method's fused images."""
    cfg = resolve_config(params.get("segmentation"))
    name = dataset or cfg["dataset"]
    data = load_configured(dict(params), name)
    folder = fused_folder(cfg["fused_root"], name, method)
    items = fused_items(data, folder)
    device = cfg["device"] or params.get("device", "auto")
    return make_job(cfg, data, method, items, device, folder, params)


def _confusion_frame(confusion: np.ndarray, classes: Sequence[str]):
    import pandas as pd

    frame = pd.DataFrame(confusion, index=list(classes), columns=list(classes))
    frame.index.name = "ground_truth\\predicted"
    return frame


def save_npz(path: Path, **arrays) -> Path:
    """``np.savez_compressed`` atomically (string arrays stored as unicode: no pickle needed)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Use ``n`` torch CPU threads inside the block (``None``: unchanged), then restore. One thread
    avoids OpenMP spin-wait collapse when the cores are oversubscribed by other processes."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seed_dir(job: Job, seed: int) -> Path:
    return job.out_dir / f"seed_{seed}"


def seed_work(job: Job, seed: int) -> Path:
    return job.model_dir / f"seed_{seed}"


SEED_FILES = ("metrics.json", "confusion.csv", "per_image_confusion.npz")


def seed_key(job: Job, seed: int) -> str:
    """Content key of one seed's result (training key + test images/labels + evaluation settings)."""
    from pipeline.fingerprint import code_digest, content_key, file_digest
    from pipeline.segmentation.train import fingerprint

    test = [(i.name, file_digest(i.image), file_digest(i.label)) for i in job.test]
    return content_key(train=fingerprint(job.cfg, job.train, seed, len(job.classes)), test=test,
                       eval=job.cfg["eval"], device=job.device, code=code_digest("pipeline.segmentation.run"))


def _claim(work: Path, key: str) -> None:
    """``work`` belongs to ``key`` afterwards; a folder of another key is emptied first."""
    import shutil

    marker = work / "key.json"
    if work.is_dir() and (not marker.is_file() or read_json(marker).get("key") != key):
        shutil.rmtree(work)
    if not marker.is_file():
        write_json(marker, {"key": key})


def _publish(job: Job, seed: int, overlays: bool) -> None:
    import shutil

    work, out = seed_work(job, seed), seed_dir(job, seed)
    out.mkdir(parents=True, exist_ok=True)
    for name in SEED_FILES:
        shutil.copyfile(work / name, out / name)
    if overlays and (work / "overlays").is_dir():
        shutil.copytree(work / "overlays", job.out_dir / "overlays", dirs_exist_ok=True)


def run_seed(job: Job, seed: int, overlays: bool = True, progress: bool = True, resume: bool = True) -> dict:
    """Train and evaluate one seed in its work folder (a finished seed of the same key is reused,
    a killed one resumed); copy its ``seed_<k>/`` outputs to the results; return its metrics."""
    from pipeline.device import seed_everything
    from pipeline.segmentation.evaluate import evaluate_items
    from pipeline.segmentation.model import count_parameters
    from pipeline.segmentation.train import train_seed

    work, key = seed_work(job, seed), seed_key(job, seed)
    done = work / "metrics.json"
    if resume and done.is_file() and all((work / n).is_file() for n in SEED_FILES):
        record = read_json(done)
        if record.get("key") == key:
            _publish(job, seed, overlays)
            return record
    if resume:
        _claim(work, key)
    seed_everything(seed)
    if job.device.startswith("cuda"):        # reproducible convolutions on the GPU as well
        import torch

        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    n = len(job.classes)
    tag = f"{job.method} seed {seed}"
    n_overlays = int(job.cfg["eval"]["overlays"]) if overlays else 0
    threads = seed_threads(job)
    with torch_threads(threads):
        start = time.perf_counter()
        model, history = train_seed(job.cfg, job.train, n, seed, work, job.device, resume, progress,
                                    job.ignore_index, desc=tag, arrays=job.arrays("train"))
        trained = time.perf_counter()
        per_image = evaluate_items(model, job.test, n, job.cfg, job.device, work / "overlays", n_overlays,
                                   job.ignore_index, progress, desc=f"{tag} test", arrays=job.arrays("test"))
    confusion = per_image.sum(0)
    scores = M.summarize(confusion, job.classes, background=0)
    record = {"dataset": job.dataset, "method": job.method, "seed": int(seed), **scores,
              "absent_class_rule": ABSENT_RULE, "n_train_images": len(job.train),
              "n_test_images": len(job.test), "model_parameters": count_parameters(model),
              "threads": threads, "parallel_seeds": job.workers,
              "train_seconds": round(trained - start, 3), "eval_seconds": round(time.perf_counter() - trained, 3),
              "history": history, "key": key}
    save_npz(work / "per_image_confusion.npz", names=np.array([i.name for i in job.test]),
             classes=np.array(job.classes), confusion=per_image)
    write_csv(work / "confusion.csv", _confusion_frame(confusion, job.classes))
    write_json(work / "metrics.json", record)   # written last: the seed's "finished" marker
    _publish(job, seed, overlays)
    return record


def aggregate(job: Job, seeds: Sequence[int]) -> dict:
    """Mean/std over the seeds' ``seed_<k>/`` outputs → top-level metrics.json, confusion.csv and
    per_image_confusion.npz. Returns the metrics dict."""
    records, stacks = [], []
    for seed in seeds:
        folder = seed_dir(job, seed)
        records.append(read_json(folder / "metrics.json"))
        with np.load(folder / "per_image_confusion.npz") as data:
            if list(data["names"]) != [i.name for i in job.test]:
                raise DataError("per-image confusion names differ from the test split (stale seed output?)",
                                folder / "per_image_confusion.npz")
            stacks.append(data["confusion"])
    per_seed = np.stack(stacks).astype(np.int64)
    mean, std, n_seeds = {}, {"IoU": {}}, {}
    for key in _HEADLINE:
        mean[key], std[key], n_seeds[key] = seed_mean_std([_num(r[key]) for r in records])
    mean["IoU"] = {}
    for name in job.classes:
        mean["IoU"][name], std["IoU"][name], _ = seed_mean_std([_num(r["IoU"][name]) for r in records])
    pooled = per_seed.sum(axis=(0, 1))
    # absent in every seed: the mean IoU is null; absent in some seeds only: mean of the others
    absent = [c for c in job.classes if all(c in r["absent_classes"] for r in records)]
    result = {
        "dataset": job.dataset, "method": job.method, "class_names": list(job.classes),
        "background_class": job.classes[0], "ignore_index": job.ignore_index,
        **{k: mean[k] for k in _HEADLINE}, "IoU": mean["IoU"],
        "mean": mean, "std": std, "std_ddof": 1, "seeds": [int(s) for s in seeds], "n_seeds": len(seeds),
        "per_seed": {str(r["seed"]): {k: r[k] for k in (*_HEADLINE, "IoU", "absent_classes",
                                                        "n_classes_scored", "n_classes_scored_no_bg")}
                     for r in records},
        "absent_classes": absent, "absent_class_rule": ABSENT_RULE,
        "n_train_images": len(job.train), "n_test_images": len(job.test), "n_test_pixels": int(pooled.sum() // len(seeds)),
        "gt_pixels": records[0]["gt_pixels"], "model_parameters": records[0]["model_parameters"],
        "image_folder": str(job.image_folder) if job.image_folder else None,
        "confusion_csv": "test-set confusion summed over seeds (rows ground truth, columns predicted)",
        "evaluation": "full resolution, reflect-padded to a multiple of "
                      f"{job.cfg['eval']['pad_multiple']} and cropped back; single scale, no flip",
        "params": job.cfg,
        "provenance": provenance(job.cfg, job.split, device=job.device,
                                 profile=job.params.get("profile"), dataset_config=section(job.params, f"datasets.{job.dataset}")),
    }
    save_npz(job.out_dir / "per_image_confusion.npz", names=np.array([i.name for i in job.test]),
             classes=np.array(job.classes), seeds=np.array(list(seeds), dtype=np.int64),
             confusion=per_seed.sum(0), per_seed=per_seed)
    write_csv(job.out_dir / "confusion.csv", _confusion_frame(pooled, job.classes))
    write_json(job.out_dir / "metrics.json", result)
    return result


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def run_job(job: Job, progress: bool = True, resume: bool = True) -> dict:
    """All seeds one after the other, then :func:`aggregate` (library entry point; the Prefect flow
    runs the seeds as separate units)."""
    run_seeds(job, job.cfg["seeds"], progress, resume)
    return aggregate(job, job.cfg["seeds"])


def run_seeds(job: Job, seeds: Sequence[int], progress: bool = True, resume: bool = True) -> list[dict]:
    """Every seed of ``seeds`` (:func:`run_seed`; the first writes the overlays), ``job.workers``
    at a time in worker processes (:mod:`pipeline.seedpool`; a fork shares the images decoded once)."""
    from pipeline.seedpool import run_seeds as pool, start_method

    if job.workers > 1 and start_method() == "fork":
        job.arrays("train"), job.arrays("test")   # decoded before the fork: shared by the workers
    return pool(run_seed, [(job, seed, k == 0, progress, resume) for k, seed in enumerate(seeds)],
                job.workers, 1, [f"{job.method} seed {seed}" for seed in seeds],
                preload=("segmentation_models_pytorch",))


def run_method(params: Mapping, method: str, dataset: str | None = None, progress: bool = True) -> dict:
    """:func:`prepare` + :func:`run_job` for one method."""
    if not method:
        raise ConfigError("no method given")
    return run_job(prepare(params, method, dataset), progress)
