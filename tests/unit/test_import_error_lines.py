"""An import error in one line keeps where it happened (``file:line``): ``sluice check`` and ``sluice status``
print the error's last line only, and without the line a user has to reopen the traceback to find the spot."""

from __future__ import annotations

from pathlib import Path

from sluice import checks

SYNTAX_ERROR = "from airflow.sdk import DAG\nx = (\ndef\n"
NAME_ERROR = """import airflow
from airflow.sdk import DAG


def helper():
    return undefined_name


helper()
"""
BAD_PROFILE = """from datetime import datetime
from airflow.sdk import DAG
from sluice.operators import MLStepOperator

with DAG("bad_profile_line", schedule=None, start_date=datetime(2026, 1, 1)):
    MLStepOperator(task_id="train", image="ml-steps", command=["sluice-step", "train"], profile="huge")
"""


def test_sluice_check_names_the_line_of_each_import_error(tmp_path: Path, airflow_db: Path) -> None:
    """The line is in the DAG file even when the error is raised deep in Sluice (the task with the bad profile)."""
    (tmp_path / "syntax.py").write_text(SYNTAX_ERROR)
    (tmp_path / "name_error.py").write_text(NAME_ERROR)
    (tmp_path / "bad_profile.py").write_text(BAD_PROFILE)
    problems = checks.check_dag_folder(tmp_path, "CeleryExecutor")
    assert f"{tmp_path / 'bad_profile.py'}:6: ValueError: task 'train': unknown profile 'huge'" in " ".join(problems)
    assert f"{tmp_path / 'name_error.py'}:6: NameError: name 'undefined_name' is not defined" in problems
    assert f"{tmp_path / 'syntax.py'}:2: SyntaxError: '(' was never closed" in problems


# What the stack's dag-processor stores in import_error: a path relative to the bundle, a traceback two frames deep.
STORED = """Traceback (most recent call last):
  File "/srv/sluice/lib/python3.11/site-packages/airflow/sdk/bases/operator.py", line 567, in apply_defaults
    result = func(self, **kwargs, default_args=default_args)
  File "/srv/sluice/operators/sluice/operators.py", line 87, in __init__
    raise ValueError(f"task {self.task_id!r}: {exc}") from None
ValueError: task 'train': unknown profile 'huge'
"""


def test_a_stored_traceback_keeps_the_deepest_frame_when_the_dag_file_is_not_in_it() -> None:
    where, message = checks.error_location("team/bad_profile.py", STORED)
    assert where == "team/bad_profile.py"
    assert (
        message == "ValueError: task 'train': unknown profile 'huge' (at /srv/sluice/operators/sluice/operators.py:87)"
    )


def test_a_relative_path_matches_the_absolute_frames_of_its_file() -> None:
    trace = (
        'Traceback (most recent call last):\n  File "/opt/dags/team/x.py", line 12, in <module>\n    f()\nKeyError: 1\n'
    )
    assert checks.error_location("team/x.py", trace) == ("team/x.py:12", "KeyError: 1")
