"""A no-op step that keeps contract v1 (writes its result JSON): what launch overhead is measured on."""

import json
import os

with open(os.environ["SLUICE_RESULT_URI"], "w") as handle:
    result = {"contract_version": 1, "step": "noop", "status": "succeeded", "outputs": {}, "metrics": {}}
    json.dump(result, handle)
