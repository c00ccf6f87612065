"""Stand-in for the heavy stage flows (train_mlfuse, detect, segment, report) in the DVC caching tests.

Copied into a temporary project as ``flows/<stage>.py``: it writes exactly the outputs ``dvc.yaml`` declares for the stage, with
content derived from the params section the stage reads and from its input files, so DVC sees
the same changes the real stage would produce, in milliseconds instead of minutes.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import yaml


def digest(value, *folders: str) -> str:
    h = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode())
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() and ".gitignore" != path.name:
                h.update(str(path).encode() + path.read_bytes())
    return h.hexdigest()


def write(path: str, data) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(data if isinstance(data, str) else json.dumps(data, sort_keys=True))


def main() -> None:
    stage = __spec__.name.rsplit(".", 1)[-1] if __spec__ else Path(__file__).stem
    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    params = yaml.safe_load(Path("params.yaml").read_text())
    method = args.get("method")
    if os.environ.get("STUB_FAIL") == f"{stage}@{method}":
        raise SystemExit(f"{stage}@{method}: simulated failure")
    if stage == "train_mlfuse":
        h = digest(params["mlfuse"]["train"], "data/vsm")
        write("models/mlfuse/model_fuse.pth", h)
        write("models/mlfuse/checkpoints/epoch_0000.pth", h)
        write("results/mlfuse_train/previews/epoch_0000/a.png", h)
        write("results/mlfuse_train/losses.csv", "epoch,lr,total,edge,saliency,cross_modal,fusion\n0,1e-4,0.7,0.4,0.1,0.4,0.1\n")
        write("results/mlfuse_train/summary.json", {"digest": h, "final_loss": 0.7})
    elif stage == "detect":
        h = digest(params["detection"], f"data/fused/m3fd/{method}")
        write(f"results/detection/m3fd/{method}/metrics.json", {"mAP50": int(h[:6], 16) / 16**6, "digest": h})
    elif stage == "segment":
        h = digest(params["segmentation"], f"data/fused/msrs/{method}")
        write(f"results/segmentation/msrs/{method}/metrics.json", {"mIoU": int(h[:6], 16) / 16**6, "digest": h})
        write(f"models/segmentation/msrs/{method}/model.txt", h)
    elif stage == "report":
        h = digest([params["report"], sorted(params["fusion"]["methods"])], "results/detection",
                   "results/segmentation", "results/metrics", "results/fusion")
        write("results/report/summary.json", {"digest": h, "methods": len(params["fusion"]["methods"])})
        write("results/report/gains.csv", "system,vs_best_single\ndetection/m3fd/average,0.01\n")
        write("results/report/report.md", f"# stub report {h}\n")
    else:
        raise SystemExit(f"no stub for stage {stage}")
    write(f"results/flow_runs/{args.get('summary_name', stage)}.json", {"stage": stage, "status": "completed"})


if __name__ == "__main__":
    main()
