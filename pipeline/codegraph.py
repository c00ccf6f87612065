"""Which repository source files a module really runs: its import graph, read with :mod:`ast`.

Used for the code part of resume keys (:func:`pipeline.fingerprint.code_digest`) and for the code
dependencies of every DVC stage (:mod:`pipeline.dvcgen`), so both follow the same rule:

* the repository is the folder holding the ``pipeline`` package (``PROJECT_ROOT``), its modules
  those of the top-level packages ``pipeline`` and ``flows``; third-party imports are left out;
* every ``import a.b`` / ``from a import b`` / ``from . import b`` anywhere in a module (also
  inside functions: FuseBench imports heavy code lazily) and every
  ``importlib.import_module("a.b")`` with a literal name counts; ``from a import b`` counts
  ``a.b`` when that is a module, else ``a``;
* importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` too, so they are included;
* the closure is transitive. Imports guarded by ``if TYPE_CHECKING:`` count as well (harmless
  over-approximation: a stage then re-runs for a change in a module it only names in a type).
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Iterable

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "flows")


def module_file(name: str, root: Path = PROJECT_ROOT) -> Path:
    """Source file of repository module ``name`` (``a/b.py`` or ``a/b/__init__.py``)."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise ModuleNotFoundError(f"{name}: not a module of the repository at {root}")


def is_repo_module(name: str, root: Path = PROJECT_ROOT) -> bool:
    if name.split(".")[0] not in PACKAGES:
        return False
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


@functools.lru_cache(maxsize=None)
def _imports_cached(name: str, path: str, mtime_ns: int, root: str) -> tuple[str, ...]:
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    package = _package_of(name, Path(path))
    found: set[str] = set()
    rootp = Path(root)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if is_repo_module(sub, rootp) else base)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
            found.add(node.args[0].value)
    out: set[str] = set()
    for imported in found:
        parts = imported.split(".")
        for k in range(1, len(parts) + 1):  # the parents' __init__ run too
            prefix = ".".join(parts[:k])
            if is_repo_module(prefix, rootp):
                out.add(prefix)
    return tuple(sorted(out))


def direct_imports(name: str, root: Path = PROJECT_ROOT) -> tuple[str, ...]:
    """Repository modules ``name`` imports directly (with their parent packages)."""
    path = module_file(name, root)
    return _imports_cached(name, str(path), path.stat().st_mtime_ns, str(root))


def module_closure(modules: Iterable[str], root: Path = PROJECT_ROOT) -> list[str]:
    """Sorted names of ``modules``, their parent packages and every repository module they import,
    transitively."""
    todo = []
    for name in modules:
        parts = name.split(".")
        todo.extend(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or not is_repo_module(name, root):
            if name not in seen and name in modules:
                raise ModuleNotFoundError(f"{name}: not a module of the repository at {root}")
            continue
        seen.add(name)
        todo.extend(direct_imports(name, root))
    return sorted(seen)


def closure_files(modules: Iterable[str], root: Path = PROJECT_ROOT) -> list[Path]:
    """Source files of :func:`module_closure` (absolute paths)."""
    return [module_file(name, root) for name in module_closure(modules, root)]
