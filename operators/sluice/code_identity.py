"""What names the code a step runs: the part of the step cache key that makes an edited step run again.

A cache hit must mean "this code already ran on these inputs", and what runs depends on the launcher:

- ``local`` runs the step's command on this machine, so the code is what that command resolves to here:
  a console script of this environment (``sluice-step``) or ``python -m pkg`` → every ``*.py`` file of the
  top-level package it imports from (an editable install is read where it lives); ``python script.py`` →
  that file (``python -c`` → the code is in the command); any other executable → that file and every
  argument that names an existing file.
- ``kubernetes`` runs the image, so the code is the image's content: a ref pinned by digest
  (``repo@sha256:…``, or ``stepImages.<name>.digest``) names it; a tag can be pushed again and names
  nothing unless the step sets ``cache_version`` (its author bumps it when the image changes). Without one
  caching is off for the step, and the task log says why.

A :class:`CodeIdentity` with no value turns the cache off for that step. Files are hashed once per process
and hashed again only when their size, inode or timestamps change, so a long-lived worker sees edits.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib.machinery import ModuleSpec
from pathlib import Path

from sluice.module_closure import closure

DIGEST = re.compile(r"@(?P<digest>sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
PYTHON = re.compile(r"^python(\d+(\.\d+)*)?$")
PYTHON_OPTIONS_WITH_VALUE = ("-W", "-X")
CHUNK = 1 << 20


@dataclass(frozen=True)
class CodeIdentity:
    """``value`` goes into the cache key (None: caching is off for the step); ``about`` is for the task log:
    what was hashed, or why caching is off."""

    value: str | None
    about: str


def of_image(image: str, cache_version: str | None) -> CodeIdentity:
    """The Kubernetes launcher's rule: a digest names the code; a mutable tag needs an explicit cache_version."""
    pinned = DIGEST.search(image)
    if pinned:
        return CodeIdentity(pinned["digest"], f"image {image}")
    if cache_version:
        return CodeIdentity(f"{image} cache_version={cache_version}", f"image {image}, cache_version {cache_version!r}")
    return CodeIdentity(None, f"image {image} is a mutable tag; pin a digest or set cache_version")


def of_local_command(command: list[str], search_path: str) -> CodeIdentity:
    """The local launcher's rule: hash what ``command`` runs when started with ``PATH=search_path``."""
    if not command:
        return CodeIdentity(None, "the step has an empty command")
    executable = command[0]
    if PYTHON.match(Path(executable).name) or executable == sys.executable:
        return _of_python_args(command[1:])
    resolved = shutil.which(executable, path=search_path)
    if resolved is None:
        return CodeIdentity(None, f"command {executable!r} is not found on the launcher's PATH")
    module = _console_script_module(Path(executable).name)
    if module and Path(resolved).parent == Path(sys.executable).parent:
        return _of_module(module, command[1:])
    files = [Path(resolved), *(Path(arg) for arg in command[1:] if Path(arg).is_file())]
    return CodeIdentity(_digest(files), f"{', '.join(map(str, files))}")


def _of_python_args(args: list[str]) -> CodeIdentity:
    """``python [options] -m module | -c code | script``, as the interpreter reads its arguments."""
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "-m" or (arg.startswith("-m") and len(arg) > 2):
            module = arg[2:] or (args[index + 1] if index + 1 < len(args) else "")
            rest = args[index + 1 :] if arg[2:] else args[index + 2 :]
            return _of_module(module, rest) if module else CodeIdentity(None, "python -m names no module")
        if arg == "-c" or arg.startswith("-c"):
            return CodeIdentity("inline", "inline code (python -c): it is part of the command")
        if arg in PYTHON_OPTIONS_WITH_VALUE:
            index += 2
            continue
        if arg.startswith("-"):
            index += 1
            continue
        script = Path(arg)
        if not script.is_file():
            return CodeIdentity(None, f"script {arg} does not exist")
        return CodeIdentity(_digest([script]), f"script {script}")
    return CodeIdentity(None, "python is started with no module or script")


def _of_module(module: str, argv: list[str]) -> CodeIdentity:
    """A module of a package is named by the files of the package it runs (``sluice.module_closure``): an edit to
    one step re-runs the steps that import what changed, not every step of the package."""
    top = module.split(".")[0]
    spec = find_spec(top)
    if spec is None:
        return CodeIdentity(None, f"module {module!r} is not importable here")
    roots = [Path(p) for p in spec.submodule_search_locations or []]
    if roots:
        files = sorted(python_files(roots))
        where = ", ".join(map(str, roots))
        used = closure(roots, top, module, argv)
        if used is not None:
            names = ", ".join(_relative(path, roots) for path in used)
            about = f"package {top} ({where}): the {len(used)} of its {len(files)} files it runs: {names}"
            return CodeIdentity(_digest(used, roots), about)
        return CodeIdentity(_digest(files, roots), f"package {top} ({where}, {len(files)} files)")
    if spec.origin and Path(spec.origin).is_file():
        return CodeIdentity(_digest([Path(spec.origin)]), f"module {top} ({spec.origin})")
    return CodeIdentity(None, f"module {top!r} has no source file to hash (built in?)")


def find_spec(name: str) -> ModuleSpec | None:
    """Where ``import name`` would load from now, asking the import system's finders in order.

    ``importlib.util.find_spec`` answers from ``sys.modules`` for a module already imported, which would name
    a package imported before its source moved; the finders answer from the file system.
    """
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        spec: ModuleSpec | None = find(name, None) if find else None
        if spec is not None:
            return spec
    return None


@lru_cache(maxsize=64)
def _console_script_module(name: str) -> str | None:
    """The module a console script of this environment imports its entry point from (cached: ~20 ms)."""
    from importlib.metadata import entry_points

    return next((ep.module for ep in entry_points(group="console_scripts", name=name)), None)


def python_files(roots: Iterable[Path]) -> list[Path]:
    """Every ``*.py`` file under the package directories, compiled caches left out."""
    found: list[Path] = []
    for root in roots:
        for directory, subdirs, names in os.walk(root):
            subdirs[:] = [d for d in subdirs if d != "__pycache__"]
            found.extend(Path(directory) / n for n in names if n.endswith(".py"))
    return found


def _digest(files: list[Path], roots: list[Path] | None = None) -> str:
    """sha256 over each file's name (relative to its package root) and content hash, in sorted order."""
    digest = hashlib.sha256()
    for name, path in sorted((_relative(path, roots), path) for path in files):
        digest.update(f"{name}\0{file_sha256(path)}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def _relative(path: Path, roots: list[Path] | None) -> str:
    for root in roots or []:
        if path.is_relative_to(root):
            return f"{root.name}/{path.relative_to(root).as_posix()}"
    return path.name


_file_hashes: dict[str, tuple[tuple[int, int, int, int], str]] = {}


def file_sha256(path: Path) -> str:
    """A file's content hash, read again only when its size, inode, mtime or ctime changed."""
    stat = path.stat()
    signature = (stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns)
    key = str(path)
    known = _file_hashes.get(key)
    if known and known[0] == signature:
        return known[1]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    _file_hashes[key] = (signature, digest.hexdigest())
    return digest.hexdigest()
