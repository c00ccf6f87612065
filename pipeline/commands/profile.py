"""``python -m pipeline profile NAME``: switch ``params.yaml`` to a profile (see :mod:`pipeline.profiles`).

Sets the ``profile:`` line and gives DVC a stage for every fusion method the profile adds (the
published networks of ``shared`` and ``full``); then run ``dvc repro`` or ``dvc exp run``.
``python -m pipeline profile demo`` switches back.
"""
from __future__ import annotations


def register(subparsers) -> None:
    from pipeline.config import PROFILES

    parser = subparsers.add_parser(
        "profile", help="switch params.yaml to a profile (demo, shared, full) with DVC stages for its methods",
        description="Set `profile:` in params.yaml and write the block of the profile's extra fusion "
        "methods into fusion.methods, so that dvc.yaml's foreach has a stage for each of them.")
    parser.add_argument("name", choices=PROFILES)
    parser.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pipeline.profiles import switch

    methods = switch(args.params, args.name)
    extra = f"; DVC stages for {len(methods)} more fusion methods: {', '.join(methods)}" if methods else ""
    print(f"{args.params}: profile {args.name}{extra}")
    return 0
