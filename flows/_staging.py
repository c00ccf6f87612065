"""Stage outputs that appear all at once, and resume after a failure.

A stage builds each output folder in a *staging* folder beside it, inside a container named after
a content key of everything that decides its content (:func:`stage_key`: the params the stage
reads, the bytes of its inputs and the source of the code that writes it):
``results/metrics/.ir.partial-<key>/ir`` (same last name as the output, so a library that writes
``<root>/<method>/`` gets the container as its root). Only when the whole stage succeeded is the staging folder renamed onto the real output
(one ``os.replace`` per output), so a failed or
interrupted stage never leaves a half-written output that DVC would cache. Re-running the stage
with the same key finds the staging folder again and the library's own resume logic skips
what is already there; a different key (changed params, inputs or code) starts clean and removes
stale staging folders. ``.partial-*`` is in ``.dvcignore`` and ``.gitignore``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

MARK = ".partial-"


def stage_key(flow: str, **parts: Any) -> str:
    """The staging key of a stage: :func:`pipeline.fingerprint.content_key` of ``parts`` (params,
    content digests of the inputs: :func:`~pipeline.fingerprint.samples_digest`,
    :func:`~pipeline.fingerprint.tree_digest`, weights) and the source of the ``flow`` module with
    everything it imports from the repository (:func:`~pipeline.fingerprint.code_digest`). Names,
    sizes or modification times never decide it: a file rewritten under the same name changes it."""
    from pipeline.fingerprint import code_digest, content_key

    return content_key(code=code_digest(flow), **parts)


def staging_path(final: str | Path, key: str) -> Path:
    """``<parent>/.<name>.partial-<key>/<name>``: where ``final`` is built."""
    final = Path(final)
    return final.with_name(f".{final.name}{MARK}{key}") / final.name


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def publish(staging: Path, final: Path) -> Path:
    """Replace ``final`` by ``staging`` (a rename; the old content is removed afterwards)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if final.exists() or final.is_symlink():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        _remove(old)
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        _remove(old)
    return final


@contextlib.contextmanager
def staged(finals: Sequence[str | Path], key: str) -> Iterator[list[Path]]:
    """Yield one staging folder per output folder in ``finals``; publish them all when the block
    succeeds, keep them (for resume) when it raises. Staging folders of other keys are removed."""
    finals = [Path(f) for f in finals]
    stagings = []
    for final in finals:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = staging_path(final, key)
        for stale in final.parent.glob(f".{final.name}{MARK}*"):
            if stale != staging.parent:
                _remove(stale)
        staging.mkdir(parents=True, exist_ok=True)
        stagings.append(staging)
    yield stagings
    for staging, final in zip(stagings, finals):
        publish(staging, final)
        shutil.rmtree(staging.parent, ignore_errors=True)
