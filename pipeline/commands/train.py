"""``python -m pipeline train-mlfuse [--params params.yaml] [--profile demo|full] [--no-resume]``.

Trains MLFuse with ``params.yaml`` ``mlfuse.train`` (see :mod:`pipeline.mlfuse_train.trainer`):
training sets ``mlfuse.train.sets`` with their VSM maps from the VSM stage, checkpoints and the final
``model_fuse.pth`` under ``--out``, losses/previews/summary under ``--results``. Resumes from the newest
matching checkpoint unless ``--no-resume``.
"""
from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train-mlfuse", help="train the MLFuse network (published recipe, resumable)",
        description="Train MLFuse from params.yaml mlfuse.train (the VSM stage must have run).")
    parser.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    parser.add_argument("--profile", default=None, choices=("demo", "full"), help="override the profile")
    parser.add_argument("--out", default="models/mlfuse", help="checkpoint folder (default models/mlfuse)")
    parser.add_argument("--results", default="results/mlfuse_train",
                        help="losses/previews/summary folder (default results/mlfuse_train)")
    parser.add_argument("--no-resume", action="store_true", help="start from scratch, ignore checkpoints")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pipeline.config import load_params
    from pipeline.mlfuse_train.trainer import train_from_params

    params = load_params(args.params, args.profile)
    final = train_from_params(params, resume=not args.no_resume, progress=not args.no_progress,
                              out_dir=args.out, results_dir=args.results)
    print(f"wrote {final}")
    return 0
