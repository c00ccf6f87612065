"""Ultralytics YOLO: train one seed and evaluate it on the test split, hermetically.

Everything ultralytics-specific lives here (imports are local: ultralytics costs ~2 s):

* the model is built from a model yaml (a file in the repo such as
  ``configs/detection/yolo-pico.yaml`` or one shipped inside ultralytics such as ``yolov5s.yaml``)
  or loaded from a **local** ``.pt``; a bare ``*.pt`` name that is not a file is refused, because
  ultralytics would try to download it;
* the call arguments that keep it offline and reproducible (``amp=False`` – no AMP check
  download –, ``plots=False``, ``workers=0``, ``deterministic=True``, ``seed``) are fixed and
  identical for every method; the font it checks is pre-seeded by :mod:`pipeline.hermetic`;
* ultralytics sets ``torch.set_num_threads(1)`` on small CPUs, so the torch thread count is
  restored at the start of training/validation and after every call;
* ultralytics draws its augmentations from Python's *global* ``random`` generator, which other
  threads of the process share — Prefect's engine threads draw from it (jittered intervals) while
  a flow trains, which made the same seed give mAP50 0.559, 0.564, 0.562 in three runs (0.646 vs
  0.568 with a thread drawing every 3 ms). Training therefore gives ultralytics a private
  ``random.Random`` (:func:`private_python_random`), seeded by ultralytics itself as before;
* the test evaluation uses :class:`RecordingValidator`, ultralytics' own validator that also keeps
  every image's ground truth and detections (pixels of the original image), written as
  ``predictions.json`` and re-scored exactly by :mod:`pipeline.detection.ap`.
"""
from __future__ import annotations

import contextlib
import logging
import random
import re
import sys
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.hermetic import project_root, restore_torch_threads

# Arguments no params.yaml setting may change: they keep runs offline, reproducible and comparable.
FIXED_ARGS = {"workers": 0, "plots": False, "amp": False, "deterministic": True, "verbose": False,
              "exist_ok": True, "save": True}
TRAIN_KEYS = ("imgsz", "epochs", "batch", "nbs", "optimizer", "lr0", "warmup_epochs", "mosaic",
              "patience", "cache")


def ultralytics_version() -> str:
    import ultralytics

    return ultralytics.__version__


def yolo_device(device: str) -> str:
    """Torch device string (``cpu``, ``cuda``, ``cuda:1``) -> ultralytics' (``cpu``, ``0``, ``1``)."""
    if device.startswith("cuda"):
        return device.split(":", 1)[1] if ":" in device else "0"
    return device


def resolve_model(spec: str, root: Path | None = None) -> str:
    """A model yaml/``.pt`` that exists locally; never a name ultralytics would download."""
    if not spec:
        raise ConfigError("detection.model is empty; give a model yaml or a local .pt file")
    root = root or project_root()
    path = Path(spec) if Path(spec).is_absolute() else root / spec
    if path.is_file():
        return str(path)
    if spec.endswith(".pt"):
        raise ConfigError(f"detection.model {spec!r}: weights file not found (FuseBench never downloads "
                          "weights; give the path of a local .pt or a model yaml)", path)
    if spec.endswith((".yaml", ".yml")) and "/" not in spec:
        from ultralytics.utils.checks import check_yaml

        unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", spec)  # yolov5s.yaml -> yolov5.yaml + scale s
        if check_yaml(unified, hard=False) or check_yaml(spec, hard=False):  # local search only
            return spec
        raise ConfigError(f"detection.model {spec!r}: no such model yaml in the project or in "
                          "ultralytics' cfg/models")
    raise ConfigError(f"detection.model {spec!r}: file not found", path)


def model_identity(settings: dict) -> dict[str, str]:
    """MD5 of the local model yaml/``.pt`` and pretrained weights (for the resume fingerprint);
    a yaml shipped inside ultralytics is identified by its name and the ultralytics version."""
    from pipeline.results import file_digest

    out = {}
    for key in ("model", "pretrained"):
        if settings.get(key):
            resolved = resolve_model(settings[key])
            out[key] = file_digest(resolved) if Path(resolved).is_file() else f"{resolved}@{ultralytics_version()}"
    return out


def _threads_callback(_owner) -> None:
    restore_torch_threads()


def _progress_callback(trainer) -> None:
    """One line per epoch (ultralytics' own progress bars are silenced)."""
    fitness = (trainer.metrics or {}).get("metrics/mAP50(B)") if trainer.fitness is not None else None
    tail = f", val mAP50 {fitness:.4f}" if fitness is not None else ""   # none with select: last
    step = (f"epoch {trainer.epoch + 1}/{trainer.epochs}" if trainer.epoch < trainer.epochs
            else "best.pt on the validation split")
    print(f"[detect] {Path(trainer.save_dir).parent.name}/{Path(trainer.save_dir).name}: {step}{tail}",
          flush=True)


def _quiet() -> None:
    logging.getLogger("ultralytics").setLevel(logging.WARNING)


def train_args(settings: dict, data_yaml: Path, run_dir: Path, seed: int, device: str) -> dict[str, Any]:
    """The keyword arguments of ``YOLO.train`` for one seed (identical for every method)."""
    args = {k: settings[k] for k in TRAIN_KEYS if settings.get(k) is not None}
    args.update(settings.get("extra") or {})
    args.update(FIXED_ARGS)
    args.update(data=str(data_yaml), seed=int(seed), device=yolo_device(device),
                project=str(Path(run_dir).resolve().parent), name=Path(run_dir).name, val=True)
    return args


# ultralytics modules that call ``random.*`` during training (imported before the swap, so none
# binds the global generator later); any other loaded ``ultralytics.*`` module is swapped too.
RANDOM_USERS = ("ultralytics.data.augment", "ultralytics.data.base", "ultralytics.data.build",
                "ultralytics.data.dataset", "ultralytics.data.utils", "ultralytics.utils.torch_utils",
                "ultralytics.models.yolo.detect.train")


@contextlib.contextmanager
def private_python_random():
    """Point the ``random`` name of every loaded ultralytics module at one private
    ``random.Random`` for the duration (restored afterwards). Its ``seed()`` / ``random()`` /
    ``uniform()`` ... are those of the module, so ultralytics' own seeding (``init_seeds``) and
    draws work unchanged, but no other thread can advance the generator between two draws."""
    import importlib

    for name in RANDOM_USERS:
        importlib.import_module(name)
    generator = random.Random(0)
    swapped = [module for name, module in list(sys.modules.items())
               if name.startswith("ultralytics") and getattr(module, "random", None) is random]
    for module in swapped:
        module.random = generator
    try:
        yield generator
    finally:
        for module in swapped:
            module.random = random


def train(settings: dict, data_yaml: Path, run_dir: Path, seed: int, device: str,
          callbacks: dict[str, list] | None = None, key: str = "", resume: dict | None = None) -> Path:
    """Train one seed with :mod:`pipeline.detection.trainer` (``settings`` ``select`` and
    ``checkpoint_every``; ``resume``: a state of :func:`~pipeline.detection.trainer.load_resume`
    to continue from); returns ``<run_dir>/weights/best_state.pt`` (:func:`save_weights_only`,
    carrying ``key``); ultralytics' own ``best.pt``/``last.pt`` and ``resume.pt`` are removed.
    ``callbacks`` adds ultralytics callbacks ``{event: [fn(trainer), ...]}`` (benchmarks)."""
    from ultralytics import YOLO

    from pipeline.detection.trainer import RESUME_NAME, trainer_class

    _quiet()
    model_path = resolve_model(settings["model"])
    model = YOLO(model_path, task="detect")
    if settings.get("pretrained"):
        if not str(settings["pretrained"]).endswith(".pt"):
            raise ConfigError(f"detection.pretrained {settings['pretrained']!r} must be a local .pt file")
        model.load(resolve_model(settings["pretrained"]))
    for event in ("on_pretrain_routine_end", "on_train_start"):
        model.add_callback(event, _threads_callback)
    model.add_callback("on_fit_epoch_end", _progress_callback)
    for event, fns in (callbacks or {}).items():
        for fn in fns:
            model.add_callback(event, fn)
    try:
        with private_python_random() as generator:
            trainer = trainer_class(settings.get("select", "best"), int(settings.get("checkpoint_every") or 1),
                                    key, resume, generator)
            model.train(trainer=trainer, **train_args(settings, data_yaml, run_dir, seed, device))
    finally:
        restore_torch_threads()
    best = Path(run_dir) / "weights" / "best.pt"
    if not best.is_file():
        raise RuntimeError(f"ultralytics finished without writing {best}")
    weights = save_weights_only(model.model, best.with_name(WEIGHTS_ONLY_NAME), key)
    for name in ("best.pt", "last.pt", RESUME_NAME):
        best.with_name(name).unlink(missing_ok=True)
    return weights


WEIGHTS_ONLY_NAME = "best_state.pt"


def save_weights_only(network, path: Path, key: str = "") -> Path:
    """The trained network as plain data ({"yaml", "names", "state_dict", "key"}), loadable with
    ``torch.load(weights_only=True)`` — unlike ultralytics' ``best.pt``, a pickle of the module.
    After ``YOLO.train`` the wrapper holds the best epoch (ultralytics reloads ``best.pt``)."""
    state = {k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu()
             for k, v in network.state_dict().items()}
    return write_weights({"yaml": dict(network.yaml), "names": {int(k): str(v) for k, v in network.names.items()},
                          "state_dict": state}, path, key)


def write_weights(saved: dict, path: Path, key: str = "") -> Path:
    """Write ``{"yaml", "names", "state_dict"}`` (+ ``key``) as :func:`load_weights_only` reads it."""
    from pipeline.imageio import save_torch

    return save_torch(path, {**saved, "key": key})


def load_weights_only(path: Path):
    """Rebuild the detection network saved by :func:`save_weights_only` (strict, weights_only)."""
    from ultralytics.nn.tasks import DetectionModel

    from pipeline.errors import DataError
    from pipeline.imageio import load_torch

    saved = load_torch(path, "detection checkpoint")      # unreadable: one line naming the file
    try:
        network = DetectionModel(cfg=saved["yaml"], nc=len(saved["names"]), verbose=False)
        network.load_state_dict(saved["state_dict"], strict=True)
    except Exception as err:  # key / shape errors: report them as bad input
        raise DataError(f"not a detection checkpoint written by this pipeline: {err}", path) from err
    network.names = saved["names"]
    return network.eval()


def _recording_validator():
    from ultralytics.models.yolo.detect import DetectionValidator

    class RecordingValidator(DetectionValidator):
        """Ultralytics' detection validator that also keeps each image's detections in pixels of
        the original image, keyed by image file. The letterbox is undone (``(x - pad) / gain``)
        but boxes are *not* clipped to the image: ultralytics matches the unclipped boxes, so
        :mod:`pipeline.detection.ap` reproduces its numbers exactly from these records."""

        def init_metrics(self, model) -> None:
            super().init_metrics(model)
            self.records: dict[str, dict] = {}

        def update_metrics(self, preds, batch) -> None:
            super().update_metrics(preds, batch)
            for si, pred in enumerate(preds):
                pbatch = self._prepare_batch(si, batch)
                (gain_y, gain_x), (pad_x, pad_y) = pbatch["ratio_pad"]
                boxes = pred["bboxes"].double().cpu().numpy().copy()
                boxes[:, [0, 2]] = (boxes[:, [0, 2]] - pad_x) / gain_x
                boxes[:, [1, 3]] = (boxes[:, [1, 3]] - pad_y) / gain_y
                self.records[str(pbatch["im_file"])] = {
                    "boxes": boxes.round(4).tolist(),
                    "scores": pred["conf"].double().cpu().numpy().tolist(),
                    "class_ids": pred["cls"].cpu().numpy().astype(int).tolist()}

    return RecordingValidator


def evaluate(weights: Path, data_yaml: Path, settings: dict, device: str, out_dir: Path,
             split: str = "test") -> tuple[dict, dict[str, dict], list[str]]:
    """Validate ``weights`` on ``split`` with ultralytics; returns (metrics, detections by image
    stem, model class names). Metrics: mAP50, mAP50_95, precision, recall (at the max-F1
    confidence, ultralytics' ``mp``/``mr``) and ``AP50`` by class id for classes with ground truth."""
    _quiet()
    network = load_weights_only(Path(weights))
    # what YOLO.val does with a loaded model: rect batches, these arguments, mode "val"
    args = {"task": "detect", "rect": True, "data": str(data_yaml), "split": split, "imgsz": settings["imgsz"],
            "batch": settings["batch"], "conf": settings["conf"], "iou": settings["iou"],
            "max_det": settings["max_det"], "device": yolo_device(device), "workers": 0, "plots": False,
            "verbose": False, "half": False, "save_json": False, "project": str(Path(out_dir).resolve()),
            "name": f"val_{split}", "exist_ok": True, "mode": "val"}
    validator = _recording_validator()(args=args)
    validator.add_callback("on_val_start", _threads_callback)
    try:
        validator(model=network)
    finally:
        restore_torch_threads()
    empty = Path(out_dir) / f"val_{split}"
    if empty.is_dir() and not any(empty.iterdir()):
        empty.rmdir()
    box = validator.metrics.box
    metrics = {"mAP50": float(box.map50), "mAP50_95": float(box.map), "precision": float(box.mp),
               "recall": float(box.mr),
               "AP50_by_id": {int(c): float(v) for c, v in zip(box.ap_class_index, box.ap50)}}
    detections = {Path(k).stem: v for k, v in validator.records.items()}
    names = [network.names[i] for i in sorted(network.names)]
    return metrics, detections, names
