"""The files of a package that one of its modules runs: the module and what it imports from its own package.

A step's cache key names the code the step runs (``sluice.code_identity``). Keying every step of a package on
all of the package's files makes an edit to one step re-run them all; keying each on what it imports from the
package re-runs only the steps that can see the edit. The closure is read statically (``ast``): plain and
relative imports, ``from pkg import module``, each package's ``__init__``. Imports by name at run time cannot be
read that way, so a module that makes one (``importlib.import_module``, ``__import__``) makes the answer "the
whole package" — except the entry point's own dispatch on its first argument (``sluice-step featurize`` imports
``sluice_steps.featurize``), which is followed by that argument.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

DYNAMIC = ("import_module", "__import__")


def package_modules(roots: Iterable[Path], top: str) -> dict[str, Path]:
    """Dotted module name → file, for every ``*.py`` under the package's directories."""
    found: dict[str, Path] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = [top, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.setdefault(".".join(parts), path)
    return found


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


_parsed: dict[str, tuple[tuple[int, int, int, int], set[str], bool]] = {}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], bool]:
    """The package's modules ``name`` imports, and whether it imports anything by a name computed at run time.
    Parsed again only when the file's size, inode, mtime or ctime changed (the key is computed for every step try)."""
    stat = path.stat()
    signature = (stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns)
    known = _parsed.get(f"{name}\0{path}")
    if known and known[0] == signature:
        return known[1] & modules.keys(), known[2]
    wanted, dynamic = _read_imports(name, path)
    _parsed[f"{name}\0{path}"] = (signature, wanted, dynamic)
    return wanted & modules.keys(), dynamic


def _read_imports(name: str, path: Path) -> tuple[set[str], bool]:
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = _package_of(name, path)
    wanted: set[str] = set()
    dynamic = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            wanted.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1] if node.level > 1 else anchor
                base = ".".join([*anchor, *([base] if base else [])])
            wanted.add(base)
            wanted.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            dynamic = dynamic or called in DYNAMIC
    return wanted, dynamic


def closure(roots: list[Path], top: str, entry: str, argv: list[str]) -> list[Path] | None:
    """The files ``entry`` (a module of package ``top``; a package means its ``__main__``) runs with ``argv``,
    or None where that cannot be read statically (then every file of the package counts)."""
    modules = package_modules(roots, top)
    if f"{entry}.__main__" in modules:
        entry = f"{entry}.__main__"
    if entry not in modules or modules[entry].name == "__init__.py":
        return None  # not a module of this package, or a package without __main__ (python -m refuses it)
    start = [entry]
    dispatched = f"{_package_of(entry, modules[entry])}.{argv[0]}" if argv else ""
    if dispatched in modules:
        start.append(dispatched)
    seen: set[str] = set()
    pending = list(start)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        parents = name.split(".")
        pending.extend(".".join(parents[:i]) for i in range(1, len(parents)) if ".".join(parents[:i]) in modules)
        imported, dynamic = _imports(name, modules[name], modules)
        if dynamic and not (name == entry and dispatched in modules):
            return None
        pending.extend(imported - seen)
    return sorted(modules[name] for name in seen)
