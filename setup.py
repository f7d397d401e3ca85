"""The one build step pyproject.toml cannot declare: the ``sluice`` wheel ships two things that live elsewhere in
the repository, byte for byte and from one source each (issue #28), so that an install with no checkout beside it
works as a checkout does (``sluice.platform.chart_values_file``, ``example_dags_folder``):

- ``charts/sluice/values.yaml`` → ``sluice/data/values.yaml``: laptop mode's platform (pools, profiles, pool
  defaults) and the local stack's recovery, Celery and tuning settings;
- ``dags/*.py`` → ``sluice/examples/``: the example DAGs, the default DAG folder of ``sluice demo``, ``check``, ...

Nothing is copied into the source tree: ``build_py`` adds them to the build directory (the wheel), MANIFEST.in to
the sdist (whose wheel is built by this same step). An editable install adds nothing: in a checkout the package
reads the originals. tests/packaging/test_wheel.py checks the sdist, the wheel and the installed result.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
VALUES = ROOT / "charts" / "sluice" / "values.yaml"
DAGS = ROOT / "dags"


def shipped() -> dict[str, Path]:
    """Each file the wheel ships from outside ``operators/``: its path in the wheel → the original. A missing
    original fails the build (a source tree or sdist without them would make a wheel whose demo cannot run)."""
    dags = sorted(DAGS.glob("*.py"))
    if not VALUES.is_file() or not dags:
        raise SystemExit(
            f"setup.py: the sluice wheel ships {VALUES.relative_to(ROOT)} and {DAGS.relative_to(ROOT)}/*.py, "
            f"missing from {ROOT}; build from the repository or its sdist (MANIFEST.in includes them)"
        )
    return {"sluice/data/values.yaml": VALUES} | {f"sluice/examples/{dag.name}": dag for dag in dags}


class BuildPy(build_py):
    """setuptools' build_py, then the originals copied into the build directory under their package paths."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # the checkout's own files are read (sluice.platform.source_checkout)
            return
        for target, source in shipped().items():
            built = Path(self.build_lib, target)
            self.mkpath(str(built.parent))
            self.copy_file(str(source), str(built), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not self.editable_mode:
            outputs += [str(Path(self.build_lib, target)) for target in shipped()]
        return outputs


setup(cmdclass={"build_py": BuildPy})
