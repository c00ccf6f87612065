"""Stage ``train_mlfuse``: train MLFNet with ``params.yaml`` ``mlfuse.train`` (published recipe).

    python -m flows.train_mlfuse

One coarse unit (:func:`pipeline.mlfuse_train.trainer.train_from_params`): training is a single
sequential job. It is resumable by itself: checkpoints in ``models/mlfuse/checkpoints`` (a
``persist`` output in ``dvc.yaml``, so DVC keeps them between runs) carry a fingerprint of the
settings and data, and a re-run after a failure continues after the newest matching one. The final
``models/mlfuse/model_fuse.pth`` is written atomically at the end only.
"""
from __future__ import annotations

from flows._common import main_entry, run_inline, stage_flow


@stage_flow("train_mlfuse")
def train_mlfuse_flow(params: dict) -> str:
    from pipeline.mlfuse_train.trainer import train_from_params

    final = run_inline("train_mlfuse", "train", train_from_params, params, resume=True, progress=True)
    print(f"MLFuse weights: {final}")
    return str(final)


if __name__ == "__main__":
    main_entry(train_mlfuse_flow)
