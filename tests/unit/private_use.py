"""Find uses of private third-party code in Sluice's sources, statically (ast), for tests/unit/test_compat.py.

Two kinds of use are reported, each with file:line and the fix:

- an import of a private module path or name: any dotted component of a non-Sluice import that starts with
  ``_`` (``from airflow.sdk.definitions._internal import ...``, ``from airflow.models.backfill import
  _create_backfill``, ``import celery._state``);
- a private name spelt as a string (``"_monitor_subprocess"`` handed to code that looks it up), unless it is one
  of Sluice's own strings (``SLUICE_STRINGS``);
- a private attribute of an object Sluice does not own: ``x._name`` (or ``getattr/setattr/hasattr/delattr(x,
  "_name")``) where ``x`` is rooted in a name imported from Airflow, a provider, Celery, Kombu, Billiard or
  Kubernetes, or where no Sluice source defines ``_name`` (a Sluice class's own ``self._name`` is Sluice's
  only when that class, or a Sluice class it derives from, assigns or defines it).

``sluice/compat.py`` is the one module allowed to do either; it is left out of the scan (its definitions still
count as Sluice's). Dunder names are never private.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Roots whose private attributes are Airflow's, a provider's or the task queue's.
OWNERS = ("airflow", "celery", "kombu", "billiard", "kubernetes", "kubernetes_asyncio")
# Our own top-level packages: their modules and names are Sluice's.
FIRST_PARTY = ("sluice", "sluice_steps", "tests")
# Documented public API that happens to start with an underscore (named tuples, os._exit).
DOCUMENTED = {"_replace", "_asdict", "_fields", "_make", "_field_defaults", "_exit"}
ATTRIBUTE_CALLS = {"getattr", "setattr", "hasattr", "delattr"}
# Strings that look private but are Sluice's own data, with what they are.
SLUICE_STRINGS = {"_cache": "the step cache's folder in the artifact store (sluice.cache)"}
FIX = "move it behind sluice.compat (an entry naming its distribution, tested versions, feature test, fallback)"


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name != "_"


def owned_by(module: str) -> bool:
    return module.split(".")[0] in OWNERS


def first_party(module: str) -> bool:
    return module.split(".")[0] in FIRST_PARTY


@dataclass(frozen=True, order=True)
class Use:
    path: str
    line: int
    what: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def __str__(self) -> str:
        return f"{self.where}: {self.what}; {FIX}"


def _class_names(cls: ast.ClassDef) -> set[str]:
    """What a class itself defines: its body's names and what its methods assign on ``self``/``cls``."""
    names: set[str] = set()
    for node in cls.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name))
    for node in ast.walk(cls):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in {"self", "cls"}
        ):
            names.add(node.attr)
    return names


def _base_names(cls: ast.ClassDef) -> list[str]:
    return [b.id if isinstance(b, ast.Name) else b.attr for b in cls.bases if isinstance(b, ast.Name | ast.Attribute)]


@dataclass
class Definitions:
    """What Sluice's sources define: module-level names and each Sluice class's own names (by class name)."""

    module: set[str]
    classes: dict[str, set[str]]
    bases: dict[str, list[str]]

    @classmethod
    def of(cls, trees: Iterable[ast.Module]) -> Definitions:
        found = cls(set(), {}, {})
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    found.module.add(node.name)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    found.module.add(node.id)
                elif isinstance(node, ast.arg):
                    found.module.add(node.arg)  # a keyword Sluice's own functions take
                if isinstance(node, ast.ClassDef):
                    found.classes.setdefault(node.name, set()).update(_class_names(node))
                    found.bases.setdefault(node.name, []).extend(_base_names(node))
        return found

    def of_class(self, name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        """A Sluice class's names and those of the Sluice classes it derives from (by name)."""
        names = set(self.classes.get(name, ()))
        for base in self.bases.get(name, []):
            if base in self.classes and base not in seen:
                names |= self.of_class(base, seen | {name})
        return names

    def anywhere(self) -> set[str]:
        return self.module.union(*self.classes.values())


def _root(node: ast.expr) -> ast.expr:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node


class _Scanner(ast.NodeVisitor):
    def __init__(self, where: str, defined: Definitions) -> None:
        self.where = where
        self.defined = defined
        self.imported: dict[str, str] = {}  # local name -> the module (or module.name) it was imported from
        self.classes: list[str] = []
        self.uses: list[Use] = []
        self.checked_strings: set[int] = set()  # getattr(x, "_name") strings, judged as attributes instead

    def report(self, node: ast.AST, what: str) -> None:
        self.uses.append(Use(self.where, getattr(node, "lineno", 0), what))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not first_party(alias.name) and any(private(part) for part in alias.name.split(".")):
                self.report(node, f"imports the private module {alias.name}")
            # `import a.b` binds a (rooted in a.b's package), `import a.b as c` binds c to a.b
            self.imported[alias.asname or alias.name.split(".")[0]] = alias.name
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level == 0 and not first_party(module):
            for alias in node.names:
                path = f"{module}.{alias.name}"
                if any(private(part) for part in path.split(".")):
                    self.report(node, f"imports {alias.name} from the private path {path}")
        for alias in node.names:
            self.imported[alias.asname or alias.name] = f"{module}.{alias.name}" if node.level == 0 else "sluice"
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.classes.append(node.name)
        self.generic_visit(node)
        self.classes.pop()

    def _check(self, node: ast.AST, owner: ast.expr, name: str) -> None:
        if not private(name) or name in DOCUMENTED:
            return
        root = _root(owner)
        source = self.imported.get(root.id, "") if isinstance(root, ast.Name) else ""
        if source and owned_by(source):
            self.report(node, f"uses {name} of {source} (private)")
            return
        if source and not first_party(source):
            return  # the standard library's or another library's object, not Airflow's
        if isinstance(owner, ast.Name) and owner.id in {"self", "cls"} and self.classes:
            if name not in self.defined.of_class(self.classes[-1]):
                self.report(node, f"uses {name}, which {self.classes[-1]} does not define (an inherited private)")
            return
        if name not in self.defined.anywhere():
            self.report(node, f"uses the attribute {name}, which no Sluice source defines (someone else's private)")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._check(node, node.value, node.attr)
        self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        for value in node.values:  # an f-string's literal parts are text, not names
            if isinstance(value, ast.FormattedValue):
                self.visit(value)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if (
            isinstance(value, str)
            and value.isidentifier()
            and private(value)
            and value not in SLUICE_STRINGS
            and value not in DOCUMENTED
            and id(node) not in self.checked_strings
        ):
            self.report(node, f"names {value} in a string (a lookup by name of someone else's private)")

    def visit_Call(self, node: ast.Call) -> None:
        if (
            isinstance(node.func, ast.Name)
            and node.func.id in ATTRIBUTE_CALLS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            self.checked_strings.add(id(node.args[1]))
            self._check(node, node.args[0], node.args[1].value)
        self.generic_visit(node)


def scan_source(source: str, where: str = "<source>", defined: Definitions | None = None) -> list[Use]:
    """The private uses in one module's source (Sluice's definitions: this source's, unless given)."""
    tree = ast.parse(source)
    scanner = _Scanner(where, defined or Definitions.of([tree]))
    scanner.visit(tree)
    return sorted(scanner.uses)


def sources(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        yield from sorted(p for p in root.rglob("*.py") if ".venv" not in p.parts and "__pycache__" not in p.parts)


def scan(roots: Iterable[Path], relative_to: Path, allowed: Iterable[Path] = ()) -> list[Use]:
    """Every private use in the Python files under ``roots``, except in ``allowed`` (sluice/compat.py)."""
    paths = list(sources(roots))
    trees = {path: ast.parse(path.read_text()) for path in paths}
    defined = Definitions.of(trees.values())
    skip = {p.resolve() for p in allowed}
    uses: list[Use] = []
    for path, tree in trees.items():
        if path.resolve() in skip:
            continue
        scanner = _Scanner(str(path.relative_to(relative_to)), defined)
        scanner.visit(tree)
        uses += scanner.uses
    return sorted(uses)


def absolute_imports(root: Path) -> list[tuple[Path, int, str]]:
    """Every absolute import under ``root``: (file, line, module), for guards on what shipped code may import."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(path, node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.append((path, node.lineno, node.module or ""))
    return found
