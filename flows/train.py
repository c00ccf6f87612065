"""Stage ``train@<method>``: train one learned fusion method with ``params.yaml`` ``train.methods.<method>``.

    python -m flows.train method=<name>

One coarse unit (:func:`pipeline.training.trainer.train_from_params`): training is a single sequential
job. It resumes by itself: checkpoints in ``models/<method>/checkpoints`` (a ``persist`` output in
``dvc.yaml``, so DVC keeps them between runs) carry a fingerprint of the settings, the training data's
bytes and the code, and a re-run after a failure continues after the newest matching one (stale ones
are removed and the method retrains). The final checkpoint (``models/<method>/model.pth``; MLFuse:
``models/mlfuse/model_fuse.pth`` in the official layout) is written atomically at the end only; it feeds
the method's ``fuse@`` stage (``weights: trained``).
"""
from __future__ import annotations

from flows._common import method_entry, run_inline, stage_flow


@stage_flow("train")
def train_flow(params: dict, method: str) -> str:
    from pipeline.training.trainer import train_from_params

    final = run_inline("train", method, train_from_params, params, method, resume=True, progress=True)
    print(f"{method} weights: {final}")
    return str(final)


if __name__ == "__main__":
    method_entry(train_flow)
