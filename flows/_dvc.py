"""``dvc`` as :mod:`flows.server` runs it: servers started only when a stage really runs.

    python -m flows._dvc repro [ARGS...]     # what `python -m flows.server -- dvc repro` runs

DVC's own command line, in this process, with four changes (``docs/demo_budget.md``, "no-op"):

* **Lazy servers.** The Prefect server and the stage fork server (:mod:`flows.server`) take ~10-15 s
  and ~8 CPU s to start. They are started just before the first stage command that needs them
  (DVC's ``dvc.stage.run.cmd_run``), so a ``dvc repro`` with nothing to do starts neither. The
  stages in :data:`NO_SERVER_STAGES` (``inputs``, ``weights``: cheap, no Prefect flow, they run on
  every repro) never start them. The servers are stopped when DVC ends, fails or is interrupted.
* **params.yaml read once.** DVC parses the params file again for every stage it checks (57
  stages x a 780-line YAML: ~2.5 of the ~4.7 CPU s of a no-op ``dvc status`` on the demo) and
  looks every key up with ``dpath`` walking the whole tree. Here the parsed file is kept while its
  size, modification time and inode are unchanged, and plain dotted keys are looked up directly
  (globs go to DVC's own code). The values are DVC's (copies of the same parse).
* **YAML files parsed once** (:func:`patch_yaml_parser`): ``dvc.yaml`` and ``dvc.lock`` are
  parsed again for every collection of the stages; the parse is kept per file text, and long
  texts (the demo's 390 KB ``dvc.lock``) also across runs in ``.cache/yaml``, keyed by content
  (:func:`cached_safe_parse`; a no-op repro of the demo 5.9 -> 4.2-5.1 s wall).
* **dvc.lock written without the round-trip parser** (:func:`patch_lock_writer`): 2.9 -> ~0.6 CPU s
  per stage run.

When DVC's internals differ from what this module patches (another DVC version), it runs DVC
unchanged (servers then start at once, as :func:`flows.server.run_with_server` did before).
"""
from __future__ import annotations

import contextlib
import copy
import os
import shlex
import signal
import sys

import flows  # noqa: F401  (hermetic environment)

#: stage modules that neither use Prefect nor need the fork server (``stage_flow(prefect=False)``)
NO_SERVER_STAGES = ("flows.inputs", "flows.weights")


def needs_servers(cmd: str) -> bool:
    """False for a stage command ``python -m <module> ...`` of :data:`NO_SERVER_STAGES`."""
    try:
        words = shlex.split(cmd)
    except ValueError:
        return True
    module = words[words.index("-m") + 1] if "-m" in words[:-1] else None
    return module not in NO_SERVER_STAGES


def _lookup(config, key: str):
    node = config
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(key)
    return node


def patch_params_reader(module) -> None:
    """Memoise ``module.read_param_file`` (``dvc.dependency.param``) per file state."""
    original, load_path, parsed = module.read_param_file, module.load_path, {}

    def read_param_file(fs, path, key_paths=None, flatten=False, **load_kwargs):
        try:
            stat = os.stat(path)
        except (OSError, TypeError, ValueError):
            return original(fs, path, key_paths, flatten, **load_kwargs)
        state = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino, tuple(sorted(load_kwargs.items())))
        if state not in parsed:
            parsed.clear()
            parsed[state] = load_path(path, fs, **load_kwargs)
        config = parsed[state]
        if not key_paths:
            return copy.deepcopy(config)
        if not flatten or any(c in key for key in key_paths for c in "*?[]"):
            return original(fs, path, key_paths, flatten, **load_kwargs)
        values = {}
        for key in key_paths:
            with contextlib.suppress(KeyError):
                values[key] = copy.deepcopy(_lookup(config, key))
        return values

    module.read_param_file = read_param_file


#: Parsed YAML texts at least this long are also kept on disk (``.cache/yaml``), keyed by content.
DISK_CACHE_MIN_CHARS = 50_000
DISK_CACHE_FILES = 6


def cached_safe_parse(text: str, kind: str, parse):
    """``parse(text)`` (a safe YAML parse; ``kind`` names the parser) kept in
    ``<state>/yaml/<sha256 of kind and text>.pkl`` for long
    texts: a no-op ``dvc repro`` parses the demo's 390 KB ``dvc.lock`` twice (DVC and the lock
    writer), ~0.3 CPU s each, although it rarely changes between runs. The key is the text itself,
    so an edited file is parsed again; only the newest :data:`DISK_CACHE_FILES` entries are kept.
    Returns an object no other caller holds."""
    import hashlib
    import pickle

    if len(text) < DISK_CACHE_MIN_CHARS:
        return parse(text)
    from pipeline.hermetic import state_dir
    from pipeline.imageio import atomic_path

    folder = state_dir() / "yaml"
    digest = hashlib.sha256(kind.encode() + b"\0" + text.encode()).hexdigest()
    entry = folder / f"{digest}.pkl"
    with contextlib.suppress(OSError, pickle.UnpicklingError, EOFError, AttributeError):
        with open(entry, "rb") as handle:
            return pickle.load(handle)
    data = parse(text)
    with contextlib.suppress(OSError, pickle.PicklingError, TypeError):
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(entry) as tmp:
            with open(tmp, "wb") as handle:
                pickle.dump(data, handle, protocol=pickle.HIGHEST_PROTOCOL)
        for old in sorted(folder.glob("*.pkl"), key=lambda f: f.stat().st_mtime)[:-DISK_CACHE_FILES]:
            old.unlink(missing_ok=True)
    return data


def patch_yaml_parser(*modules) -> None:
    """Memoise DVC's ``parse_yaml`` (safe parser) by the file's text, in every module that holds
    it (``dvc.utils.serialize._yaml``, ``dvc.utils.serialize``, ``dvc.utils.strictyaml``): DVC
    parses ``dvc.yaml`` and ``dvc.lock`` (14,000 lines for the demo) again for every collection of
    the stages. Each caller gets its own copy of the parse; long texts also come from
    :func:`cached_safe_parse` across runs."""
    original, parsed = modules[0].parse_yaml, {}

    def parse_yaml(text, path, typ="safe"):
        if typ != "safe":
            return original(text, path, typ=typ)
        key = (str(path), text)
        if key not in parsed:
            if len(parsed) > 8:
                parsed.clear()
            parsed[key] = cached_safe_parse(text, "dvc", lambda t: original(t, path, typ=typ))
        return copy.deepcopy(parsed[key])

    for module in modules:
        module.parse_yaml = parse_yaml


def _plain(value):
    """Nested dicts (``OrderedDict`` too) and lists as plain ``dict`` / ``list``."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def patch_lock_writer(module, serialize, logger) -> None:
    """``module.Lockfile.dump_stages`` (``dvc.dvcfile``) without the round-trip YAML parser.

    DVC updates ``dvc.lock`` after every stage it runs by parsing the whole file with ruamel's
    comment-preserving parser and dumping it again: 2.9 CPU s for the demo's 14,000-line lock,
    ~60 times per demo. ``dvc.lock`` is machine-written (no comments to keep), so here it is read
    with the safe parser (kept in memory between stages while the file's state is unchanged),
    updated the same way (a stage's entry replaced in place, the file rewritten only when an
    entry changed) and written atomically with the safe dumper in DVC's block style (``null`` as
    an empty value, as DVC writes it): ~0.6 CPU s, the same content for DVC."""
    from ruamel.yaml import YAML

    from pipeline.imageio import atomic_path

    memory: dict = {}

    def load(path):
        try:
            stat = os.stat(path)
        except OSError:
            return {}
        state = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if memory.get("state") != state:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            memory.update(state=state, data=cached_safe_parse(text, "lock", YAML(typ="safe").load) or {})
        return memory["data"]

    def dump(path, data):
        yaml = YAML(typ="safe")
        yaml.default_flow_style = False
        yaml.sort_base_mapping_type_on_output = False
        yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", ""))
        with atomic_path(path) as tmp:
            with open(tmp, "w", encoding="utf-8") as handle:
                yaml.dump(data, handle)
        stat = os.stat(path)
        memory.update(state=(stat.st_size, stat.st_mtime_ns, stat.st_ino), data=data)

    def dump_stages(self, stages, **kwargs):
        if not stages:
            return
        data = load(self.path)
        if not data:
            data = {"schema": "2.0"}
            logger.info("Generating lock file '%s'", self.relpath)
        data["stages"] = data.get("stages") or {}
        modified = False
        for stage in stages:
            entry = _plain(serialize.to_lockfile(stage, **kwargs))
            if data["stages"].get(stage.name, {}) != entry.get(stage.name, {}):
                if not modified:
                    logger.info("Updating lock file '%s'", self.relpath)
                modified = True
            data["stages"].update(entry)
        if modified or not os.path.exists(self.path):
            dump(self.path, data)
            self.repo.scm_context.track_file(self.relpath)

    module.Lockfile.dump_stages = dump_stages


def patch_lazy_servers(module, start) -> None:
    """Call ``start()`` once, before the first stage command of ``module.cmd_run``
    (``dvc.stage.run``) that :func:`needs_servers`."""
    original, started = module.cmd_run, []

    def cmd_run(stage, dry=False, run_env=None):
        commands = stage.cmd if isinstance(stage.cmd, list) else [stage.cmd]
        if not dry and not started and any(needs_servers(c) for c in commands):
            started.append(start())
        return original(stage, dry=dry, run_env=run_env)

    module.cmd_run = cmd_run


def main(argv: list[str] | None = None) -> int:
    from dvc.cli import main as dvc_main

    from flows.server import servers

    argv = sys.argv[1:] if argv is None else argv
    port = int(os.environ.get("FUSEBENCH_LAZY_PORT") or 0) or None
    timeout = float(os.environ.get("FUSEBENCH_LAZY_TIMEOUT") or 120.0)
    fork = os.environ.get("FUSEBENCH_LAZY_FORK", "1") == "1"
    with contextlib.ExitStack() as stack:
        def start():
            os.environ.update(stack.enter_context(servers(dict(os.environ), port=port, timeout=timeout, fork=fork)))

        try:
            import dvc.dependency.param as params_module
            import dvc.dvcfile as dvcfile_module
            import dvc.stage.run as run_module
            import dvc.stage.serialize as serialize_module

            import dvc.utils.serialize as serialize_package
            import dvc.utils.serialize._yaml as yaml_module
            import dvc.utils.strictyaml as strictyaml_module

            patch_yaml_parser(yaml_module, serialize_package, strictyaml_module)
            patch_params_reader(params_module)
            patch_lock_writer(dvcfile_module, serialize_module, dvcfile_module.logger)
            patch_lazy_servers(run_module, start)
        except (ImportError, AttributeError):
            start()
        # SIGTERM/SIGHUP (a CI timeout, a closed terminal): unwind, so the servers are stopped
        stop = lambda signum, _frame: sys.exit(128 + signum)  # noqa: E731
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, stop)
        return dvc_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
