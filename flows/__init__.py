"""Prefect flows: one module per DVC stage (``python -m flows.<stage>``). See :mod:`flows._common`."""
import os as _os

from pipeline import hermetic

hermetic.apply()   # a flow process starts here: offline settings before prefect is imported

if _os.environ.get("FUSEBENCH_FORK_SOCKET"):  # under `python -m flows.server`: run in a pre-imported child
    from flows._fork import delegate as _delegate

    _delegate()
