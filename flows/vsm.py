"""Stage ``vsm``: visual saliency maps of the MLFuse training pairs.

    python -m flows.vsm

The training sets are ``train.methods.mlfuse.sets`` restricted to its ``splits``; maps go to
its ``vsm_root`` (``data/vsm/<set>/{img1,img2}/<name>.npy``, :mod:`pipeline.vsm`). One
Prefect task per batch of ``orchestration.batch_size`` pairs (retried once). The whole folder is
built in a staging folder and renamed into place when every batch succeeded
(:mod:`flows._staging`); a failed run resumes from the maps already computed.
"""
from __future__ import annotations

from pathlib import Path

from flows._batches import batch_size, batches
from flows._common import main_entry, run_units, stage_flow
from flows._staging import stage_key, staged
from pipeline.config import section


@stage_flow("vsm")
def vsm_flow(params: dict) -> dict:
    from pipeline.fingerprint import samples_digest
    from pipeline.training.data import load_training_sets
    from pipeline.training.trainer import resolve_config
    from pipeline.vsm import compute_vsm_maps

    cfg = resolve_config("mlfuse", section(params, "train.methods.mlfuse", {}) or {})
    sets = load_training_sets(params, cfg["sets"], cfg["splits"])
    key = stage_key("flows.vsm", sets={name: samples_digest(samples) for name, samples in sets.items()})
    counts = {}
    with staged([Path(cfg["vsm_root"])], key) as (staging,):
        for set_name, samples in sorted(sets.items()):
            units = [(f"{set_name}:{start}", (batch, staging, set_name, False))
                     for start, batch in batches(samples, batch_size(params))]
            report = run_units("vsm", compute_vsm_maps, units)
            report.raise_if_failed()
            counts[set_name] = sum(v["images"] for v in report.values.values())
    print(f"VSM maps for {counts} pairs in {cfg['vsm_root']}")
    return counts


if __name__ == "__main__":
    main_entry(vsm_flow)
