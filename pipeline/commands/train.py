"""``python -m pipeline train --method NAME [--params params.yaml] [--profile demo|shared|full] [--no-resume]``.

Trains one learned fusion method with ``params.yaml`` ``train.methods.<NAME>`` (see
:mod:`pipeline.training.trainer`): its training sets (MLFuse: with the VSM maps of the VSM stage),
the final checkpoint ``--out`` (default ``models/trained/<NAME>.pth``; resume checkpoints in
``models/checkpoints/<NAME>``, or in ``checkpoints/`` beside ``--out``), losses, previews and summary
under ``--results`` (default ``results/training/<NAME>``). Resumes from the newest checkpoint of
the same run unless ``--no-resume``; ``--resume PATH`` resumes that checkpoint (an error if it belongs to
another method or recipe). ``train-mlfuse`` is kept as a short form of ``train --method mlfuse``.
"""
from __future__ import annotations


def _arguments(parser, method: bool) -> None:
    if method:
        parser.add_argument("--method", required=True, help="method name (train.methods.<NAME> in params.yaml)")
    parser.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    parser.add_argument("--profile", default=None, choices=("demo", "shared", "full"), help="override the profile")
    parser.add_argument("--out", default=None, help="final checkpoint (default models/trained/<method>.pth)")
    parser.add_argument("--results", default=None, help="losses/previews/summary folder (default results/training/<method>)")
    parser.add_argument("--no-resume", action="store_true", help="start from scratch, ignore checkpoints")
    parser.add_argument("--resume", default=None, metavar="PATH", help="resume this checkpoint file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run, method="mlfuse")


def register(subparsers) -> None:
    _arguments(subparsers.add_parser("train", help="train a learned fusion method (resumable)",
                                     description="Train a method from params.yaml train.methods.<NAME>."), True)
    _arguments(subparsers.add_parser("train-mlfuse", help="train MLFuse (= train --method mlfuse)",
                                     description="Train MLFuse from params.yaml train.methods.mlfuse "
                                                 "(the VSM stage must have run)."), False)


def run(args) -> int:
    from pipeline.config import load_params
    from pipeline.training.trainer import train_from_params

    params = load_params(args.params, args.profile)
    resume = False if args.no_resume else (args.resume or True)
    final = train_from_params(params, args.method, resume=resume, progress=not args.no_progress,
                              out=args.out, results_dir=args.results)
    print(f"wrote {final}")
    return 0
