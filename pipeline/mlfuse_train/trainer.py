"""Train MLFNet with the published recipe (spec ``mlfuse.md`` section 10), reproducibly and resumably.

Recipe: batch 16 of aligned random 128×128 crops, model in training mode throughout, Adam (lr 1e-4,
betas (0.9, 0.999), eps 1e-8, weight decay 5e-5 coupled as L2 on every parameter), cosine annealing
over ``T_max = epochs`` to 0 stepped after every epoch, 501 epochs, the four losses of
:mod:`.losses` with weights 0.3 / 3 / 0.5 / 1. Every value comes from ``config``
(``params.yaml`` ``mlfuse.train``; :data:`DEFAULTS` holds the published values):

=====================  ==========================================================================
key                    meaning
=====================  ==========================================================================
sets, splits           training pair sets (``datasets:`` names or inline ``{kind, root}``), splits used
vsm_root               VSM stage output root (maps of img2 at ``<vsm_root>/<set>/img2/<name>.npy``)
epochs, batch_size     501, 16 (``drop_last: true`` as published; ``false`` keeps a short last batch)
crop                   128 (aligned random crop of img1, img2 and the VSM map)
lr, weight_decay       1e-4, 5e-5 (Adam, coupled L2); cosine schedule over ``epochs``
loss_weights           edge 0.3, saliency 3, cross_modal 0.5, fusion 1
vsm_bits               8: maps quantised as the official 8-bit PNGs were; null: float maps
init                   ``scratch`` (seeded default init) or fine-tuning from ``official`` (the
                       published weights), ``trained`` or a checkpoint path (as the ``mlfuse`` method's
                       ``weights`` option, :func:`pipeline.fusion.mlfuse.resolve_weights`)
seed                   drives initialisation, shuffling and crops
device, threads, amp   ``auto`` = CUDA if present; CPU threads (null = all); CUDA mixed precision
channels_last          NHWC training tensors (faster on CPU; same maths, other rounding order)
checkpoint_every       resume checkpoint period in epochs (the last epoch is always saved)
preview_every/_count   preview fusions of the first training pairs (0 = none)
=====================  ==========================================================================

Reproducible: ``seed`` seeds the torch RNG before the network is built (initialisation) and the
per-epoch generators of :mod:`.data` (shuffle, crops). Two CPU runs with the same seed give identical
checkpoints. Resumable: every ``checkpoint_every`` epochs (and after the last) a checkpoint
``<out_dir>/checkpoints/epoch_NNNN.pth`` holds model, optimiser, scheduler (and AMP scaler) states,
RNG states, the loss history and a fingerprint of the run; with ``resume=True`` a run with the same
fingerprint continues after the newest one and ends with exactly the weights of an uninterrupted run.
All files are written atomically and load with ``torch.load(..., weights_only=True)``.

Outputs: ``<out_dir>/model_fuse.pth`` in the official layout ``{"epoch": last epoch index,
"model": state_dict}`` (loadable by :func:`pipeline.fusion.mlfuse_net.load_mlfnet` and the ``mlfuse``
fusion method), ``<results_dir>/losses.csv`` (DVC plots: epoch, lr, total and the four losses, means
over the epoch's batches), ``<results_dir>/summary.json`` (provenance) and preview fusions
``<results_dir>/previews/epoch_NNNN/<set>__<name>.png`` every ``preview_every`` epochs.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from pipeline.device import resolve_device
from pipeline.errors import ConfigError, DataError
from pipeline.imageio import save_torch, write_image
from pipeline.mlfuse_train import data as D
from pipeline.mlfuse_train.losses import LOSS_NAMES, LOSS_WEIGHTS, mlfuse_loss, resolve_weights
from pipeline.results import provenance, write_csv, write_json

log = logging.getLogger(__name__)

#: Published values (the ``full`` profile); ``params.yaml`` ``mlfuse.train`` overrides them.
DEFAULTS: dict = {
    "seed": 0, "device": "auto", "threads": None, "amp": False, "channels_last": True, "init": "scratch",
    "epochs": 501, "batch_size": 16, "crop": 128, "lr": 1.0e-4, "weight_decay": 5.0e-5,
    "drop_last": True, "vsm_bits": 8, "loss_weights": dict(LOSS_WEIGHTS),
    "checkpoint_every": 100, "preview_every": 100, "preview_count": 2,
    "sets": None, "splits": ["train", "all"], "vsm_root": "data/vsm",
}
#: Settings that change the trained weights; a checkpoint is resumed only if they all match.
_FINGERPRINT_KEYS = ("seed", "init", "epochs", "batch_size", "crop", "lr", "weight_decay", "drop_last",
                     "vsm_bits", "loss_weights", "amp", "channels_last")
CHECKPOINT_FORMAT = "fusebench-mlfuse-train/1"
FINAL_NAME = "model_fuse.pth"


def resolve_config(config: Mapping | None) -> dict:
    """:data:`DEFAULTS` overridden by ``config``; unknown keys and bad values raise :class:`ConfigError`."""
    config = dict(config or {})
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"mlfuse.train: unknown key(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **config}
    out["loss_weights"] = resolve_weights(out.get("loss_weights"))
    for key in ("epochs", "batch_size", "crop", "checkpoint_every", "preview_every"):
        if not isinstance(out[key], int) or out[key] < (0 if key == "preview_every" else 1):
            raise ConfigError(f"mlfuse.train.{key} must be a positive integer, got {out[key]!r}")
    if out["crop"] < 15:
        raise ConfigError(f"mlfuse.train.crop must be at least 15 (MLFNet's smallest input), got {out['crop']}")
    return out


def fingerprint(config: Mapping, pairs: Sequence[D.TrainPair]) -> str:
    """Hash of the weight-relevant settings and the training pair list."""
    block = {k: config[k] for k in _FINGERPRINT_KEYS}
    block["pairs"] = [p.key for p in pairs]
    return hashlib.sha256(json.dumps(block, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_model(config: Mapping, device: str):
    """MLFNet initialised from ``seed`` (``init: scratch``) or loaded for fine-tuning
    (``init: official | trained | PATH``), in training mode on ``device``."""
    from pipeline.fusion.mlfuse import resolve_weights as weights_path
    from pipeline.fusion.mlfuse_net import MLFNet, load_mlfnet

    torch.manual_seed(int(config["seed"]))
    init = str(config["init"])
    model = MLFNet() if init == "scratch" else load_mlfnet(weights_path(init))
    model = model.to(device)
    if config.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    return model.train()


# --------------------------------------------------------------------------------------------
# checkpoints


def _rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _cpu_state(model) -> dict:
    """State dict as plain contiguous CPU tensors (whatever memory format training used)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def latest_checkpoint(folder: Path, fp: str) -> dict | None:
    """The newest readable checkpoint in ``folder`` whose fingerprint is ``fp`` (else ``None``)."""
    for path in sorted(folder.glob("epoch_*.pth"), reverse=True):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - an unreadable checkpoint is skipped, not fatal
            log.warning("ignoring unreadable checkpoint %s: %s", path, err)
            continue
        if state.get("format") == CHECKPOINT_FORMAT and state.get("fingerprint") == fp:
            return state
        log.warning("ignoring checkpoint %s: made with other settings or data", path)
    return None


# --------------------------------------------------------------------------------------------
# observability


def write_losses(path: Path, history: list[dict]) -> Path:
    """The DVC plots file: one row per epoch (epoch, lr, total, edge, saliency, cross_modal, fusion)."""
    frame = pd.DataFrame(history, columns=["epoch", "lr", "total", *LOSS_NAMES])
    return write_csv(path, frame)


@torch.no_grad()
def write_previews(model, arrays: D.TrainArrays, count: int, folder: Path, device: str) -> list[Path]:
    """Fuse the first ``count`` training pairs at full size in eval mode (state untouched)."""
    from pipeline.fusion.mlfuse import to_uint8_official  # min-max, ×255, truncate (spec section 8)

    was_training = model.training
    model.eval()
    written = []
    try:
        for i in range(min(count, len(arrays))):
            img1, img2 = (torch.from_numpy(a[i].astype(np.float32) / np.float32(255.0))[None, None].to(device)
                          for a in (arrays.img1, arrays.img2))
            fused = model(img1, img2)[0][0, 0].float().cpu().numpy()
            pair = arrays.pairs[i]
            written.append(write_image(folder / f"{pair.set}__{pair.name}.png", to_uint8_official(fused)))
    finally:
        model.train(was_training)
    return written


# --------------------------------------------------------------------------------------------
# training


def train_step(model, optimizer, scaler, batch, weights: Mapping[str, float] | None = None,
               amp: bool = False, channels_last: bool = False):
    """One optimisation step on ``batch = (img1, img2, vsm2)``; returns the :class:`LossTerms`.

    Forward (under CUDA autocast when ``amp``; NHWC tensors when ``channels_last``, which oneDNN
    convolves ~1.7× faster on this CPU), the four losses in float32, backward through the (possibly
    scaling) ``scaler``, optimiser step.
    """
    if channels_last:
        batch = [t.contiguous(memory_format=torch.channels_last) for t in batch]
    img1, img2, vsm2 = batch
    with torch.autocast(device_type="cuda", enabled=amp):
        outputs = model(img1, img2)
    terms = mlfuse_loss([o.float() for o in outputs], img1, img2, vsm2, weights)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(terms.total).backward()
    scaler.step(optimizer)
    scaler.update()
    return terms


def make_optimizer(model, cfg: Mapping):
    """Adam (lr, coupled L2 weight decay on every parameter) and cosine annealing over the epochs."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg["epochs"], eta_min=0.0)
    return optimizer, scheduler


def train(config: Mapping | None, pairs: Sequence[D.TrainPair], out_dir: str | Path = "models/mlfuse",
          results_dir: str | Path = "results/mlfuse_train", resume: bool = True, progress: bool = True,
          params: Mapping | None = None) -> Path:
    """Train MLFNet on ``pairs`` and return the path of ``<out_dir>/model_fuse.pth``.

    ``config``: the ``mlfuse.train`` section (missing keys take :data:`DEFAULTS`). ``pairs``: from
    :func:`pipeline.mlfuse_train.data.training_pairs` (any mix of sets, VSM maps of img2 from the VSM
    stage). ``resume``: continue from the newest matching checkpoint in ``<out_dir>/checkpoints``.
    ``params``: recorded in the summary's provenance. Raises :class:`DataError` for unusable data
    (no pairs, images smaller than the crop, fewer pairs than a batch with ``drop_last``).
    """
    cfg = resolve_config(config)
    if not pairs:
        raise DataError("no training pairs (check mlfuse.train.sets and the datasets)")
    out_dir, results_dir = Path(out_dir), Path(results_dir)
    ckpt_dir = out_dir / "checkpoints"
    n_batches = D.batches_per_epoch(len(pairs), cfg["batch_size"], cfg["drop_last"], pairs)
    arrays = D.load_arrays(pairs, cfg["crop"], cfg["vsm_bits"])
    device = resolve_device(cfg["device"])
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    amp = bool(cfg["amp"]) and device.startswith("cuda")
    if cfg["amp"] and not amp:
        log.warning("mlfuse.train.amp is on but the device is %s: training in float32", device)
    if device.startswith("cuda"):
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    fp = fingerprint(cfg, pairs)

    model = build_model(cfg, device)
    optimizer, scheduler = make_optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    history: list[dict] = []
    start = 0
    state = latest_checkpoint(ckpt_dir, fp) if resume and ckpt_dir.is_dir() else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if amp and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        history = list(state["history"])
        start = int(state["epoch"]) + 1
        log.info("resuming MLFuse training after epoch %d from %s", start - 1, ckpt_dir)

    seed, crop = int(cfg["seed"]), cfg["crop"]
    started = time.perf_counter()
    bar = _progress(progress, cfg["epochs"] * n_batches, start * n_batches)
    for epoch in range(start, cfg["epochs"]):
        lr = optimizer.param_groups[0]["lr"]
        sums = dict.fromkeys(("total", *LOSS_NAMES), 0.0)
        batches = D.epoch_batches(len(arrays), cfg["batch_size"], cfg["drop_last"], seed, epoch)
        for step, indices in enumerate(batches, 1):
            batch = D.make_batch(arrays, indices, crop, seed, epoch, device)
            terms = train_step(model, optimizer, scaler, batch, cfg["loss_weights"], amp, cfg["channels_last"])
            sums["total"] += terms.total.item()
            for name in LOSS_NAMES:
                sums[name] += terms.parts[name].item()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{sums['total'] / step:.5f}")
        scheduler.step()
        history.append({"epoch": epoch, "lr": lr, **{k: v / len(batches) for k, v in sums.items()}})
        write_losses(results_dir / "losses.csv", history)
        last = epoch == cfg["epochs"] - 1
        if (epoch + 1) % cfg["checkpoint_every"] == 0 or last:
            save_torch(ckpt_dir / f"epoch_{epoch:04d}.pth", {
                "format": CHECKPOINT_FORMAT, "fingerprint": fp, "epoch": epoch, "model": _cpu_state(model),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                **({"scaler": scaler.state_dict()} if amp else {}), "rng": _rng_state(), "history": history})
        if cfg["preview_every"] and ((epoch + 1) % cfg["preview_every"] == 0 or last):
            write_previews(model, arrays, cfg["preview_count"], results_dir / "previews" / f"epoch_{epoch:04d}", device)
    if bar is not None:
        bar.close()

    final = save_torch(out_dir / FINAL_NAME, {"epoch": cfg["epochs"] - 1, "model": _cpu_state(model)})
    _write_summary(results_dir / "summary.json", cfg, pairs, history, device, n_batches, start,
                   time.perf_counter() - started, final, params)
    return final


def train_from_params(params: Mapping, resume: bool = True, progress: bool = True,
                      out_dir: str | Path = "models/mlfuse", results_dir: str | Path = "results/mlfuse_train") -> Path:
    """Train from a resolved ``params.yaml`` (:func:`pipeline.config.load_params`): the training sets
    ``mlfuse.train.sets`` (their ``splits``), VSM maps under ``mlfuse.train.vsm_root``, then :func:`train`.
    ``mlfuse.train.device`` and ``seed`` fall back to the top-level ``device`` and ``seed``."""
    from pipeline.config import section

    config = dict(section(params, "mlfuse.train", {}) or {})
    config.setdefault("device", params.get("device", "auto"))
    config.setdefault("seed", params.get("seed", DEFAULTS["seed"]))
    cfg = resolve_config(config)
    if not cfg["sets"]:
        raise ConfigError("mlfuse.train.sets is empty: name the training pair sets (datasets entries)")
    samples = D.load_training_sets(params, cfg["sets"], cfg["splits"])
    pairs = D.training_pairs(samples, cfg["vsm_root"])
    return train(cfg, pairs, out_dir, results_dir, resume=resume, progress=progress,
                 params=section(params, "mlfuse"))


def _progress(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="mlfuse train", unit="step", dynamic_ncols=True)


def _write_summary(path: Path, cfg: dict, pairs, history, device, n_batches, start, seconds, final, params):
    last = history[-1] if history else {}
    write_json(path, {
        "checkpoint": str(final), "epochs": cfg["epochs"], "batches_per_epoch": n_batches,
        "resumed_from_epoch": start - 1 if start else None, "device": device,
        "seconds_this_run": seconds, "final_losses": {k: last.get(k, math.nan) for k in ("total", *LOSS_NAMES)},
        "n_pairs": len(pairs), "sets": D.describe_sets(pairs), "pairs": [p.key for p in pairs],
        "config": cfg, "provenance": provenance(params),
    })
