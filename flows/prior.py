"""Stage ``prior``: Diff-IF's fusion knowledge prior by targeted search (:mod:`pipeline.prior`).

    python -m flows.prior

Reads ``prior`` (dataset, training split, candidate ``fusion.methods`` names, score weights) and
writes ``<prior.out>/<dataset>/<name>.png`` (the chosen candidate's file, unchanged), the tables
``results/prior/<dataset>/{scores,winners}.csv`` and ``summary.json`` (winner histogram). The
candidates' fused training images and the metric values are kept in ``prior.cache``
(``models/prior_cache``, a DVC ``persist`` output): a re-run with other weights re-scores from the
cache. One coarse unit: the search is seconds on the demo data.
"""
from __future__ import annotations

from flows._common import main_entry, run_inline, stage_flow


@stage_flow("prior")
def prior_flow(params: dict, root: str = ".") -> dict:
    from pipeline.prior import build_prior

    return run_inline("prior", "search", build_prior, params, root, progress=True, log=print)


if __name__ == "__main__":
    main_entry(prior_flow)
