"""Downstream detection: ultralytics YOLO trained and tested on every fusion method's images.

* :mod:`pipeline.detection.yolo_data` -- per-method YOLO datasets (links + labels + ``data.yaml``);
* :mod:`pipeline.detection.yolo` -- hermetic ultralytics training and test evaluation;
* :mod:`pipeline.detection.ap` -- mAP@0.5 / per-class AP from per-image records
  (``predictions.json``), equal to ultralytics' own metric, for the report's bootstrap;
* :mod:`pipeline.detection.stage` -- one method end to end (``metrics.json``), used by
  ``flows/detect.py``.

Heavy imports (torch, ultralytics) happen inside functions only.
"""
