"""What names a step's code in its cache key: the rule for images on a cluster, and for commands locally."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from sluice import module_closure
from sluice.code_identity import of_image, of_local_command, python_files
from sluice.launchers.local import warm_code_identity

REPO = Path(__file__).resolve().parents[2]
CONTRACT_STEP = REPO / "tests" / "operators" / "steps" / "contract_step.py"
DIGEST = "sha256:" + "4" * 64
LAUNCHER_PATH = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")


def test_a_digest_pinned_image_is_named_by_its_digest_wherever_it_is_pulled_from() -> None:
    here, there = of_image(f"reg/ml-steps:1@{DIGEST}", None), of_image(f"mirror/ml-steps@{DIGEST}", None)
    assert here.value == there.value == DIGEST


def test_a_mutable_tag_without_cache_version_turns_caching_off_saying_why() -> None:
    identity = of_image("reg/ml-steps:0.1.0", None)
    assert identity.value is None
    assert identity.about == "image reg/ml-steps:0.1.0 is a mutable tag; pin a digest or set cache_version"


def test_a_mutable_tag_is_cached_under_the_steps_explicit_cache_version() -> None:
    assert of_image("reg/ml-steps:0.1.0", "2").value != of_image("reg/ml-steps:0.1.0", "3").value
    assert of_image("reg/ml-steps:0.1.0", "2").value is not None


def test_sluice_step_is_named_by_the_files_of_the_step_package_the_step_runs() -> None:
    identity = of_local_command(["sluice-step", "train"], LAUNCHER_PATH)
    package = REPO / "images" / "ml-steps" / "sluice_steps"
    assert identity.value and identity.value.startswith("sha256:")
    assert identity.about == (
        f"package sluice_steps ({package}): the 6 of its {len(python_files([package]))} files it runs: "
        "sluice_steps/__init__.py, sluice_steps/__main__.py, sluice_steps/contract.py, sluice_steps/evaluate.py, "
        "sluice_steps/spec.py, sluice_steps/train.py"
    )


def _stepkit(tmp_path: Path, monkeypatch, name: str) -> Path:
    """A step package like sluice_steps: a __main__ that dispatches on its first argument to a module."""
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        f"import importlib, sys\nfrom {name} import shared\nimportlib.import_module(f'{name}.{{sys.argv[1]}}')\n"
    )
    (package / "shared.py").write_text("VERSION = 1\n")
    (package / "featurize.py").write_text(f"from {name}.shared import VERSION\nSCALE = 1\n")
    (package / "join.py").write_text("from . import shared\nHOW = 'inner'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return package


def test_editing_one_step_changes_only_that_steps_identity(tmp_path: Path, monkeypatch) -> None:
    package = _stepkit(tmp_path, monkeypatch, "stepkit_one")
    ids = {
        step: of_local_command([sys.executable, "-m", "stepkit_one", step], LAUNCHER_PATH).value
        for step in ("featurize", "join")
    }
    (package / "featurize.py").write_text("from stepkit_one.shared import VERSION\nSCALE = 2\n")
    after = {
        step: of_local_command([sys.executable, "-m", "stepkit_one", step], LAUNCHER_PATH).value
        for step in ("featurize", "join")
    }
    assert after["featurize"] != ids["featurize"]
    assert after["join"] == ids["join"], "join does not import featurize: its cache stays valid"


def test_editing_a_module_every_step_imports_changes_every_identity(tmp_path: Path, monkeypatch) -> None:
    package = _stepkit(tmp_path, monkeypatch, "stepkit_shared")
    steps = ("featurize", "join")
    before = {s: of_local_command([sys.executable, "-m", "stepkit_shared", s], LAUNCHER_PATH).value for s in steps}
    (package / "shared.py").write_text("VERSION = 2\n")
    after = {s: of_local_command([sys.executable, "-m", "stepkit_shared", s], LAUNCHER_PATH).value for s in steps}
    assert all(after[s] != before[s] for s in steps)


def test_a_step_that_imports_by_a_computed_name_is_keyed_on_its_whole_package(tmp_path: Path, monkeypatch) -> None:
    package = _stepkit(tmp_path, monkeypatch, "stepkit_dynamic")
    (package / "featurize.py").write_text("import importlib\nimportlib.import_module('stepkit_dynamic.' + 'join')\n")
    before = of_local_command([sys.executable, "-m", "stepkit_dynamic", "featurize"], LAUNCHER_PATH)
    (package / "join.py").write_text("HOW = 'outer'\n")
    after = of_local_command([sys.executable, "-m", "stepkit_dynamic", "featurize"], LAUNCHER_PATH)
    assert after.value != before.value and "files)" in after.about


def test_a_package_run_with_python_m_changes_identity_with_any_of_its_files(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "stepkit"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "fit.py").write_text("ALPHA = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = of_local_command([sys.executable, "-m", "stepkit", "fit"], LAUNCHER_PATH).value
    (package / "sub" / "fit.py").write_text("ALPHA = 2\n")
    assert of_local_command([sys.executable, "-m", "stepkit", "fit"], LAUNCHER_PATH).value != before


def test_compiled_caches_leave_a_package_identity_unchanged(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "stepkit2"
    package.mkdir()
    (package / "__init__.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = of_local_command(["python3", "-m", "stepkit2"], LAUNCHER_PATH).value
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0compiled")
    assert of_local_command(["python3", "-m", "stepkit2"], LAUNCHER_PATH).value == before


def test_a_script_is_named_by_its_content_so_an_edit_and_its_revert_are_told_apart(tmp_path: Path) -> None:
    script = tmp_path / "step.py"
    shutil.copy(CONTRACT_STEP, script)
    command = [sys.executable, "-u", str(script), "ok"]
    original = of_local_command(command, LAUNCHER_PATH).value
    script.write_text(CONTRACT_STEP.read_text() + "\n# edited\n")
    edited = of_local_command(command, LAUNCHER_PATH).value
    script.write_text(CONTRACT_STEP.read_text())
    assert edited != original
    assert of_local_command(command, LAUNCHER_PATH).value == original


def test_a_command_that_is_not_found_turns_caching_off_saying_why() -> None:
    identity = of_local_command(["no-such-step-command", "train"], LAUNCHER_PATH)
    assert identity.value is None
    assert identity.about == "command 'no-such-step-command' is not found on the launcher's PATH"


def test_a_process_forked_after_warming_names_a_step_without_reading_or_parsing_a_file(
    tmp_path: Path, monkeypatch
) -> None:
    """The embedded run warms the caches before the executor forks its task processes (``warm_code_identity``): a
    task process then only stats the package's files (~1 ms instead of ~30 ms), and an edit still counts."""
    package = _stepkit(tmp_path, monkeypatch, "stepkit_warm")
    command = [sys.executable, "-m", "stepkit_warm", "featurize"]
    warm_code_identity([command])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the task process: a file read or a parse fails it
        code = 1
        try:

            def refuse(*_: object, **__: object) -> None:
                raise AssertionError("the warm caches should have served this")

            module_closure._read_imports = refuse  # type: ignore[assignment]
            Path.open = refuse  # type: ignore[assignment,method-assign]
            os.write(write, str(of_local_command(command, LAUNCHER_PATH).value).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    in_task = os.read(read, 200).decode()
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked process read or parsed a file"
    warmed = of_local_command(command, LAUNCHER_PATH).value
    assert in_task == warmed
    (package / "featurize.py").write_text("from stepkit_warm.shared import VERSION\nSCALE = 3\n")
    assert of_local_command(command, LAUNCHER_PATH).value != warmed
