""".ci/run, run with a stand-in `make` that records its targets: lint gates the tests, and any failure fails CI."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKE_MAKE = """#!/usr/bin/env bash
echo "$1" >> "$MAKE_LOG"
echo "$1 ${SLUICE_REQUIRE_CONTAINERS:-unset}" >> "$MAKE_LOG.env"
code_var="EXIT_$1"
exit "${!code_var:-0}"
"""


def run_ci(tmp_path: Path, **exits: int) -> tuple[int, list[str]]:
    """.ci/run in a copy of the layout it expects, with `make <target>` exiting as ``exits`` says."""
    checkout = tmp_path / "checkout"
    (checkout / ".ci").mkdir(parents=True)
    shutil.copy2(REPO / ".ci" / "run", checkout / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text(FAKE_MAKE)
    (bin_dir / "make").chmod(0o755)
    log = tmp_path / "make.log"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "MAKE_LOG": str(log),
        **{f"EXIT_{target}": str(code) for target, code in exits.items()},
    }
    proc = subprocess.run(["bash", str(checkout / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)
    return proc.returncode, log.read_text().split() if log.exists() else []


def test_ci_lints_then_tests_and_passes_when_both_pass(tmp_path: Path) -> None:
    assert run_ci(tmp_path) == (0, ["lint", "test"])


def test_a_lint_failure_fails_ci_before_the_tests_run(tmp_path: Path) -> None:
    code, targets = run_ci(tmp_path, lint=2)
    assert code != 0 and targets == ["lint"]


@pytest.mark.parametrize("make_exit", [1, 2], ids=["failed tests", "pytest exit 5 (make reports 2)"])
def test_a_test_failure_fails_ci(tmp_path: Path, make_exit: int) -> None:
    code, targets = run_ci(tmp_path, test=make_exit)
    assert code != 0 and targets == ["lint", "test"]


def test_ci_runs_the_suite_with_container_tests_required(tmp_path: Path) -> None:
    """This machine can run containers: a missing engine or image must fail CI, not skip its tests."""
    code, _ = run_ci(tmp_path)
    assert code == 0
    seen = dict(line.split() for line in (tmp_path / "make.log.env").read_text().splitlines())
    assert seen["test"] == "1"
