"""A step's arguments are checked against its spec when the DAG is parsed (sluice.specs): at import, by the policy
for mapped steps, and by ``sluice check``; and the step cache follows the spec's purity."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk import DAG
from sluice import checks, policy, specs
from sluice.operators import MLStepOperator
from sluice.platform import current_platform

FEATURIZE = {
    "image": "ml-steps",
    "command": ["sluice-step", "featurize"],
    "inputs": {"data": "/data/joined.parquet"},
    "outputs": {"train": "train.parquet", "test": "test.parquet", "transformer": "transformer.joblib"},
}

TYPO_DAG = """
from datetime import datetime
from airflow.sdk import DAG
from sluice.operators import MLStepOperator

with DAG("typo", schedule=None, start_date=datetime(2026, 1, 1), default_args={"owner": "t"}):
    MLStepOperator(
        task_id="featurize",
        image="ml-steps",
        command=["sluice-step", "featurize"],
        inputs={"data": "/data/joined.parquet"},
        step_params={"targte": "target"},
        outputs={"train": "train.parquet", "test": "test.parquet", "transformer": "transformer.joblib"},
    )
"""

MAPPED_TYPO_DAG = """
from datetime import datetime
from airflow.sdk import DAG
from sluice.operators import MLStepOperator

with DAG("mapped_typo", schedule=None, start_date=datetime(2026, 1, 1), default_args={"owner": "t"}):
    MLStepOperator.partial(
        task_id="score",
        image="ml-steps",
        command=["sluice-step", "score"],
        inputs={"batch": "/data/batch.parquet"},
        outputs={"report": "report.json"},
    ).expand(step_params=[
        {"model_name": "m", "interval_start": "{{ ds }}", "shard": 0, "shards": 2},
        {"model_name": "m", "interval_strat": "{{ ds }}", "shard": 1, "shards": 2},
    ])
"""


def featurize(**kwargs: object) -> MLStepOperator:
    with DAG("specs_probe", schedule=None, start_date=datetime(2026, 1, 1)):
        return MLStepOperator(task_id="featurize", **{**FEATURIZE, **kwargs})


def test_a_misspelt_param_fails_at_construction_naming_the_task_the_step_the_field_and_the_fix() -> None:
    with pytest.raises(specs.StepSpecError) as raised:
        featurize(step_params={"targte": "target"})
    assert str(raised.value) == (
        "task specs_probe.featurize: step 'featurize' of image 'ml-steps': unknown param 'targte' (did you mean "
        "'target'?); its params: drop, random_state, target, test_size; missing required param 'target'"
    )


def test_a_missing_required_param_fails_at_construction() -> None:
    with pytest.raises(specs.StepSpecError, match=r"step 'featurize' .*: missing required param 'target'$"):
        featurize(step_params={"test_size": 0.2})


def test_a_param_of_the_wrong_type_fails_at_construction() -> None:
    with pytest.raises(specs.StepSpecError, match=r"param 'test_size' must be number, got string '0.2'"):
        featurize(step_params={"target": "target", "test_size": "0.2"})


def test_templated_and_upstream_values_are_checked_by_name_only() -> None:
    with DAG("specs_deferred", schedule=None, start_date=datetime(2026, 1, 1)):
        upstream = MLStepOperator(
            task_id="extract",
            image="ml-steps",
            command=["sluice-step", "batch"],
            step_params={"interval_start": "{{ ds }}", "rows": "{{ params.rows }}"},  # an integer once rendered
            outputs={"batch": "batch.parquet"},
        )
        step = MLStepOperator(
            task_id="featurize",
            **{**FEATURIZE, "inputs": {"data": upstream.output["batch"]}},
            step_params={"target": "target", "test_size": "{{ params.test_size }}"},
        )
    assert step.step_spec is not None and step.step_spec.pure


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"command": ["sluice-step", "featurise"]}, "unknown step 'featurise' (did you mean 'featurize'?)"),
        ({"inputs": {"dat": "/d"}}, "unknown input 'dat' (did you mean 'data'?); its inputs: data"),
        ({"inputs": {"data": ["/a", "/b"]}}, "input 'data' takes one URI, got a list (a fan-in) of 2"),
        ({"outputs": {"train": "t.parquet", "test": "t2.parquet"}}, "missing required output 'transformer'"),
        ({"outputs": {**FEATURIZE["outputs"], "plot": "p.png"}}, "unknown output 'plot'"),  # type: ignore[dict-item]
    ],
)
def test_unknown_or_missing_steps_inputs_and_outputs_fail_at_construction(kwargs: dict, expected: str) -> None:
    with pytest.raises(specs.StepSpecError, match=r"task specs_probe\.featurize: ") as raised:
        featurize(step_params={"target": "target"}, **kwargs)
    assert expected in str(raised.value)


def test_other_images_and_commands_are_not_checked() -> None:
    assert featurize(image="reg/other:1", step_params={"anything": 1}).step_spec is None
    assert featurize(command=["python3", "-c", "print()"], step_params={"anything": 1}).step_spec is None


def test_an_impure_step_refuses_cache_true_and_needs_no_flag_to_be_uncached() -> None:
    base = {
        "image": "ml-steps",
        "command": ["sluice-step", "features"],
        "inputs": {"batch": "/b.parquet"},
        "step_params": {"ds": "{{ ds }}"},
        "outputs": {"report": "report.json"},
    }
    with DAG("specs_impure", schedule=None, start_date=datetime(2026, 1, 1)):
        plain = MLStepOperator(task_id="features", **base)
        with pytest.raises(specs.StepSpecError, match=r"cache=True, but the step is impure \(replaces the day's"):
            MLStepOperator(task_id="cached", cache=True, **base)
    assert plain.step_spec is not None and not plain.step_spec.pure


def test_an_impure_step_is_never_served_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the platform's cache setting and the step's code: the plan for an impure step has no key."""
    monkeypatch.setenv("SLUICE_ARTIFACT_ROOT", str(tmp_path))
    assert current_platform().artifacts.cache.enabled
    ti = SimpleNamespace(dag_id="d", task_id="features", run_id="r", try_number=1, map_index=-1)
    with DAG("specs_cache", schedule=None, start_date=datetime(2026, 1, 1)):
        impure = MLStepOperator(
            task_id="features",
            image="ml-steps",
            command=["sluice-step", "features"],
            inputs={"batch": str(tmp_path / "b.parquet")},
            step_params={"ds": "2026-01-01"},
            outputs={"report": "report.json"},
        )
    _, plan = impure._prepare({"ti": ti})  # type: ignore[arg-type]
    assert plan.store is None and plan.key is None
    assert plan.note.startswith("step 'features' is impure (replaces the day's partition")


def test_a_dag_with_a_misspelt_param_fails_at_import_and_in_sluice_check(tmp_path: Path, airflow_db: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "typo.py").write_text(TYPO_DAG)
    bag = DagBag(dag_folder=str(tmp_path))
    (error,) = bag.import_errors.values()
    assert "task typo.featurize: step 'featurize' of image 'ml-steps': unknown param 'targte'" in error
    problems = checks.check_dag_folder(tmp_path, "CeleryExecutor")
    assert problems == [
        f"{tmp_path / 'typo.py'}:7: sluice.specs.StepSpecError: task typo.featurize: step 'featurize' of image "
        "'ml-steps': unknown param 'targte' (did you mean 'target'?); its params: drop, random_state, target, "
        "test_size; missing required param 'target'"
    ]


def test_a_mapped_steps_literal_params_are_checked_at_import_and_in_sluice_check(
    tmp_path: Path, airflow_db: Path
) -> None:
    (tmp_path / "mapped_typo.py").write_text(MAPPED_TYPO_DAG)
    (problem,) = checks.check_dag_folder(tmp_path, "CeleryExecutor")
    assert (
        "task mapped_typo.score (step_params from .expand(step_params=[...]) entry 1): step 'score' of image "
        "'ml-steps': unknown param 'interval_strat' (did you mean 'interval_start'?)"
    ) in problem
    assert "missing required param 'interval_start'" in problem


def test_the_policy_refuses_a_mapped_step_whose_partial_breaks_the_spec() -> None:
    from airflow.exceptions import AirflowClusterPolicyViolation

    with DAG("specs_mapped", schedule=None, start_date=datetime(2026, 1, 1)):
        mapped = MLStepOperator.partial(
            task_id="train", image="ml-steps", command=["sluice-step", "train"], step_params={"target": "t"}
        ).expand(inputs=[{"train": "/t.parquet"}])
        planner = MLStepOperator(
            task_id="plan",
            image="ml-steps",
            command=["sluice-step", "batch"],
            step_params={"interval_start": "{{ ds }}"},
            outputs={"batch": "batch.parquet"},
        )
        upstream_mapped = MLStepOperator.partial(
            task_id="fine", image="ml-steps", command=["sluice-step", "train"], outputs={"model": "m.joblib"}
        ).expand_kwargs(planner.output)
    with pytest.raises(AirflowClusterPolicyViolation, match=r"missing required param 'algorithm'"):
        policy.task_policy(mapped)
    assert specs.mapped_step_problem(upstream_mapped, current_platform()) is None, "known only at run time"


def test_the_shipped_specs_load_and_cover_the_example_dags_steps() -> None:
    shipped = specs.image_specs("ml-steps")
    assert shipped is not None and shipped.entrypoint == "sluice-step"
    raw = json.loads((specs.SPEC_DIR / "ml-steps.json").read_text())
    assert set(shipped.steps) == set(raw["steps"])
    examples = Path(__file__).resolve().parents[2] / "dags"
    used = {step for path in examples.glob("*.py") for step in re.findall(r'\[\*STEP, "(\w+)"\]', path.read_text())}
    assert len(used) >= 10 and used <= set(shipped.steps)
