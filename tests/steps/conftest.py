"""Run steps as real subprocesses under contract v1, the way both launchers do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

STEP_BIN = str(Path(sys.executable).parent / "sluice-step")


def contract_env(
    prefix: str | Path, inputs: dict[str, Any], outputs: dict[str, str], params: dict[str, Any]
) -> dict[str, str]:
    """The environment a launcher gives a step: ``outputs`` maps names to file names under ``prefix`` (a folder
    or an ``s3://`` URI)."""
    base = str(prefix).rstrip("/")
    return {
        **os.environ,
        "SLUICE_CONTRACT_VERSION": "1",
        "SLUICE_STEP_INPUTS": json.dumps(inputs),
        "SLUICE_STEP_OUTPUTS": json.dumps({name: f"{base}/{filename}" for name, filename in outputs.items()}),
        "SLUICE_STEP_PARAMS": json.dumps(params),
        "SLUICE_RESULT_URI": f"{base}/_result.json",
        "SLUICE_ARTIFACT_PREFIX": base,
    }


@dataclass
class StepResult:
    code: int
    stderr: str
    outputs: dict[str, str]
    prefix: Path

    @property
    def error(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    @property
    def result(self) -> dict[str, Any]:
        return json.loads((self.prefix / "_result.json").read_text())

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.prefix.rglob("*") if p.is_file()) if self.prefix.exists() else []


@pytest.fixture
def run_step(tmp_path: Path):
    counter = iter(range(1000))

    def run(
        step: str,
        *,
        inputs: dict[str, str] | None = None,
        outputs: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> StepResult:
        prefix = tmp_path / f"{step}-{next(counter)}"
        env = contract_env(prefix, inputs or {}, outputs or {}, params or {})
        out_uris = json.loads(env["SLUICE_STEP_OUTPUTS"])
        proc = subprocess.run([STEP_BIN, step], env=env, capture_output=True, text=True, timeout=120)
        return StepResult(proc.returncode, proc.stderr, out_uris, prefix)

    return run
