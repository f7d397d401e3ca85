"""tests/support/airflow_private.py: the test harness's private Airflow symbols are gated as the platform's are
(tested releases, a feature test, what instead), live only there, and the package never reaches them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sluice import compat

from tests.support import airflow_private
from tests.support.airflow_private import Feature
from tests.unit import private_use

PACKAGE = Path(compat.__file__).parent
REPO = PACKAGE.parents[1]


@pytest.mark.parametrize("entry", airflow_private.ENTRIES, ids=lambda entry: entry.symbol.split(",")[0])
def test_each_harness_symbol_checks_out_on_the_pinned_releases(entry: compat.Private) -> None:
    assert entry.problem() is None


def test_every_feature_has_entries_and_a_string_is_refused() -> None:
    assert all(airflow_private.entries(feature) for feature in Feature)
    with pytest.raises(TypeError, match="Feature enum"):
        airflow_private.entries("tests.support.runs.backfill")  # type: ignore[arg-type]


def test_a_helper_without_fallback_stops_with_the_symbol_and_what_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    monkeypatch.delattr(SchedulerJobRunner, "_create_dagruns_for_dags")
    with pytest.raises(airflow_private.Unsupported, match=r"_create_dagruns_for_dags.*a scheduler \(`sluice up`\)"):
        airflow_private.require(Feature.CREATE_DUE_RUNS)


def test_on_an_untested_airflow_a_helper_stops_naming_the_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    real = compat.installed_version
    monkeypatch.setattr(compat, "installed_version", lambda d: "3.3.3" if d == "apache-airflow-core" else real(d))
    with pytest.raises(airflow_private.Unsupported) as raised:
        airflow_private.require(Feature.RUN_EXISTING)
    message = str(raised.value)
    assert "apache-airflow-core 3.3.3" in message and "tested: apache-airflow-core 3.3.2" in message, message
    assert "get_or_create_dagrun" in message and "a scheduler (`sluice up`)" in message, message
    assert "apache-airflow-core 3.3.3" in (airflow_private.problem(Feature.BACKFILL) or "")


def test_dag_test_takes_its_run_from_the_factory_only_inside_the_block() -> None:
    from airflow.models import dagrun

    original = dagrun.get_or_create_dagrun

    def factory(**_: object) -> None:
        raise AssertionError("not called here")

    with pytest.raises(RuntimeError), airflow_private.dag_test_run(factory):
        assert dagrun.get_or_create_dagrun is factory
        raise RuntimeError("the run failed")
    assert dagrun.get_or_create_dagrun is original


def test_the_guard_sees_the_harness_module_when_it_is_not_allowed() -> None:
    uses = private_use.scan([PACKAGE, REPO / "tests" / "support"], REPO, allowed=[PACKAGE / "compat.py"])
    assert {use.path for use in uses} == {"tests/support/airflow_private.py"}, uses
    assert any("_create_dagruns_for_dags" in use.what for use in uses), uses


def test_the_package_never_imports_the_test_harness() -> None:
    """The helpers moved out of sluice stay out: nothing under operators/sluice imports tests.*."""
    found = [
        f"{path.relative_to(REPO)}:{line} {module}"
        for path, line, module in private_use.absolute_imports(PACKAGE)
        if module.split(".")[0] == "tests"
    ]
    assert not found
