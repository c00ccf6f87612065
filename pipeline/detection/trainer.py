"""FuseBench's ultralytics detection trainer: less per-epoch overhead, exact mid-run resume.

A subclass of ultralytics' ``DetectionTrainer`` (Jocher et al., Ultralytics YOLO, 2023) that
changes *when* it validates and saves, never how it trains:

* ``select: best`` (the published protocol) validates after every epoch and keeps the best
  epoch; ``select: last`` (the demo) skips the per-epoch validation pass and the final re-validation
  of ``best.pt`` and keeps the last epoch, as the segmentation stage does. The stage's own test
  evaluation (:func:`pipeline.detection.yolo.evaluate`) is the same either way;
* ultralytics' checkpoints (a pickle of the whole model + optimiser, about 0.5 s each for the
  demo's pico network) are written every ``checkpoint_every`` epochs and after the last one instead
  of after every epoch;
* with every such checkpoint the trainer also writes ``resume.pt``: model, EMA, optimiser, early
  stopping and **every random generator** the training draws from (torch, numpy, the private
  Python generator of :func:`pipeline.detection.yolo.private_python_random`, the training
  loader's shuffle generator), plain tensors and numbers loadable with
  ``torch.load(weights_only=True)``. A killed training started again with the same key continues
  after the saved epoch with every generator where it was. (Not bit-identical to an
  uninterrupted run yet: on the tiny test set the weights differ by up to 0.05 after one more
  epoch; ultralytics' gradient-accumulation counter also restarts, and with ``close_mosaic`` > 0
  a closed mosaic is closed again, which draws once more from the shuffle generator.)
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.imageio import save_torch

log = logging.getLogger("fusebench.detection")

RESUME_NAME = "resume.pt"
RESUME_FORMAT = "fusebench-detection-resume/1"


def load_resume(path: Path, key: str) -> dict | None:
    """The resume state at ``path`` if it was written for ``key`` (else ``None``)."""
    import torch

    if not Path(path).is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - an unreadable checkpoint means: train from the start
        log.warning("ignoring unreadable resume checkpoint %s: %s", path, err)
        return None
    if state.get("format") != RESUME_FORMAT or state.get("key") != key:
        log.warning("ignoring resume checkpoint %s: written for other inputs", path)
        return None
    return state


def _numpy_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": keys.astype(np.int64).tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached": float(cached)}


def _set_numpy_state(state: dict) -> None:
    np.random.set_state((state["name"], np.asarray(state["keys"], dtype=np.uint32), state["pos"],
                         state["has_gauss"], state["cached"]))


def trainer_class(select: str, checkpoint_every: int, key: str, resume: dict | None, generator):
    """A ``DetectionTrainer`` subclass for one seed: validation per ``select`` (``best``|``last``),
    checkpoints every ``checkpoint_every`` epochs, ``resume.pt`` written for ``key`` and, when
    ``resume`` is a state of :func:`load_resume`, training continued after its epoch.
    ``generator`` is the private ``random.Random`` ultralytics draws from."""
    import torch
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.utils.torch_utils import unwrap_model

    if select not in ("best", "last"):
        from pipeline.errors import ConfigError

        raise ConfigError(f"detection.select must be 'best' or 'last', got {select!r}")

    class FuseBenchTrainer(DetectionTrainer):
        resumed_from_epoch: int | None = None

        def validate(self):
            if select == "best":
                return super().validate()
            return dict(self.metrics or {}), None   # no validation pass; fitness None keeps the last epoch

        def final_eval(self):
            if select == "best":
                super().final_eval()

        def save_model(self):
            final = self.epoch + 1 >= self.epochs
            if not final and (self.epoch + 1) % int(checkpoint_every):
                return False
            saved = super().save_model()
            self._save_resume_state()
            return saved

        def _save_resume_state(self) -> None:
            network = unwrap_model(self.model)
            state = {"format": RESUME_FORMAT, "key": key, "epoch": int(self.epoch),
                     "final": self.epoch + 1 >= self.epochs, "select": select,
                     "yaml": dict(network.yaml), "names": {int(k): str(v) for k, v in network.names.items()},
                     "model": {k: v.detach().cpu() for k, v in network.state_dict().items()},
                     "ema": {k: v.detach().cpu() for k, v in self.ema.ema.state_dict().items()},
                     "ema_updates": int(self.ema.updates), "optimizer": self.optimizer.state_dict(),
                     "best_fitness": None if self.best_fitness is None else float(self.best_fitness),
                     "stopper": {"best_fitness": _float(self.stopper.best_fitness),
                                 "best_epoch": int(self.stopper.best_epoch)},
                     "torch_rng": torch.get_rng_state(), "numpy_rng": _numpy_state(),
                     "python_rng": list(generator.getstate()[1]), "python_rng_version": generator.getstate()[0],
                     "python_rng_gauss": generator.getstate()[2],
                     "loader_rng": self.train_loader.generator.get_state()}
            save_torch(self.wdir / RESUME_NAME, state)

        def resume_training(self, ckpt):
            if resume is None:
                return super().resume_training(ckpt)
            unwrap_model(self.model).load_state_dict(resume["model"])
            self.ema.ema.load_state_dict(resume["ema"])
            self.ema.updates = resume["ema_updates"]
            self.optimizer.load_state_dict(resume["optimizer"])
            self.best_fitness = resume["best_fitness"]
            self.stopper.best_fitness = resume["stopper"]["best_fitness"]
            self.stopper.best_epoch = resume["stopper"]["best_epoch"]
            self.start_epoch = int(resume["epoch"]) + 1
            self.resumed_from_epoch = self.start_epoch
            # the persistent loader iterator draws one number when created: create it now, then
            # restore the shuffle generator, as in the uninterrupted run after its first epoch
            if self.train_loader.iterator is None:
                self.train_loader.iterator = self.train_loader._get_iterator()
            self.train_loader.generator.set_state(resume["loader_rng"])
            torch.set_rng_state(resume["torch_rng"])
            _set_numpy_state(resume["numpy_rng"])
            generator.setstate((resume["python_rng_version"], tuple(resume["python_rng"]), resume["python_rng_gauss"]))
            log.info("resuming detection training after epoch %d", resume["epoch"] + 1)

    return FuseBenchTrainer


def finished_weights(state: dict) -> dict | None:
    """The network ultralytics would keep from a resume state written after the *last* epoch with
    ``select: last`` (its EMA, rounded to half precision as in ``best.pt``), as
    :func:`pipeline.detection.yolo.save_weights_only` data; ``None`` when training must go on."""
    if not state.get("final") or state.get("select") != "last":
        return None
    weights = {k: v.half().float() if v.is_floating_point() else v for k, v in state["ema"].items()}
    return {"yaml": state["yaml"], "names": state["names"], "state_dict": weights}


def _float(value):
    return None if value is None else float(value)
