"""sluice.demo: an example DAG file declares what it needs (``EXAMPLE = Example(...)``) and the platform reads it
from the file, knowing no example by name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from sluice import demo
from sluice.demo import DemoError, Example

PACKAGE = Path(demo.__file__).parent
REPO = PACKAGE.parents[1]
DAGS = REPO / "dags"


def example_dag_ids() -> set[str]:
    """Every dag_id="..." the example DAG files spell out."""
    found = set()
    for path in DAGS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "dag_id" and isinstance(node.value, ast.Constant):
                found.add(str(node.value.value))
    return found


def test_the_package_names_no_example_but_the_demo_default() -> None:
    """Examples declare what they need; the platform's code does not know them (issue #28). The one exception:
    what `sluice demo` runs without an argument (cli.DEFAULT_DEMO)."""
    ids = example_dag_ids()
    assert {"ml_training_pipeline", "batch_scoring", "daily_features", "sharded_training"} <= ids, ids
    model = demo.declared(DAGS / "batch_scoring.py").requires_model
    assert model
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if {"examples", "data"} & set(path.relative_to(PACKAGE).parts[:-1]):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if path.name == "cli.py" and line.startswith('DEFAULT_DEMO = "'):
                continue
            found += [f"{path.relative_to(REPO)}:{number}: {name}" for name in [*ids, model] if name in line]
    assert not found, "\n".join(found)


def test_the_examples_declare_their_needs() -> None:
    training = demo.declared(DAGS / "ml_training_pipeline.py")
    scoring = demo.declared(DAGS / "batch_scoring.py")
    assert training.prepare is not None and training.requires_model is None
    assert scoring.prepare is None and scoring.registered_by == "ml_training_pipeline"
    assert demo.declared(DAGS / "sharded_training.py").prepare is not None
    assert demo.declared(DAGS / "daily_features.py") == Example(), "a file without EXAMPLE needs nothing"


def test_a_required_model_comes_with_the_example_that_registers_it() -> None:
    with pytest.raises(TypeError, match="registered_by"):
        Example(requires_model="m")
    with pytest.raises(TypeError, match="requires_model"):
        Example(registered_by="trainer")


def test_a_runs_conf_may_name_another_model_through_the_declared_param() -> None:
    example = Example(requires_model="m", registered_by="trainer", model_param="model_name")
    assert example.model() == "m" and example.model({"rows": 3}) == "m"
    assert example.model({"model_name": "other"}) == "other"
    assert Example(requires_model="m", registered_by="trainer").model({"model_name": "other"}) == "m"
    assert Example().model({"model_name": "other"}) is None


def test_a_missing_model_names_the_registry_and_the_example_to_run_first() -> None:
    example = Example(requires_model="nobody-registered-this", registered_by="some_trainer")
    with pytest.raises(DemoError) as raised:
        demo.require_model("my_scorer", example)
    message = str(raised.value)
    assert "my_scorer scores with the current version of model 'nobody-registered-this'" in message, message
    assert "run `sluice demo some_trainer` first" in message, message
    demo.require_model("my_scorer", Example())  # needs no model: passes


def test_declared_refuses_a_wrong_type_and_prepare_failures_name_the_example(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.py"
    wrong.write_text("EXAMPLE = {'prepare': None}\n")
    with pytest.raises(DemoError, match=r"wrong.py: EXAMPLE is a dict, not a sluice.demo.Example"):
        demo.declared(wrong)

    def fails(folder: Path) -> None:
        raise OSError(f"disk full under {folder}")

    with pytest.raises(DemoError, match=re.escape(f"my_example's demo data could not be made under {tmp_path}")):
        demo.prepare("my_example", Example(prepare=fails), tmp_path)


def test_prepare_makes_the_data_under_the_demo_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_DEMO_DATA", str(tmp_path / "data"))
    made: list[Path] = []
    demo.prepare("x", Example(prepare=made.append))
    assert made == [tmp_path / "data"] and made[0].is_dir()
