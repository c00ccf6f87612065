"""``python -m pipeline versus [--baseline average] [--metrics SSIM,Qabf] [--methods ...]``: each fusion
method's metric means against a baseline's, from the metrics stage's ``results/metrics/<method>/
summary.json`` (issue #14: a trained method must reach ``average``'s SSIM and Qabf on the demo test
images). Default methods: every ``fusion.methods`` entry with ``weights: trained``. Prints one row per
method and dataset (mean, baseline mean, difference, ``ok``/``BELOW``) and, per method, the mean over
the datasets; exits 0 (a report, not a gate)."""
from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("versus", help="metric means of methods against a baseline (default average)",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="average", help="baseline method (default average)")
    parser.add_argument("--metrics", default="SSIM,Qabf", help="comma-separated metric names")
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: the trained ones)")
    parser.add_argument("--results", default="results/metrics", help="metrics stage output folder")
    parser.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    parser.set_defaults(func=run)


def trained_entries(params: dict) -> list[str]:
    """``fusion.methods`` entries that fuse with a checkpoint of ``train@<kind>``."""
    from pipeline.config import section

    methods = section(params, "fusion.methods") or {}
    return [name for name, options in methods.items() if str((options or {}).get("weights")) == "trained"]


def compare(results: Path, methods: list[str], baseline: str, metrics: list[str]) -> list[dict]:
    """Rows ``{method, dataset, metric, value, baseline, diff, ok}`` (dataset ``mean`` = over datasets)."""
    from pipeline.errors import DataError
    from pipeline.results import read_json

    def means(method):
        path = results / method / "summary.json"
        if not path.is_file():
            raise DataError(f"no metrics of {method}: run the metrics@{method} stage", path)
        return {ds: {m: v[m]["mean"] for m in metrics if m in v} for ds, v in read_json(path)["datasets"].items()}

    base, rows = means(baseline), []
    for method in methods:
        own = means(method)
        for metric in metrics:
            pairs = [(ds, own[ds][metric], base[ds][metric]) for ds in sorted(own)
                     if ds in base and metric in own[ds] and metric in base[ds]]
            if pairs:
                pairs.append(("mean", sum(p[1] for p in pairs) / len(pairs), sum(p[2] for p in pairs) / len(pairs)))
            rows += [{"method": method, "dataset": ds, "metric": metric, "value": v, "baseline": b,
                      "diff": v - b, "ok": v >= b} for ds, v, b in pairs]
    return rows


def run(args) -> int:
    from pipeline.config import load_params

    methods = args.methods.split(",") if args.methods else trained_entries(load_params(args.params))
    rows = compare(Path(args.results), methods, args.baseline, [m.strip() for m in args.metrics.split(",")])
    print(f"{'method':22s} {'dataset':8s} {'metric':6s} {'value':>8s} {args.baseline:>8s} {'diff':>8s}")
    for r in rows:
        print(f"{r['method']:22s} {r['dataset']:8s} {r['metric']:6s} {r['value']:8.4f} {r['baseline']:8.4f} "
              f"{r['diff']:+8.4f} {'ok' if r['ok'] else 'BELOW'}")
    return 0
