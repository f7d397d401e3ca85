"""The step side of contract v1, in process: env checks, atomic writes, nothing left on failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sluice_steps.contract import StepContext, StepError, atomic_write, run_step


def env_for(prefix: Path, outputs: dict[str, str], version: str = "1") -> dict[str, str]:
    return {
        "SLUICE_CONTRACT_VERSION": version,
        "SLUICE_STEP_INPUTS": "{}",
        "SLUICE_STEP_OUTPUTS": json.dumps({k: str(prefix / v) for k, v in outputs.items()}),
        "SLUICE_STEP_PARAMS": "{}",
        "SLUICE_RESULT_URI": str(prefix / "_result.json"),
        "SLUICE_ARTIFACT_PREFIX": str(prefix),
    }


def test_success_writes_outputs_then_the_result(tmp_path: Path) -> None:
    def body(ctx: StepContext) -> None:
        ctx.write_text("a", "hello")
        ctx.metrics["n"] = 1

    assert run_step("t", body, env_for(tmp_path, {"a": "a.txt"})) == 0
    result = json.loads((tmp_path / "_result.json").read_text())
    assert result["contract_version"] == 1
    assert result["outputs"] == {"a": str(tmp_path / "a.txt")}
    assert result["metrics"] == {"n": 1}


def test_failure_after_one_output_removes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def body(ctx: StepContext) -> None:
        ctx.write_text("a", "first")
        raise StepError("second output impossible")

    assert run_step("t", body, env_for(tmp_path, {"a": "a.txt", "b": "b.txt"})) == 2
    assert list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err.strip().endswith("sluice-step: error: second output impossible")


def test_an_undeclared_output_is_never_written(tmp_path: Path) -> None:
    def body(ctx: StepContext) -> None:
        ctx.write_text("other", "x")

    assert run_step("t", body, env_for(tmp_path, {"a": "a.txt"})) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_declared_output_left_unwritten_fails_the_step(tmp_path: Path, capsys) -> None:
    assert run_step("t", lambda ctx: None, env_for(tmp_path, {"a": "a.txt"})) == 2
    assert "did not write declared output(s) a" in capsys.readouterr().err


def test_another_contract_version_is_refused(tmp_path: Path, capsys) -> None:
    assert run_step("t", lambda ctx: None, env_for(tmp_path, {}, version="2")) == 2
    assert "this step image speaks contract v1" in capsys.readouterr().err


def test_a_crash_is_reported_with_its_traceback(tmp_path: Path, capsys) -> None:
    def body(ctx: StepContext) -> None:
        raise ZeroDivisionError("bug")

    assert run_step("t", body, env_for(tmp_path, {})) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "crashed: ZeroDivisionError: bug" in err


def test_atomic_write_leaves_no_temp_file_when_the_write_fails(tmp_path: Path) -> None:
    class Unwritable:
        def __len__(self) -> int:
            return 1

    with pytest.raises(TypeError):
        atomic_write(str(tmp_path / "x.bin"), Unwritable())  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
