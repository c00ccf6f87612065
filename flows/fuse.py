"""Stage ``fuse@<method>``: fuse every configured dataset with one fusion method.

    python -m flows.fuse method=<name>

The method and its options come from ``fusion.methods.<name>``; the datasets from
``fusion.datasets``. Each dataset's pairs are split into batches of
``orchestration.batch_size``, one Prefect task per batch (retried once) on the configured task
runner; each task builds the method and runs :func:`pipeline.fusion.stage.fuse_samples` on its
batch. Outputs (contract layout, :mod:`pipeline.fused`): ``<fusion.out>/<dataset>/<method>/<name>.png``
and the timing record ``<fusion.results>/<method>/<dataset>.json`` (seconds per image measured on the fusion calls,
parameters, GFLOPs). They are built in staging folders and renamed into place when every batch of
every dataset succeeded (:mod:`flows._staging`); a re-run after a failure keeps the images already
fused. A failing batch does not stop the others; the flow then fails listing every failed batch.
"""
from __future__ import annotations

from pathlib import Path

from flows._batches import batch_size, batches
from flows._common import main_entry, run_units, stage_flow
from flows._fused import fused_datasets, fused_root
from flows._staging import stage_key, staged
from pipeline.config import section
from pipeline.fused import fused_folder
from pipeline.errors import ConfigError

def weights_digest(method) -> dict:
    """``{path: content digest}`` of the method's :meth:`~pipeline.fusion.registry.FusionMethod.input_files`
    (weights; ``None`` for a missing file, which the method reports itself when it loads)."""
    from pipeline.fingerprint import tree_digest

    return {str(path): tree_digest(path) if Path(path).exists() else None for path in method.input_files()}


def method_options(params: dict, method: str) -> dict:
    methods = section(params, "fusion.methods") or {}
    if method not in methods:
        raise ConfigError(f"fusion method {method!r} is not under fusion.methods (configured: "
                          f"{', '.join(methods) or 'none'})", "params.yaml")
    return dict(methods[method] or {})


def fuse_batch(method: str, options: dict, samples: list, out_dir: str, gray: bool, dataset: str,
               population: list | None = None) -> dict:
    """Fuse one batch of samples into ``out_dir`` (a Prefect task; builds the method itself so it
    runs the same in a thread or on a Dask worker). ``population``: the dataset's samples, for
    controls that use other scenes (``kind: control``)."""
    from pipeline.fusion.registry import get_method
    from pipeline.fusion.stage import fuse_samples

    return fuse_samples(get_method(method, **options), samples, out_dir, gray=gray, dataset=dataset,
                        progress=False, population=population)


def combine_stats(parts: list[dict]) -> dict:
    """Batch statistics of :func:`fuse_samples` -> one dataset's (per-image means weighted by the
    number of images each batch computed)."""
    computed = sum(p["computed"] for p in parts)
    out = {"images": sum(p["images"] for p in parts), "computed": computed,
           "skipped": sum(p["skipped"] for p in parts)}
    for key in ("seconds_per_image", "wall_seconds_per_image", "gflops"):
        out[key] = (sum(p[key] * p["computed"] for p in parts if p["computed"]) / computed
                    if computed else None)
    return out


@stage_flow("fuse")
def fuse_flow(params: dict, method: str) -> dict:
    from pipeline.datasets import load_configured
    from pipeline.fingerprint import samples_digest
    from pipeline.fusion.registry import get_method
    from pipeline.fusion.stage import fusion_record
    from pipeline.results import write_json

    options = method_options(params, method)
    gray = section(params, "fusion.gray")
    if not isinstance(gray, bool):
        raise ConfigError(f"fusion.gray must be true or false, got {gray!r}", "params.yaml")
    fused_method = get_method(method, **options)            # bad options fail here, once
    data = {ds: load_configured(params, ds) for ds in fused_datasets(params)}
    key = stage_key("flows.fuse", method=method, options=options, gray=gray,
                    inputs={ds: samples_digest(d.samples) for ds, d in data.items()},
                    weights=weights_digest(fused_method))
    finals = [fused_folder(fused_root(params), ds, method) for ds in data] + [Path(section(params, "fusion.results")) / method]
    records = {}
    with staged(finals, key) as staging:
        *image_dirs, record_dir = staging
        for (ds, dataset), out_dir in zip(data.items(), image_dirs):
            population = dataset.samples if fused_method.kind == "control" else None
            if population is not None:
                fused_method.bind(population)              # a control that cannot be built fails here, once
            units = [(f"{ds}:{start}", (method, options, batch, str(out_dir), gray, ds, population))
                     for start, batch in batches(dataset.samples, batch_size(params))]
            report = run_units(f"fuse:{method}", fuse_batch, units)
            report.raise_if_failed()
            stats = combine_stats([report.values[unit] for unit, _ in units])
            record = fusion_record(fused_method, dataset, stats, None,
                                   {"fusion": {"method": method, "options": options, "gray": gray}})
            write_json(record_dir / f"{ds}.json", record)
            records[ds] = record
            print(f"fuse {ds}/{method}: {record['images']} images, "
                  f"{record['seconds_per_image'] or 0:.4f} s/image")
    return records


if __name__ == "__main__":
    main_entry(fuse_flow)
