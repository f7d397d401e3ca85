"""A minimal step that speaks contract v1 without any Sluice code, driven by its argv for tests.

Modes: ok (write outputs + result), fail (exit 3 with a message), noresult (exit 0, no result JSON),
crash-mid-write (start an output, then die), hog (allocate memory), sleep (run past a timeout).
"""

import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path


def atomic_write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def main() -> int:
    mode = sys.argv[1]
    outputs = json.loads(os.environ["SLUICE_STEP_OUTPUTS"])
    inputs = json.loads(os.environ["SLUICE_STEP_INPUTS"])
    params = json.loads(os.environ["SLUICE_STEP_PARAMS"])
    started = datetime.now(UTC).isoformat()
    print(f"step starting in mode {mode} with params {params}", flush=True)
    print("a line on stderr", file=sys.stderr, flush=True)
    if mode == "fail":
        print("sluice-step: error: input 'data': column 'target' is missing", file=sys.stderr)
        return 3
    if mode == "hog":
        blob = bytearray(int(params.get("bytes", 600 * 2**20)))
        for i in range(0, len(blob), 4096):
            blob[i] = 1
        time.sleep(5)
        return 0
    if mode == "cpus":
        seen = {
            "omp": os.environ.get("OMP_NUM_THREADS"),
            "omp_wait": os.environ.get("OMP_WAIT_POLICY"),
            "affinity": len(os.sched_getaffinity(0)),
        }
        path = next(iter(outputs.values()))
        atomic_write(path, json.dumps(seen).encode())
        result = {"contract_version": 1, "step": "cpus", "status": "succeeded", "outputs": outputs, "metrics": seen}
        atomic_write(os.environ["SLUICE_RESULT_URI"], json.dumps(result).encode())
        return 0
    if mode == "sleep":
        time.sleep(float(params.get("seconds", 30)))
        return 0
    if mode == "crash-mid-write":
        path = next(iter(outputs.values()))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle = open(os.path.join(os.path.dirname(path), ".partial.tmp-x"), "wb")  # noqa: SIM115
        handle.write(b"half")
        handle.flush()
        os._exit(9)
    text = "".join(Path(uri).read_text() for uri in inputs.values())
    for name, uri in outputs.items():
        atomic_write(uri, f"{name}:{params.get('value', '')}:{text}".encode())
    if mode == "noresult":
        return 0
    result = {
        "contract_version": int(params.get("contract_version", 1)),
        "step": "contract_step",
        "status": "succeeded",
        "outputs": outputs,
        "metrics": {"length": len(text)},
        "started_at": started,
        "finished_at": datetime.now(UTC).isoformat(),
    }
    atomic_write(os.environ["SLUICE_RESULT_URI"], json.dumps(result).encode())
    print("step done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
