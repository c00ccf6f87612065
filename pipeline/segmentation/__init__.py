"""Downstream semantic segmentation: DeepLabV3+ (segmentation-models-pytorch) trained on each
fusion method's images and scored with per-class IoU on the test split (MSRS protocol,
``../shared/spec/protocols.md``).

Modules: :mod:`.metrics` (confusion matrix, IoU, mIoU, pixel accuracy; absent-class rule),
:mod:`.model` (settings and the model), :mod:`.data` (fused images + labels, augmentation),
:mod:`.train` (one seed, resumable), :mod:`.evaluate` (full-resolution test, overlays),
:mod:`.run` (the stage for one method: seeds, aggregation, result files).

Entry points: ``python -m flows.segment method=<name>`` (one DVC stage per method) and
:func:`pipeline.segmentation.run.run_method`.
"""
