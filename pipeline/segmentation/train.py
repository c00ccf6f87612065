"""Train DeepLabV3+ on one method's fused training images for one seed, resumably.

Recipe (``segmentation.train``): cross-entropy with ``ignore_index`` 255 (+ ``dice_weight`` ×
multiclass Dice loss, Milletari et al. 2016, ignore pixels excluded), SGD with momentum or AdamW,
the "poly" learning-rate schedule of DeepLab (Chen et al., TPAMI 2018)
``lr_i = lr · (1 − i / I)^power`` per iteration ``i`` of ``I = epochs · steps_per_epoch``, batches of
augmented crops (:class:`~pipeline.segmentation.data.TrainSet`) with the last incomplete batch
dropped (batch norm needs ≥ 2 samples in training mode). The final weights are used for testing
(MSRS has no validation split; nothing is selected on the test set).

Reproducible: ``seed`` fixes the initial weights (``torch.manual_seed`` before the model is built),
the per-epoch shuffle (a generator seeded with ``(seed, epoch)``) and the augmentation
(``default_rng([seed, epoch, index])``); dropout uses the torch RNG whose state is checkpointed.
Resumable: every ``checkpoint_every`` epochs ``<ckpt_dir>/last.pth`` stores model, optimiser, RNG
state, loss history and a content fingerprint (settings, training image and label bytes, code); with ``resume=True`` a run with
the same fingerprint continues after it, and a finished run (``model.pth``) is not trained again.
Files are written atomically and load with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Mapping, Sequence

import torch

from pipeline.errors import DataError
from pipeline.imageio import save_torch
from pipeline.segmentation.data import SegItem, TrainSet
from pipeline.segmentation.model import build_model

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "fusebench-segmentation/1"
FINAL_NAME = "model.pth"
LAST_NAME = "last.pth"


def fingerprint(cfg: Mapping, items: Sequence[SegItem], seed: int, n_classes: int) -> str:
    """Key of everything that changes the trained weights (:mod:`pipeline.fingerprint`): the
    settings, the seed, the bytes of every training image and label (an image replaced under the
    same name retrains) and the source of the training code."""
    from pipeline import fingerprint as F

    return F.content_key(
        model=cfg["model"], seed=int(seed), classes=n_classes,
        train={k: v for k, v in cfg["train"].items() if k not in ("num_workers", "checkpoint_every")},
        items=[(i.name, F.file_digest(i.image), F.file_digest(i.label)) for i in items],
        code=F.code_digest("pipeline.segmentation.train"))


def poly_lr(base_lr: float, iteration: int, total: int, power: float) -> float:
    """DeepLab's poly schedule ``base_lr · (1 − iteration / total)^power``."""
    return float(base_lr) * (1.0 - min(iteration, total) / max(total, 1)) ** float(power)


def make_optimizer(model, train_cfg: Mapping):
    if train_cfg["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=float(train_cfg["lr"]), momentum=float(train_cfg["momentum"]),
                               weight_decay=float(train_cfg["weight_decay"]))
    return torch.optim.AdamW(model.parameters(), lr=float(train_cfg["lr"]), weight_decay=float(train_cfg["weight_decay"]))


def make_loss(train_cfg: Mapping, ignore_index: int):
    """``CE(ignore_index) + dice_weight · Dice`` as a function of (logits, target)."""
    ce = torch.nn.CrossEntropyLoss(ignore_index=ignore_index)
    weight = float(train_cfg.get("dice_weight") or 0.0)
    dice = None
    if weight > 0:
        from segmentation_models_pytorch.losses import DiceLoss

        dice = DiceLoss(mode="multiclass", from_logits=True, ignore_index=ignore_index)

    def loss(logits, target):
        value = ce(logits, target)
        return value + weight * dice(logits, target) if dice is not None else value

    return loss


def load_checkpoint(path: Path, fp: str) -> dict | None:
    """The checkpoint at ``path`` if readable and made with fingerprint ``fp``, else ``None``."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - an unreadable checkpoint is retrained, not fatal
        log.warning("ignoring unreadable checkpoint %s: %s", path, err)
        return None
    if state.get("format") == CHECKPOINT_FORMAT and state.get("fingerprint") == fp:
        return state
    log.warning("ignoring checkpoint %s: made with other settings or data", path)
    return None


def train_seed(cfg: Mapping, items: Sequence[SegItem], n_classes: int, seed: int, ckpt_dir: str | Path,
               device: str = "cpu", resume: bool = True, progress: bool = True,
               ignore_index: int = 255, desc: str = "segment",
               arrays: Sequence | None = None) -> tuple[torch.nn.Module, list[dict]]:
    """Train on ``items`` (the training split) and return ``(model in eval mode, loss history)``.

    ``cfg`` is a resolved ``segmentation`` section (:func:`~pipeline.segmentation.model.resolve_config`).
    Writes ``<ckpt_dir>/last.pth`` (resume state) and ``<ckpt_dir>/model.pth`` (final:
    ``{"format", "fingerprint", "epoch", "model": state_dict, "model_config", "n_classes", "history"}``);
    ``last.pth`` is removed once ``model.pth`` is written. ``arrays`` are the items' decoded
    ``(image, label)`` pairs when the caller already holds them (read once for every seed)."""
    from tqdm.auto import tqdm

    tcfg = cfg["train"]
    batch = int(tcfg["batch_size"])
    if len(items) < batch:
        raise DataError(f"{len(items)} training images but batch_size is {batch} "
                        "(need at least one full batch)", items[0].image.parent if items else None)
    ckpt_dir = Path(ckpt_dir)
    fp = fingerprint(cfg, items, seed, n_classes)
    model = build_model(cfg["model"], n_classes, seed).to(device)
    final = load_checkpoint(ckpt_dir / FINAL_NAME, fp) if resume else None
    if final is not None:
        model.load_state_dict(final["model"])
        log.info("%s: trained model found at %s, not training again", desc, ckpt_dir / FINAL_NAME)
        return model.eval(), list(final.get("history", []))
    optimizer = make_optimizer(model, tcfg)
    loss_fn = make_loss(tcfg, ignore_index)
    data = TrainSet(items, n_classes, tcfg, seed, ignore_index, arrays)
    steps = len(items) // batch
    total = steps * int(tcfg["epochs"])
    history: list[dict] = []
    start = 0
    state = load_checkpoint(ckpt_dir / LAST_NAME, fp) if resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        history, start = list(state["history"]), int(state["epoch"]) + 1
        log.info("%s: resuming after epoch %d from %s", desc, state["epoch"], ckpt_dir / LAST_NAME)
    for epoch in range(start, int(tcfg["epochs"])):
        data.set_epoch(epoch)
        generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch)
        loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, drop_last=True,
                                             generator=generator, num_workers=int(tcfg["num_workers"]))
        model.train()
        began = time.perf_counter()
        running, bar = 0.0, tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{tcfg['epochs']}",
                                 disable=not progress, leave=False)
        for step, (x, y) in enumerate(bar):
            lr = poly_lr(tcfg["lr"], epoch * steps + step, total, tcfg["poly_power"])
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = loss_fn(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += float(loss.detach())
            bar.set_postfix(loss=f"{running / (step + 1):.4f}", lr=f"{lr:.2e}")
        history.append({"epoch": epoch, "loss": running / steps, "lr": lr,
                        "seconds": round(time.perf_counter() - began, 3)})
        log.info("%s epoch %d: loss %.4f", desc, epoch, running / steps)
        if (epoch + 1) % int(tcfg["checkpoint_every"]) == 0 or epoch + 1 == int(tcfg["epochs"]):
            save_torch(ckpt_dir / LAST_NAME, {"format": CHECKPOINT_FORMAT, "fingerprint": fp, "epoch": epoch,
                                              "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                              "rng": torch.get_rng_state(), "history": history})
    save_torch(ckpt_dir / FINAL_NAME, {"format": CHECKPOINT_FORMAT, "fingerprint": fp,
                                       "epoch": int(tcfg["epochs"]) - 1, "model": model.state_dict(),
                                       "model_config": dict(cfg["model"]), "n_classes": n_classes,
                                       "history": history})
    (ckpt_dir / LAST_NAME).unlink(missing_ok=True)
    return model.eval(), history
