"""``python -m pipeline metrics``: fusion-quality metrics of one (ir, vis, fused) triple.

``--ir`` is the infrared (or CT/PET/SPECT) image, ``--vis`` the visible (or MRI) one, as in the
reference values. ``--json`` prints one JSON object ``{metric: value}`` (non-finite values as null);
without it a two-column table is printed.
"""
from __future__ import annotations


def run(args) -> int:
    import json
    import math

    from pipeline.metrics import compute_triple, load_triple, metric_directions, resolve_names

    names = resolve_names(args.only, args.convention)
    triple = load_triple(args.ir, args.vis, args.fused, args.convention)
    values = compute_triple(triple, names)
    if args.json:
        print(json.dumps({k: (v if math.isfinite(v) else None) for k, v in values.items()}))
        return 0
    directions = metric_directions(args.convention)
    width = max(len(n) for n in values)
    print(f"# convention: {args.convention}  (↑ larger is better, ↓ smaller is better)")
    for name, value in values.items():
        arrow = "↑" if directions[name] == "up" else "↓"
        shown = f"{value:.6g}" if math.isfinite(value) else str(value)
        print(f"{name:<{width}}  {arrow}  {shown}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "metrics", help="fusion-quality metrics of one triple (matlab or cddfuse convention)",
        description="Compute fusion metrics of a fused image against its two sources, in the MATLAB "
        "toolbox convention (default) or the CDDFuse evaluator convention.")
    parser.add_argument("--ir", required=True, help="infrared (or CT/PET/SPECT) source image")
    parser.add_argument("--vis", required=True, help="visible (or MRI) source image")
    parser.add_argument("--fused", required=True, help="fused image")
    parser.add_argument("--convention", choices=("matlab", "cddfuse"), default="matlab")
    parser.add_argument("--only", default=None, help="comma-separated metric names, e.g. EN,VIF,Qabf")
    parser.add_argument("--json", action="store_true", help="print one JSON object {metric: value}")
    parser.set_defaults(func=run)
