"""``sluice check`` from the shell: real CLI process, real DagBag, exit codes for CI/pre-commit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
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


def run_check(folder: Path, home: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SLUICE_"))}
    env["SLUICE_HOME"] = str(home)
    return subprocess.run(
        [str(Path(sys.executable).parent / "sluice"), "check", str(folder), *options],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.slow  # `sluice check` as a process, 4-12 s; test_a_clean_folder_exits_0 stays fast
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


ON_KUBERNETES_QUEUE = """
from datetime import datetime
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG("on_kubernetes", schedule=None, start_date=datetime(2026, 1, 1), default_args={"owner": "t"}):
    EmptyOperator(task_id="in_a_pod", queue="kubernetes")
"""


@pytest.mark.slow  # `sluice check` as a process, 4-12 s; test_a_clean_folder_exits_0 stays fast
def test_an_unknown_profile_in_a_mapped_steps_partial_is_reported(tmp_path: Path) -> None:
    """Issue 19's reproduction: the example pipeline with train_highmem's profile misspelt."""
    folder = tmp_path / "dags"
    folder.mkdir()
    pipeline = (REPO / "dags" / "ml_training_pipeline.py").read_text()
    misspelt = pipeline.replace('queue="highmem", profile="highmem"', 'queue="highmem", profile="no-such-profile"')
    assert misspelt != pipeline
    (folder / "ml_training_pipeline.py").write_text(misspelt)
    result = run_check(folder, tmp_path / "home")
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "task ml_training_pipeline.train_highmem: unknown profile 'no-such-profile' (from .partial()); "
        "profiles that exist: default, gpu, highmem"
    ) in result.stdout


@pytest.mark.slow  # `sluice check` as a process, 4-12 s; test_a_clean_folder_exits_0 stays fast
def test_an_import_error_is_one_clear_line_and_its_traceback_only_shows_with_verbose(tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "bad_profile.py").write_text(BAD_PROFILE)
    quiet = run_check(folder, tmp_path / "home")
    verbose = run_check(folder, tmp_path / "home", "--verbose")
    assert "task 'train': unknown profile 'huge'" in quiet.stdout
    assert "Traceback" not in quiet.stdout + quiet.stderr
    assert "Traceback" in verbose.stdout + verbose.stderr
    assert quiet.returncode == verbose.returncode == 1


@pytest.mark.slow  # `sluice check` as a process, 4-12 s; test_a_clean_folder_exits_0 stays fast
def test_a_kubernetes_queue_passes_for_the_chart_and_is_refused_for_the_stack(tmp_path: Path) -> None:
    """The stack runs CeleryExecutor alone; the chart adds KubernetesExecutor, which the queue routes to."""
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "on_kubernetes.py").write_text(ON_KUBERNETES_QUEUE)
    chart = run_check(folder, tmp_path / "home", "--target", "chart")
    stack = run_check(folder, tmp_path / "home", "--target", "stack")
    assert chart.returncode == 0, chart.stdout + chart.stderr
    assert "for target chart (executor CeleryExecutor,KubernetesExecutor)" in chart.stdout
    assert stack.returncode == 1, stack.stdout + stack.stderr
    assert "for target stack (executor CeleryExecutor)" in stack.stdout
    assert "queue 'kubernetes' routes to the KubernetesExecutor, which is not configured here" in stack.stdout


def test_without_target_the_chart_is_checked_and_the_output_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "good.py").write_text(GOOD)
    result = run_check(folder, tmp_path / "home")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every queue and profile exists for target chart" in result.stdout


# A CI hook with a typo in its path must not pass: a missing folder or a file is a usage error (2), a folder with
# no DAG file is a failed check (1); neither prints ✓. All three stop before Airflow is imported (fast).
def test_a_missing_folder_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "dgas"
    result = run_check(missing, tmp_path / "home")
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, output
    assert str(missing) in output and "does not exist" in output
    assert "✓" not in output


def test_a_file_instead_of_a_folder_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    dag_file = tmp_path / "good.py"
    dag_file.write_text(GOOD)
    result = run_check(dag_file, tmp_path / "home")
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, output
    assert str(dag_file) in output and "not a folder" in output
    assert "✓" not in output


def test_a_folder_without_dag_files_fails_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "README.md").write_text("no DAGs here")
    result = run_check(folder, tmp_path / "home")
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1, output
    assert f"no DAG files (*.py or *.zip) in {folder}" in output
    assert "✓" not in output


def test_the_help_says_which_exit_code_means_what() -> None:
    from sluice.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["check", "--help"], env={"COLUMNS": "200"})
    help_text = " ".join(result.output.split()).lower()
    assert "exit 2" in help_text and "exit 1" in help_text, help_text


def test_python_files_that_define_no_dag_are_a_problem(tmp_path: Path, airflow_db: Path) -> None:
    """In-process (`sluice check` runs this after its folder checks): helpers alone are no DAG folder."""
    from sluice.checks import check_dag_folder

    (tmp_path / "helpers.py").write_text("def feature(x):\n    return x * 2\n")
    assert check_dag_folder(tmp_path, "CeleryExecutor") == [f"{tmp_path}: no DAGs found (its Python files define none)"]
