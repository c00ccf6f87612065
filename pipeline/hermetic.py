"""The one place that makes FuseBench hermetic and offline.

:func:`apply` runs where a FuseBench process starts its work, before anything heavy (torch,
ultralytics, prefect, smp, matplotlib) is imported: the CLI (:func:`pipeline.cli.main`), every
Prefect flow (importing the :mod:`flows` package) and the tests (``tests/conftest.py``). Importing
:mod:`pipeline` itself changes nothing (no variable, no file), so a notebook or another program can
use the library without side effects. The settings (measured in ``../shared/spec/environment.md``):

* ultralytics: settings file, font and runs stay inside the project (``YOLO_CONFIG_DIR``), offline,
  no auto-install, the ``Arial.ttf`` its font check wants is pre-seeded from matplotlib's DejaVu
  (otherwise it sends an HTTP HEAD to GitHub on every dataset check);
* Hugging Face / timm / torch hub (smp encoders): offline, caches inside the project;
* Prefect: home inside the project, no telemetry, no API URL inherited from the user's profile
  (each flow run then uses a temporary local server unless ``PREFECT_API_URL`` is set on purpose
  by :mod:`flows.server`, or by the user together with ``FUSEBENCH_KEEP_PREFECT_API_URL=1``);
* DVC and matplotlib: no analytics, Agg backend, config inside the project;
* glibc's allocator (:func:`keep_large_blocks`): tensors up to 32 MB from the heap, freed memory kept
  for reuse, instead of a fresh ``mmap`` (and a page fault per 4 KB touched) for every activation.

Values already set in the environment win (``setdefault``: a user's ``OMP_NUM_THREADS`` is kept),
so a user can point any of them elsewhere. Everything is written inside the state folder
(:func:`state_dir`: ``<project>/.cache``; ``FUSEBENCH_STATE`` moves it, tests use a temporary one),
never into the current folder.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

_APPLIED: dict[str, str] | None = None


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding ``params.yaml`` or ``dvc.yaml``."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file() or (folder / "dvc.yaml").is_file():
            return folder
    return here


def state_dir() -> Path:
    """Folder for tool state (ultralytics settings, Prefect home, caches): ``$FUSEBENCH_STATE``, else
    ``<project>/.cache`` of the project around the current folder, else (run outside any project)
    ``$XDG_CACHE_HOME/fusebench`` (``~/.cache/fusebench``): never a new ``.cache`` in some folder."""
    env = os.environ.get("FUSEBENCH_STATE")
    if env:
        return Path(env).resolve()
    root = project_root()
    if (root / "params.yaml").is_file() or (root / "dvc.yaml").is_file():
        return root / ".cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fusebench"


def offline_environment(state: Path) -> dict[str, str]:
    """The environment variables FuseBench needs, for a given state folder."""
    threads = str(os.cpu_count() or 1)
    return {
        "YOLO_CONFIG_DIR": str(state / "ultralytics"),
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "False",
        "YOLO_VERBOSE": "False",
        "OMP_NUM_THREADS": threads,
        # Sleeping, not spinning, OpenMP workers: with more busy processes than cores (a shared
        # box, parallel DVC stages) spinning torch threads made a DeepLabV3+ step 10-50x slower.
        "OMP_WAIT_POLICY": "PASSIVE",
        # PyTorch backs CPU tensors >= 2 MB with transparent huge pages (madvise): fresh large
        # activations (eager forwards, training) then cost fewer page faults. MLFuse's fast
        # inference path avoids them altogether with reused buffers (pipeline/fusion/mlfuse_fast.py).
        "THP_MEM_ALLOC_ENABLE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(state / "hf"),
        "TORCH_HOME": str(state / "torch"),
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": str(state / "matplotlib"),
        "PREFECT_HOME": str(state / "prefect"),
        "PREFECT_LOCAL_STORAGE_PATH": str(state / "prefect" / "storage"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "DO_NOT_TRACK": "1",
        "DVC_NO_ANALYTICS": "1",
        "TQDM_MININTERVAL": "1",
        # glibc malloc, for the processes started from here (this one: keep_large_blocks)
        "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
        "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
    }


#: glibc's largest mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX, 32 MB)
MMAP_THRESHOLD = 32 * 2**20
#: free memory kept at the heap's top before glibc returns it to the system
TRIM_THRESHOLD = 2**30


def keep_large_blocks() -> bool:
    """Tune glibc's ``malloc`` of this process (``mallopt``) unless the user set ``MALLOC_*`` himself.

    By default glibc serves every block above a dynamic threshold (128 KB at first) with its own
    ``mmap`` and unmaps it on free, so each fresh activation tensor of a CPU training step costs a
    page fault per page touched. Measured (``bench train --method mff_gan --single-update``, b32
    60²): 0.53-0.60 s → 0.34-0.39 s per generator update, peak RSS 1.0 → 1.4 GB. Raising the mmap
    threshold to its maximum (``M_MMAP_THRESHOLD``, 32 MB) and the trim threshold
    (``M_TRIM_THRESHOLD``, 1 GB) lets freed blocks be reused; numbers are unchanged (allocation
    only). PyTorch's CPU tuning guide recommends the same effect through jemalloc / tcmalloc; this
    needs no extra library. Returns whether both settings were accepted (False off glibc)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux") or _USER_MALLOC:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3   # <malloc.h>
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(mallopt(m_trim_threshold, TRIM_THRESHOLD))


#: the user's own glibc malloc settings (read before :func:`apply` sets ours for child processes)
_USER_MALLOC = (any(key.startswith("MALLOC_") for key in os.environ)
                or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""))


def _seed_ultralytics_font(config_dir: Path) -> None:
    """Put a real TTF where ultralytics' ``check_font`` looks, so it never downloads one."""
    target_dir = config_dir / "Ultralytics"
    target_dir.mkdir(parents=True, exist_ok=True)
    wanted = [target_dir / "Arial.ttf", target_dir / "Arial.Unicode.ttf"]
    if all(p.is_file() for p in wanted):
        return
    try:
        import matplotlib  # light import; only its data folder is used
    except ImportError:  # pragma: no cover - matplotlib is a declared dependency
        return
    font = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    for path in wanted:
        if not path.is_file() and font.is_file():
            tmp = path.with_suffix(".tmp")
            shutil.copyfile(font, tmp)
            os.replace(tmp, path)


def apply(state: Path | None = None, force: bool = False) -> dict[str, str]:
    """Set the offline environment (idempotent). Returns the values in force."""
    global _APPLIED
    if _APPLIED is not None and not force and state is None:
        return _APPLIED
    state = Path(state) if state is not None else state_dir()
    values = offline_environment(state)
    for key, value in values.items():
        if force:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)
    # A user profile's API URL would make every flow talk to some other server.
    if os.environ.get("PREFECT_API_URL") and not os.environ.get("FUSEBENCH_KEEP_PREFECT_API_URL"):
        os.environ.pop("PREFECT_API_URL")
    for key in ("YOLO_CONFIG_DIR", "HF_HOME", "TORCH_HOME", "MPLCONFIGDIR", "PREFECT_HOME"):
        Path(os.environ[key]).mkdir(parents=True, exist_ok=True)
    _seed_ultralytics_font(Path(os.environ["YOLO_CONFIG_DIR"]))
    keep_large_blocks()
    _APPLIED = {k: os.environ[k] for k in values}
    return _APPLIED


def restore_torch_threads() -> None:
    """Ultralytics sets ``torch.set_num_threads(1)`` on small CPUs; call this after YOLO calls."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
