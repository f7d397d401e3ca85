"""``sluice check`` from the shell: real CLI process, real DagBag, exit codes for CI/pre-commit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BAD_QUEUE = """
from datetime import datetime
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG("bad_queue", schedule=None, start_date=datetime(2026, 1, 1), default_args={"owner": "t"}):
    EmptyOperator(task_id="on_a_missing_queue", queue="gpu-large")
"""

BAD_PROFILE = """
from datetime import datetime
from airflow.sdk import DAG
from sluice.operators import MLStepOperator

with DAG("bad_profile", schedule=None, start_date=datetime(2026, 1, 1), default_args={"owner": "t"}):
    MLStepOperator(task_id="train", image="ml-steps", command=["sluice-step", "train"], profile="huge")
"""

GOOD = """
from datetime import datetime
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG("good", schedule=None, start_date=datetime(2026, 1, 1), default_args={"owner": "t"}):
    EmptyOperator(task_id="fine", queue="highmem")
"""


def run_check(folder: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SLUICE_"))}
    env["SLUICE_HOME"] = str(home)
    return subprocess.run(
        [str(Path(sys.executable).parent / "sluice"), "check", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_unserved_queue_and_unknown_profile_are_reported_and_exit_1(tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "bad_queue.py").write_text(BAD_QUEUE)
    (folder / "bad_profile.py").write_text(BAD_PROFILE)
    (folder / "good.py").write_text(GOOD)
    result = run_check(folder, tmp_path / "home")
    output = " ".join(result.stdout.split())
    assert result.returncode == 1, result.stdout + result.stderr
    assert "queue 'gpu-large' is served by no pool" in output
    assert "task 'train': unknown profile 'huge'" in output
    assert "2 problem(s)" in output


def test_a_clean_folder_exits_0(tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "good.py").write_text(GOOD)
    result = run_check(folder, tmp_path / "home")
    assert result.returncode == 0, result.stdout + result.stderr
