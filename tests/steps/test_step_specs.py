"""Each step's declared spec (sluice_steps.spec): exported by ``sluice-step --describe``, shipped with the platform
package, and enforced by the contract runner before and while the step runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sluice_steps.contract import EXIT_USAGE, StepContext, run_step
from sluice_steps.spec import Artifact, Param, StepSpec

from tests.steps.conftest import STEP_BIN

REPO = Path(__file__).resolve().parents[2]
STEPS_PACKAGE = REPO / "images" / "ml-steps" / "sluice_steps"
SHIPPED = REPO / "operators" / "sluice" / "step_specs" / "ml-steps.json"

SPEC = StepSpec(
    name="probe",
    summary="a step for these tests",
    params={
        "rows": Param("integer", "how many", default=40),
        "target": Param("string", "the target column", required=True),
        "threshold": Param(("number", "null"), "a gate"),
    },
    inputs={"data": Artifact("one table"), "parts": Artifact("a fan-in", required=False, many=True)},
    outputs={"out": Artifact("the result")},
)


@pytest.fixture(scope="module")
def described() -> dict:
    proc = subprocess.run([STEP_BIN, "--describe"], capture_output=True, text=True, timeout=120, check=True)
    return {"text": proc.stdout, "json": json.loads(proc.stdout)}


def env_for(prefix: Path, params: dict, inputs: dict | None = None, outputs: dict | None = None) -> dict[str, str]:
    return {
        "SLUICE_CONTRACT_VERSION": "1",
        "SLUICE_STEP_INPUTS": json.dumps({"data": str(prefix / "in.txt")} if inputs is None else inputs),
        "SLUICE_STEP_OUTPUTS": json.dumps({"out": str(prefix / "out.txt")} if outputs is None else outputs),
        "SLUICE_STEP_PARAMS": json.dumps(params),
        "SLUICE_RESULT_URI": str(prefix / "_result.json"),
        "SLUICE_ARTIFACT_PREFIX": str(prefix),
    }


def write_out(ctx: StepContext) -> None:
    ctx.write_text("out", f"{ctx.param('target')}:{ctx.param('rows')}")


def test_describe_lists_every_step_module_of_the_package(described: dict) -> None:
    """A step is a module with a ``run(ctx)``; each declares its spec, so --describe finds them all (no list)."""
    modules = {path.stem for path in STEPS_PACKAGE.glob("*.py") if re.search(r"^def run\(ctx", path.read_text(), re.M)}
    assert len(modules) >= 18
    assert set(described["json"]["steps"]) == modules
    assert described["json"]["contract"] == 1 and described["json"]["entrypoint"] == "sluice-step"


def test_impure_steps_are_the_ones_that_read_or_write_outside_their_inputs_and_outputs(described: dict) -> None:
    steps = described["json"]["steps"]
    impure = {name for name, spec in steps.items() if not spec["pure"]}
    assert impure == {"ingest", "publish", "score", "features"}
    assert all(steps[name]["effects"] for name in impure)
    assert "models/{model_name}/" in steps["publish"]["effects"] and "tables/" in steps["features"]["effects"]


def test_the_specs_shipped_with_the_platform_are_what_the_step_package_describes(described: dict) -> None:
    assert SHIPPED.read_text() == described["text"], (
        f"{SHIPPED.relative_to(REPO)} differs from `sluice-step --describe`: regenerate it with `make step-specs`"
    )


def test_a_param_not_in_the_spec_is_refused_before_the_step_runs(tmp_path: Path, capsys) -> None:
    ran = []
    code = run_step("probe", lambda ctx: ran.append(ctx), env_for(tmp_path, {"target": "t", "rowz": 5}), spec=SPEC)
    assert code == EXIT_USAGE and ran == [], "a refused invocation fails without retries, before the body"
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        "sluice-step: error: step 'probe' refuses its invocation: unknown param 'rowz' (did you mean 'rows'?); "
        "its params: rows, target, threshold"
    )


@pytest.mark.parametrize(
    ("params", "inputs", "expected"),
    [
        ({}, None, "missing required param 'target'"),
        ({"target": "t", "rows": "40"}, None, "param 'rows' must be integer, got string '40'"),
        ({"target": "t", "rows": True}, None, "param 'rows' must be integer, got boolean True"),
        ({"target": "t"}, {}, "missing required input 'data'"),
        ({"target": "t"}, {"data": ["a", "b"]}, "input 'data' takes one URI, got a list of 2"),
        ({"target": "t"}, {"data": "a", "dta": "b"}, "unknown input 'dta' (did you mean 'data'?)"),
    ],
)
def test_an_invocation_that_breaks_the_spec_is_refused_naming_the_field(
    tmp_path: Path, capsys, params: dict, inputs: dict | None, expected: str
) -> None:
    assert run_step("probe", write_out, env_for(tmp_path, params, inputs), spec=SPEC) == EXIT_USAGE
    assert expected in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_params_come_typed_with_the_specs_defaults(tmp_path: Path) -> None:
    params = {"target": "t", "threshold": 1}  # an integer is a number
    env = env_for(tmp_path, params, {"data": "x", "parts": "one-uri"})
    assert run_step("probe", write_out, env, spec=SPEC) == 0
    assert (tmp_path / "out.txt").read_text() == "t:40"


def test_a_step_that_reads_a_param_its_spec_does_not_declare_breaks_its_own_spec(tmp_path: Path, capsys) -> None:
    def body(ctx: StepContext) -> None:
        ctx.param("undeclared", 1)

    assert run_step("probe", body, env_for(tmp_path, {"target": "t"}), spec=SPEC) == EXIT_USAGE
    assert "step 'probe' broke its own spec: it uses param 'undeclared', which its SPEC does not declare" in (
        capsys.readouterr().err
    )


def test_a_pure_step_may_not_write_outside_its_outputs(tmp_path: Path, capsys) -> None:
    def body(ctx: StepContext) -> None:
        ctx.shared_uri("tables", "t")

    env = {**env_for(tmp_path, {"target": "t"}), "SLUICE_ARTIFACT_ROOT": str(tmp_path)}
    assert run_step("probe", body, env, spec=SPEC) == EXIT_USAGE
    assert "declared pure but uses a place outside its outputs" in capsys.readouterr().err


def test_a_spec_that_contradicts_itself_is_refused_when_declared() -> None:
    with pytest.raises(TypeError, match="param 'rows': default '40' is not integer"):
        StepSpec("bad", "x", params={"rows": Param("integer", "n", default="40")})
    with pytest.raises(TypeError, match="an impure step says what it does beyond its outputs"):
        StepSpec("bad", "x", pure=False)


def test_sluice_step_refuses_a_misspelt_param_with_the_usage_exit_code(tmp_path: Path) -> None:
    env = {
        **env_for(tmp_path, {"interval_start": "2026-01-01T00:00:00", "rowz": 5}, {}, {"batch": str(tmp_path / "b")}),
        "PATH": str(Path(sys.executable).parent),
    }
    proc = subprocess.run([STEP_BIN, "batch"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "unknown param 'rowz' (did you mean 'rows'?)" in proc.stderr.strip().splitlines()[-1]
