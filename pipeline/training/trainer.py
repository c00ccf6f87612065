"""The one trainer of every learned fusion method: config checks, data, seeding, loop, resume, logs.

``train(method, config, pairs, out_dir, results_dir, health)`` trains the :class:`~.recipe.Recipe`
registered for ``method`` with ``config`` = ``params.yaml`` ``train.methods.<method>`` (every key
required, unknown keys are errors; no defaults live in the code). Trainer keys (:data:`TRAINER_KEYS`):

=====================  ==========================================================================
key                    meaning
=====================  ==========================================================================
seed                   seeds the network initialisation (torch RNG before ``build``), shuffles, crops
device, threads, amp   ``auto`` = CUDA when present; CPU threads (null = all); CUDA mixed precision
channels_last          NHWC batches and networks (oneDNN is faster on CPU; other rounding order)
sets, splits           training pair sets (``datasets:`` names or inline ``{kind, root}``) and splits
epochs, batch_size     epochs; pairs per batch
crop                   aligned random crop size (checked against every image)
crops_per_pair         crops of each pair per epoch (an epoch has ``n_pairs · crops_per_pair`` items)
drop_last, shuffle     drop a short last batch; reshuffle the items every epoch (seeded)
checkpoint_every       resume checkpoint period in epochs (the last epoch is always saved)
preview_every/_count   preview fusions of the first training pairs every N epochs (0 = none)
=====================  ==========================================================================

plus the recipe's own :attr:`~.recipe.Recipe.options`. Outputs:

* ``final`` (stages: ``models/trained/<method>.pth``, :mod:`.paths`) — :meth:`Recipe.export` (MLFuse:
  the official ``{"epoch", "model"}``; the others add ``"health"``);
* ``<ckpt_dir>/epoch_NNNN.pth`` (stages: ``models/checkpoints/<method>/``) — resume state (:mod:`.checkpoints`); a re-run with the same
  fingerprint (settings + data bytes + code) continues after the newest one and ends with exactly the
  weights of an uninterrupted run; a changed fingerprint retrains from scratch;
* ``<results_dir>/losses.csv`` — one row per epoch: ``epoch, lr`` and one column per loss component
  (means over the epoch's batches; DVC plots);
* ``<results_dir>/summary.json`` — provenance, timings (seconds per step, samples per second), final
  losses and the health verdict (:mod:`.health`); ``<results_dir>/previews/epoch_NNNN/<set>__<name>.png``.

A non-finite loss stops the run with :class:`~.health.TrainingDiverged` naming the method's params
(the summary records ``diverged`` first). All files are written atomically.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
import torch

from pipeline.device import resolve_device
from pipeline.errors import ConfigError, DataError
from pipeline.imageio import save_torch, write_image
from pipeline.results import provenance, write_csv, write_json
from pipeline.training import checkpoints as C
from pipeline.training import data as D
from pipeline.training.health import TrainingDiverged, check_settings, verdict
from pipeline.training.recipe import Context, Recipe, get_recipe

log = logging.getLogger(__name__)

TRAINER_KEYS = ("seed", "device", "threads", "amp", "channels_last", "sets", "splits", "epochs", "batch_size",
                "crop", "crops_per_pair", "drop_last", "shuffle", "checkpoint_every", "preview_every",
                "preview_count")
_POSITIVE = ("epochs", "batch_size", "crop", "crops_per_pair", "checkpoint_every")


def where(method: str) -> str:
    return f"train.methods.{method}"


def resolve_config(method: str, config: Mapping | None) -> dict:
    """Check ``config`` for ``method``: every trainer key and recipe option present, no unknown key,
    positive sizes; :class:`ConfigError` naming ``train.methods.<method>.<key>`` otherwise."""
    recipe = get_recipe(method)
    config = dict(config or {})
    known = (*TRAINER_KEYS, *recipe.options)
    missing = sorted(set(known) - set(config))
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ConfigError(f"{where(method)}: unknown key(s) {unknown}; known: {sorted(known)}")
    if missing:
        raise ConfigError(f"{where(method)}: missing key(s) {missing} (set them in params.yaml)")
    for key in (*_POSITIVE, "preview_every", "preview_count"):
        if not isinstance(config[key], int) or isinstance(config[key], bool) or \
                config[key] < (1 if key in _POSITIVE else 0):
            raise ConfigError(f"{where(method)}.{key} must be a positive integer, got {config[key]!r}")
    if config["crop"] < recipe.min_crop:
        raise ConfigError(f"{where(method)}.crop must be at least {recipe.min_crop} (the network's smallest "
                          f"input), got {config['crop']}")
    recipe.check(config, where(method))
    return config


def build_recipe(method: str, cfg: Mapping, device: str) -> Recipe:
    """The recipe of ``method`` with its networks built from ``seed`` (torch RNG seeded first), on
    ``device`` in training mode (NHWC with ``channels_last``), optimisers attached to its context."""
    ctx = Context(device, cfg["amp"], cfg["channels_last"])
    torch.manual_seed(int(cfg["seed"]))
    recipe: Recipe = get_recipe(method)(cfg, ctx)
    recipe.build()
    for net in recipe.nets.values():
        net.to(device)
        if ctx.channels_last:
            net.to(memory_format=torch.channels_last)
        net.train()
    ctx.attach(recipe.opts)
    return recipe


def train(method: str, config: Mapping, pairs: Sequence[D.TrainPair], ckpt_dir: str | Path, final: str | Path,
          results_dir: str | Path, health: Mapping, resume: bool | str | Path = True, progress: bool = True,
          params: Mapping | None = None) -> Path:
    """Train ``method`` on ``pairs``, write the final checkpoint ``final`` and return its path (module
    docstring); resume checkpoints go to ``ckpt_dir``.

    ``resume``: ``True`` continues from the newest checkpoint of this very run in ``ckpt_dir``
    (stale ones are removed), ``False`` starts afresh, a path resumes that
    checkpoint (a :class:`DataError` naming it when it belongs to another method or recipe).
    ``health``: the ``train.health`` thresholds. ``params``: recorded in the summary's provenance.
    """
    cfg = resolve_config(method, config)
    health = check_settings(health)
    recipe_cls = get_recipe(method)
    if not pairs:
        raise DataError(f"no training pairs (check {where(method)}.sets and the datasets)")
    ckpt_dir, final, results_dir = Path(ckpt_dir), Path(final), Path(results_dir)
    n_items = len(pairs) * cfg["crops_per_pair"]
    n_batches = D.batches_per_epoch(n_items, cfg["batch_size"], cfg["drop_last"], pairs, where(method))
    arrays = D.load_arrays(pairs, cfg["crop"], cfg.get("vsm_bits", 8), f"{where(method)}.crop")
    device = resolve_device(cfg["device"] or "auto")
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    if cfg["amp"] and not device.startswith("cuda"):
        log.warning("%s.amp is on but the device is %s: training in float32", where(method), device)
    if device.startswith("cuda"):
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    fp = C.fingerprint(method, cfg, pairs, (recipe_cls.__module__, *recipe_cls.code_modules))

    recipe = build_recipe(method, cfg, device)
    ctx = recipe.ctx
    ctx.batches_per_epoch = n_batches

    history: list[dict] = []
    start = 0
    if resume is True:
        state = C.latest_matching(ckpt_dir, method, fp)
    elif resume:
        state = C.load_checkpoint(resume, method, fp, cfg)
    else:
        state = None
    if state is not None:
        _restore(recipe, ctx, state)
        history = list(state["history"])
        start = int(state["epoch"]) + 1
        log.info("resuming %s training after epoch %d", method, start - 1)

    seed, crop, cpp = int(cfg["seed"]), cfg["crop"], cfg["crops_per_pair"]
    first_opt = next(iter(recipe.opts.values()))
    started, steps_run = time.perf_counter(), 0
    bar = _progress(progress, method, cfg["epochs"] * n_batches, start * n_batches)
    try:
        for epoch in range(start, cfg["epochs"]):
            lr = first_opt.param_groups[0]["lr"]
            sums = dict.fromkeys(recipe.loss_names, 0.0)
            batches = D.epoch_batches(n_items, cfg["batch_size"], cfg["drop_last"], seed, epoch, cfg["shuffle"])
            for step, indices in enumerate(batches):
                batch = ctx.prepare(D.make_batch(arrays, indices, crop, seed, epoch, device, cpp))
                values = recipe.step(batch, epoch * n_batches + step)
                for name in recipe.loss_names:
                    value = float(values[name])
                    if not math.isfinite(value):
                        history.append({"epoch": epoch, "lr": lr, **{k: float(values[k]) for k in recipe.loss_names}})
                        _write_summary(results_dir, method, cfg, pairs, history, device, n_batches, start,
                                       steps_run, time.perf_counter() - started, None, params,
                                       {"status": "diverged", "reasons": [f"loss {name} is {value}"], "checks": {}})
                        raise TrainingDiverged(
                            f"loss {name!r} is {value} at epoch {epoch}, batch {step}: the run diverged; lower "
                            f"the learning rate(s) or check the data", where(method))
                    sums[name] += value
                steps_run += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, **{k: f"{sums[k] / (step + 1):.4g}" for k in recipe.loss_names[:2]})
            for scheduler in recipe.schedulers.values():
                scheduler.step()
            history.append({"epoch": epoch, "lr": lr, **{k: v / len(batches) for k, v in sums.items()}})
            write_losses(results_dir / "losses.csv", history, recipe.loss_names)
            last = epoch == cfg["epochs"] - 1
            if (epoch + 1) % cfg["checkpoint_every"] == 0 or last:
                save_torch(ckpt_dir / f"epoch_{epoch:04d}.pth", _state(recipe, ctx, method, fp, cfg, epoch, history))
            if cfg["preview_every"] and ((epoch + 1) % cfg["preview_every"] == 0 or last):
                write_previews(recipe, arrays, cfg["preview_count"], results_dir / "previews" / f"epoch_{epoch:04d}")
    finally:
        if bar is not None:
            bar.close()
    if start >= cfg["epochs"]:  # resumed a finished run: DVC removed its outputs before the re-run
        write_losses(results_dir / "losses.csv", history, recipe.loss_names)
        if cfg["preview_every"]:
            write_previews(recipe, arrays, cfg["preview_count"],
                           results_dir / "previews" / f"epoch_{cfg['epochs'] - 1:04d}")

    fused = [_fuse_pair(recipe, arrays, i) for i in range(min(2, len(arrays)))]
    report = verdict(history, recipe.health_keys, health, fused)
    if report["status"] != "ok":
        log.warning("%s training flagged %s: %s", method, report["status"], "; ".join(report["reasons"]))
    exported = recipe.export(cfg["epochs"] - 1)
    if method != "mlfuse":  # MLFuse keeps the official two-key layout
        exported["health"] = report
    final = save_torch(final, exported)
    _write_summary(results_dir, method, cfg, pairs, history, device, n_batches, start, steps_run,
                   time.perf_counter() - started, final, params, report)
    return final


def write_losses(path: Path, history: list[dict], loss_names: Sequence[str]) -> Path:
    """The DVC plots file: one row per epoch (``epoch, lr`` and every loss component)."""
    return write_csv(path, pd.DataFrame(history, columns=["epoch", "lr", *loss_names]))


def _fuse_pair(recipe: Recipe, arrays: D.TrainArrays, index: int):
    import numpy as np

    ir, vis = (torch.from_numpy(a[index].astype(np.float32) / np.float32(255.0))[None, None].to(recipe.ctx.device)
               for a in (arrays.ir, arrays.vis))
    nets = list(recipe.nets.values())
    modes = [n.training for n in nets]
    try:
        with torch.no_grad():
            return recipe.fuse(ir, vis)
    finally:
        for net, mode in zip(nets, modes):
            net.train(mode)


def write_previews(recipe: Recipe, arrays: D.TrainArrays, count: int, folder: Path) -> list[Path]:
    """Fuse the first ``count`` training pairs at full size (network modes restored afterwards)."""
    written = []
    for i in range(min(count, len(arrays))):
        pair = arrays.pairs[i]
        written.append(write_image(folder / f"{pair.set}__{pair.name}.png", recipe.to_uint8(_fuse_pair(recipe, arrays, i))))
    return written


def _state(recipe: Recipe, ctx: Context, method: str, fp: str, cfg: Mapping, epoch: int, history) -> dict:
    return {"format": C.CHECKPOINT_FORMAT, "method": method, "fingerprint": fp,
            "settings": C.weight_settings(cfg), "epoch": epoch,
            "nets": {k: C.cpu_state(v) for k, v in recipe.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in recipe.opts.items()},
            "schedulers": {k: v.state_dict() for k, v in recipe.schedulers.items()},
            "scalers": {k: v.state_dict() for k, v in ctx.scalers.items()} if ctx.amp else {},
            "recipe": recipe.state(), "rng": C.rng_state(), "history": history}


def _restore(recipe: Recipe, ctx: Context, state: Mapping) -> None:
    for key, net in recipe.nets.items():
        net.load_state_dict(state["nets"][key])
    for key, opt in recipe.opts.items():
        opt.load_state_dict(state["optimizers"][key])
    for key, scheduler in recipe.schedulers.items():
        scheduler.load_state_dict(state["schedulers"][key])
    for key, scaler in ctx.scalers.items():
        if key in state.get("scalers", {}):
            scaler.load_state_dict(state["scalers"][key])
    recipe.load_state(state.get("recipe", {}))
    C.set_rng_state(state["rng"])


def _progress(enabled: bool, method: str, total: int, initial: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"train {method}", unit="step", dynamic_ncols=True)


def _write_summary(results_dir: Path, method, cfg, pairs, history, device, n_batches, start, steps, seconds,
                   final, params, health) -> Path:
    last = history[-1] if history else {}
    return write_json(results_dir / "summary.json", {
        "method": method, "checkpoint": None if final is None else str(final), "epochs": cfg["epochs"],
        "batches_per_epoch": n_batches, "resumed_from_epoch": start - 1 if start else None, "device": device,
        "seconds_this_run": seconds, "steps_this_run": steps,
        "seconds_per_step": seconds / steps if steps else None,
        "samples_per_second": steps * cfg["batch_size"] / seconds if steps and seconds else None,
        "final_losses": {k: v for k, v in last.items() if k not in ("epoch", "lr")},
        "health": health, "n_pairs": len(pairs), "sets": D.describe_sets(pairs), "pairs": [p.key for p in pairs],
        "config": cfg, "provenance": provenance(params),
    })


def train_from_params(params: Mapping, method: str, resume: bool | str | Path = True, progress: bool = True,
                      out: str | Path | None = None, results_dir: str | Path | None = None,
                      config_key: str | None = None, ckpt_dir: str | Path | None = None) -> Path:
    """Train ``method`` from a resolved ``params.yaml`` (:func:`pipeline.config.load_params`):
    ``train.methods.<method>`` (``seed``/``device`` null = the top-level ones), its ``sets`` and
    ``splits``, maps under its ``vsm_root``, thresholds ``train.health``. Outputs default to
    :mod:`.paths` (``out`` = the final checkpoint; resume checkpoints beside it in ``checkpoints/``
    when given, else ``ckpt_dir``). ``config_key``: the params section of the method's settings when
    it is not ``train.methods.<method>`` (Diff-IF: ``diffif.train``, its own stage)."""
    from pipeline.config import section
    from pipeline.training import paths

    config = section(params, config_key or f"train.methods.{method}")
    if config is None:
        raise ConfigError(f"{config_key or where(method)} is not configured in params.yaml "
                          f"(configured: {sorted(section(params, 'train.methods', {}) or {})})")
    config = dict(config)
    if config.get("device") is None:
        config["device"] = params.get("device", "auto")
    if config.get("seed") is None:
        config["seed"] = params.get("seed", 0)
    cfg = resolve_config(method, config)
    if not cfg["sets"]:
        raise ConfigError(f"{where(method)}.sets is empty: name the training pair sets (datasets entries)")
    recipe = get_recipe(method)
    samples = D.load_training_sets(params, cfg["sets"], cfg["splits"])
    pairs = D.training_pairs(samples, cfg.get(recipe.map_root), recipe.maps)
    final = Path(out) if out else paths.trained_weights(method)
    if ckpt_dir is None:
        ckpt_dir = final.parent / "checkpoints" if out else paths.checkpoint_dir(method)
    return train(method, cfg, pairs, Path(ckpt_dir), final, results_dir or paths.results_dir(method),
                 section(params, "train.health"), resume=resume, progress=progress,
                 params=section(params, config_key or f"train.methods.{method}"))
