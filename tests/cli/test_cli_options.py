"""Options with a fixed set of values are choices of the command line itself: a bad value is a usage error naming
the choices, never a traceback."""

from __future__ import annotations

from pathlib import Path

from sluice.checks import TARGETS
from sluice.cli import Target, app
from sluice.stack.config import TUNING_NAMES
from typer.testing import CliRunner


def test_an_unknown_tuning_is_a_usage_error_naming_the_choices(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["up", "--home", str(tmp_path / "stack"), "--tuning", "foo"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Invalid value for '--tuning'" in result.output
    assert all(name in result.output for name in TUNING_NAMES), result.output
    assert "Traceback" not in result.output and "ValidationError" not in result.output
    assert not (tmp_path / "stack").exists(), "nothing was started or written"


def test_up_lists_the_tuning_choices_in_its_help() -> None:
    result = CliRunner().invoke(app, ["up", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "sluice|stock" in result.output, result.output


def test_sluice_check_offers_every_target_and_only_those() -> None:
    assert [target.value for target in Target] == list(TARGETS)
    result = CliRunner().invoke(app, ["check", "--target", "cluster"])
    assert result.exit_code == 2 and "Invalid value for '--target'" in result.output, result.output


def test_an_unknown_launcher_is_a_usage_error_naming_the_choices(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--launcher", "kubernetes"], env={"SLUICE_HOME": str(tmp_path)})
    assert result.exit_code == 2 and "Invalid value for '--launcher'" in result.output, result.output
    assert "local" in result.output and "container" in result.output


def test_no_container_engine_is_one_line_naming_what_to_install(tmp_path: Path) -> None:
    from sluice.launchers.engine import find_engine

    find_engine.cache_clear()
    env = {"SLUICE_HOME": str(tmp_path), "SLUICE_CONTAINER_ENGINE": "no-such-engine"}
    try:
        result = CliRunner().invoke(app, ["demo", "--launcher", "container"], env=env)
    finally:
        find_engine.cache_clear()
    assert result.exit_code == 2, result.output
    assert "container engine 'no-such-engine'" in result.output and "apt-get install podman" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "airflow").exists(), "nothing was started or written"


def test_up_refuses_the_container_launcher_when_a_step_image_is_not_built(tmp_path: Path) -> None:
    platform = tmp_path / "platform.yaml"
    platform.write_text(
        "pools: [{name: default, queues: [default]}]\nprofiles: {default: {}}\nartifacts: {root: /tmp/x}\n"
        "stepImages: {ml-steps: {repository: localhost/sluice/never-built, tag: '0.0.0'}}\n"
    )
    from tests.support.containers import require_engine

    require_engine()
    env = {"SLUICE_PLATFORM_FILE": str(platform)}
    result = CliRunner().invoke(app, ["up", "--home", str(tmp_path / "stack"), "--launcher", "container"], env=env)
    assert result.exit_code == 2, result.output
    assert "localhost/sluice/never-built:0.0.0 is not built" in result.output and "make images" in result.output
    assert not (tmp_path / "stack").exists(), "nothing was started or written"
