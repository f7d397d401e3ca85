"""The launcher's side of step contract v1 (docs/step-contract.md).

Steps implement the other side in ``sluice_steps.contract`` without importing Sluice: the wire
format (env names, result JSON) is the contract, so both sides spell it out.
"""

from __future__ import annotations

import json
from typing import Any

from sluice import artifacts
from sluice.errors import SluiceError

CONTRACT_VERSION = 1
ENV_VERSION = "SLUICE_CONTRACT_VERSION"
ENV_INPUTS = "SLUICE_STEP_INPUTS"
ENV_OUTPUTS = "SLUICE_STEP_OUTPUTS"
ENV_PARAMS = "SLUICE_STEP_PARAMS"
ENV_RESULT_URI = "SLUICE_RESULT_URI"
ENV_PREFIX = "SLUICE_ARTIFACT_PREFIX"
ENV_ROOT = "SLUICE_ARTIFACT_ROOT"
RESULT_FILE = "_result.json"
# A step's exit code when the image has no such step or refuses the invocation (sysexits' EX_USAGE): permanent.
EXIT_USAGE = 64


class StepContractError(SluiceError, RuntimeError):
    """The step exited 0 but did not keep its side of the contract."""


def step_env(
    inputs: dict[str, Any],
    outputs: dict[str, str],
    params: dict[str, Any],
    prefix: str,
    root: str | None = None,
) -> dict[str, str]:
    """The contract env; ``root`` (the artifact root) lets publishing steps find the shared places
    under it (``models/`` registry, ``tables/`` partitions)."""
    env = {
        ENV_VERSION: str(CONTRACT_VERSION),
        ENV_INPUTS: json.dumps(inputs, sort_keys=True),
        ENV_OUTPUTS: json.dumps(outputs, sort_keys=True),
        ENV_PARAMS: json.dumps(params, sort_keys=True, default=str),
        ENV_RESULT_URI: artifacts.join(prefix, RESULT_FILE),
        ENV_PREFIX: prefix,
    }
    if root:
        env[ENV_ROOT] = root
    return env


def read_result(result_uri: str, expected_outputs: dict[str, str]) -> dict[str, Any]:
    """Read and check the result JSON a step wrote; every broken promise is named."""
    try:
        raw = artifacts.read_text(result_uri)
    except FileNotFoundError:
        raise StepContractError(
            f"step broke its contract: it exited 0 but wrote no result JSON at {result_uri}"
        ) from None
    try:
        result = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StepContractError(f"step broke its contract: result JSON at {result_uri} is invalid: {exc}") from None
    if not isinstance(result, dict):
        raise StepContractError(f"step broke its contract: result JSON at {result_uri} is not an object")
    version = result.get("contract_version")
    if version != CONTRACT_VERSION:
        raise StepContractError(
            f"step broke its contract: result says contract_version {version!r}, launcher speaks "
            f"{CONTRACT_VERSION}; rebuild the step image against contract v{CONTRACT_VERSION}"
        )
    outputs = result.get("outputs")
    if outputs != expected_outputs:
        raise StepContractError(
            f"step broke its contract: result outputs {outputs!r} differ from the outputs it was given "
            f"{expected_outputs!r}"
        )
    missing = [name for name, uri in expected_outputs.items() if not artifacts.exists(uri)]
    if missing:
        raise StepContractError(
            f"step broke its contract: output(s) {', '.join(missing)} not found in the artifact store"
        )
    if not isinstance(result.get("metrics", {}), dict):
        raise StepContractError("step broke its contract: result metrics must be an object")
    return result
