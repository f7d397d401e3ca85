"""Copy into the ``sluice`` package what it needs at run time outside a source checkout (`make package-data`).

Installed from a wheel, the package has no ``charts/`` or ``dags/`` beside it, so it ships copies, read with
importlib.resources (``sluice.platform.chart_values_file``, ``example_dags_folder``):

- ``charts/sluice/values.yaml`` → ``operators/sluice/data/values.yaml``: the platform on a laptop (pools, profiles,
  pool defaults) and the local stack's recovery, Celery and tuning settings;
- ``dags/*.py`` → ``operators/sluice/examples/``: the example DAGs ``sluice demo`` runs.

The originals stay the truth: each copy is the original under a one-line header saying so, and
tests/unit/test_package_data.py runs ``--check``, which fails naming every copy that differs.

Usage: python tools/package_data.py [--check]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "operators" / "sluice"
HEADER = "# A copy of {source}, shipped in the package: edit that file, then run `make package-data`.\n"


def copies() -> dict[Path, str]:
    """Every file the package ships from elsewhere in the repository: target → its expected content."""
    shipped = {PACKAGE / "data" / "values.yaml": ROOT / "charts" / "sluice" / "values.yaml"}
    shipped |= {PACKAGE / "examples" / dag.name: dag for dag in sorted((ROOT / "dags").glob("*.py"))}
    return {
        target: HEADER.format(source=source.relative_to(ROOT).as_posix()) + source.read_text()
        for target, source in shipped.items()
    }


def stale(expected: dict[Path, str]) -> list[Path]:
    """Copies whose original is gone (a DAG removed from dags/)."""
    return sorted(set((PACKAGE / "examples").glob("*.py")) - set(expected))


def check() -> list[str]:
    expected = copies()
    problems = [
        f"{target.relative_to(ROOT)} differs from its original"
        for target, content in expected.items()
        if not target.is_file() or target.read_text() != content
    ]
    problems += [f"{path.relative_to(ROOT)} has no original any more" for path in stale(expected)]
    return problems


def sync() -> None:
    expected = copies()
    for target, content in expected.items():
        if not target.is_file() or target.read_text() != content:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            print(f"wrote {target.relative_to(ROOT)}")
    for path in stale(expected):
        path.unlink()
        print(f"removed {path.relative_to(ROOT)}")


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run `make package-data` (python tools/package_data.py) to copy them again", file=sys.stderr)
        return 1 if problems else 0
    if argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    sync()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
