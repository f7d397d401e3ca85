"""Pod specs built offline for each default profile: what the launcher would submit, validated strictly."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from sluice.contract import step_env
from sluice.launchers.base import StepRun
from sluice.launchers.kubernetes import labels, pod_operator
from sluice.platform import PLATFORM_KEYS, parse_platform

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def platform():
    """The chart's default values, as a cluster would see them (platform.yaml)."""
    values = yaml.safe_load((REPO / "charts" / "sluice" / "values.yaml").read_text())
    data = {key: values[key] for key in PLATFORM_KEYS if key in values}
    return parse_platform({**data, "launcher": {**data["launcher"], "namespace": "ml"}}, source=Path("values.yaml"))


def step_for(platform, profile: str) -> StepRun:
    return StepRun(
        dag_id="ml_training_pipeline",
        task_id="train",
        run_id="scheduled__2026-11-25T00:00:00+00:00",
        try_number=1,
        map_index=-1,
        image=platform.image_ref("ml-steps"),
        command=["sluice-step", "train"],
        env=step_env(
            {"train": "s3://a/train.parquet"}, {"model": "s3://a/model.joblib"}, {"algorithm": "svc"}, "s3://a"
        ),
        profile_name=profile,
        profile=platform.profile(profile),
        artifact_prefix="s3://a",
    )


def spec_for(platform, profile: str) -> dict:
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(
        pod_operator(step_for(platform, profile), platform).build_pod_request_obj(None, dry_run=True)
    )


@pytest.mark.parametrize("profile", ["default", "highmem", "gpu"])
@pytest.mark.parametrize("version", ["1.30", "1.35"])
def test_pod_spec_of_each_default_profile_is_valid_kubernetes(platform, profile: str, version: str) -> None:
    kubernetes_validate.validate(spec_for(platform, profile), version, strict=True)


def test_gpu_profile_asks_for_its_vendor_resource_and_tolerates_the_taint(platform) -> None:
    spec = spec_for(platform, "gpu")["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]


def test_highmem_profile_gets_its_memory_as_request_and_limit(platform) -> None:
    resources = spec_for(platform, "highmem")["spec"]["containers"][0]["resources"]
    assert resources["requests"]["memory"] == resources["limits"]["memory"] == "16Gi"
    assert "nvidia.com/gpu" not in resources["limits"]


def test_step_pod_is_non_root_and_locked_down(platform) -> None:
    spec = spec_for(platform, "default")["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = spec["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False and container["readOnlyRootFilesystem"] is True
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert spec["automountServiceAccountToken"] is False


def test_step_contract_travels_as_env(platform) -> None:
    env = {e["name"]: e["value"] for e in spec_for(platform, "default")["spec"]["containers"][0]["env"]}
    assert env["SLUICE_CONTRACT_VERSION"] == "1"
    assert env["SLUICE_STEP_PARAMS"] == '{"algorithm": "svc"}'
    assert env["SLUICE_RESULT_URI"] == "s3://a/_result.json"


def test_artifact_credentials_come_from_the_named_secret(platform) -> None:
    with_secret = platform.model_copy(deep=True)
    with_secret.artifacts.secret_name = "minio-credentials"
    env_from = spec_for(with_secret, "default")["spec"]["containers"][0]["envFrom"]
    assert env_from == [{"secretRef": {"name": "minio-credentials"}}]


def test_sluice_pod_spec_prints_the_manifest_of_a_dag_task(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SLUICE_"))}
    env |= {"SLUICE_HOME": str(tmp_path), "SLUICE_ARTIFACT_ROOT": "s3://bucket/root"}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "sluice"), "pod-spec", "ml_training_pipeline", "train_highmem"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    pod = yaml.safe_load(proc.stdout)
    container = pod["spec"]["containers"][0]
    assert container["args"] == ["train"] and pod["metadata"]["labels"]["task_id"] == "train_highmem"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SLUICE_STEP_INPUTS"] == '{"test": "<xcom:featurize.test>", "train": "<xcom:featurize.train>"}'
    assert "<mapped>" in env["SLUICE_STEP_PARAMS"], "a mapped step's params are only known at run time"
    assert env["SLUICE_ARTIFACT_ROOT"] == "s3://bucket/root"
    assert container["resources"]["limits"]["memory"] == "16Gi", "train_highmem uses the highmem profile"
    kubernetes_validate.validate(pod, "1.35", strict=True)


@pytest.mark.slow  # `sluice pod-spec` as a process
def test_sluice_pod_spec_refuses_a_task_that_is_not_a_step(tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "d.py").write_text(
        "from datetime import datetime\nfrom airflow.sdk import DAG\n"
        "from airflow.providers.standard.operators.empty import EmptyOperator\n"
        f"with DAG('d', schedule=None, start_date=datetime({datetime(2026, 1, 1).year}, 1, 1)):\n"
        "    EmptyOperator(task_id='e')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SLUICE_"))} | {
        "SLUICE_HOME": str(tmp_path)
    }
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "sluice"), "pod-spec", "d", "e", "--dags-folder", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "not an MLStepOperator" in proc.stdout


def test_the_step_images_pull_policy_reaches_the_pod(platform) -> None:
    """``stepImages.<name>.pullPolicy`` is in the chart's schema, so the platform model and the pod honour it."""
    from sluice.podspec import pod_manifest

    always = platform.model_copy(deep=True)
    always.step_images["ml-steps"].pull_policy = "Always"
    pod = pod_manifest("ml_training_pipeline", "join", REPO / "dags", always)
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Always"


# A Kubernetes label value (apimachinery's validation): at most 63 characters, alphanumeric at both ends.
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


@pytest.mark.parametrize(
    "names", [("gpu-a100", "gpu/a100", "gpu a100", "gpu.a100."), ("x" * 70, "x" * 70 + "y")], ids=["chars", "length"]
)
def test_profile_labels_are_valid_and_never_shared_by_two_profiles(platform, names: tuple[str, ...]) -> None:
    step = step_for(platform, "gpu")
    values = [labels(dataclasses.replace(step, profile_name=name))["sluice.io/profile"] for name in names]
    assert all(len(value) <= 63 and LABEL_VALUE.fullmatch(value) for value in values), values
    assert len(set(values)) == len(names), f"two profiles share one label value: {values}"
    assert labels(step)["sluice.io/profile"] == "gpu", "a name that is a valid label value is kept as it is"
