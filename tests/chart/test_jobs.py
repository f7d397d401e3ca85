"""The migration and admin Jobs: plain Jobs that converge under --wait, Flux, Argo CD and Terraform."""

from __future__ import annotations

import base64
import copy

from tests.chart.lookup_api import LookupApi
from tests.chart.render import by_kind, containers, env_of, get, render_chart

SHOW = ["templates/jobs.yaml"]


def jobs(values: dict | None = None, **kwargs) -> dict[str, dict]:
    docs = render_chart(values, show_only=SHOW, **kwargs)
    return {d["metadata"]["name"].rsplit("-", 1)[0]: d for d in by_kind(docs, "Job")}


def test_no_object_of_the_default_render_is_a_helm_hook(default_docs) -> None:
    """A post-install hook runs only after `helm install --wait` saw the pods ready, and every Airflow pod
    waits for the migration: with hooks the first install never finishes."""
    hooks = [d["metadata"]["name"] for d in default_docs if "helm.sh/hook" in d["metadata"].get("annotations", {})]
    assert hooks == []


def test_the_airflow_pods_wait_for_migrations_while_the_migration_job_needs_nothing(default_docs) -> None:
    migrate = next(d for d in by_kind(default_docs, "Job") if d["metadata"]["name"].startswith("sluice-migrate-"))
    assert "initContainers" not in migrate["spec"]["template"]["spec"]
    for deployment in by_kind(default_docs, "Deployment"):
        if deployment["metadata"]["name"] in ("sluice-redis", "sluice-statsd"):
            continue
        init = deployment["spec"]["template"]["spec"]["initContainers"]
        assert init[0]["args"][:3] == ["airflow", "db", "check-migrations"], deployment["metadata"]["name"]


def test_the_same_values_render_the_same_job_names() -> None:
    """Argo CD renders with `helm template` (revision always 1) and compares: a stable name is never recreated."""
    assert jobs().keys() == jobs().keys()
    assert sorted(jobs()) == ["sluice-create-user", "sluice-migrate"]
    names = [d["metadata"]["name"] for d in jobs().values()]
    assert names == [d["metadata"]["name"] for d in jobs().values()]


def test_a_new_image_gives_the_jobs_new_names_so_they_run_again() -> None:
    before = {k: d["metadata"]["name"] for k, d in jobs().items()}
    after = {k: d["metadata"]["name"] for k, d in jobs({"images": {"airflow": {"tag": "3.3.2-sluice.0.2.0"}}}).items()}
    assert all(before[k] != after[k] for k in before)


def test_a_value_the_jobs_do_not_use_keeps_their_names() -> None:
    before = {k: d["metadata"]["name"] for k, d in jobs().items()}
    after = {k: d["metadata"]["name"] for k, d in jobs({"ingress": {"host": "ml.example.org"}}).items()}
    assert before == after


def test_completed_jobs_are_kept_not_deleted_and_recreated() -> None:
    """A TTL deletes the Job; Argo CD's selfHeal then recreates it, and migrations rerun about hourly."""
    for job in jobs().values():
        assert "ttlSecondsAfterFinished" not in job["spec"]


def test_job_names_fit_the_job_name_label() -> None:
    long_release = "a-release-name-that-is-quite-long-indeed-x"
    # Without KEDA: its HPA names (keda-hpa-<fullname>-worker-<pool>) leave such a release pools of 6 characters.
    for job in jobs({"keda": {"enabled": False}}, name=long_release).values():
        assert len(job["metadata"]["name"]) <= 63, job["metadata"]["name"]


def test_the_migration_waits_for_the_database_then_migrates_and_builds_the_index() -> None:
    script = jobs()["sluice-migrate"]["spec"]["template"]["spec"]["containers"][0]["args"][-1]
    assert script.index("airflow db check --retry") < script.index("airflow db migrate")
    assert script.index("airflow db migrate") < script.index("python -m sluice.scaling ensure-index")
    assert script.startswith("set -euo pipefail;")


def test_the_migration_refuses_a_schema_newer_than_its_airflow_before_migrating() -> None:
    """Migrations go forward only: after a rollback the guard stops the Job with one line naming both revisions
    (tests/integration/test_forward_only_migrations.py) where `airflow db migrate` would fail inside alembic."""
    script = jobs()["sluice-migrate"]["spec"]["template"]["spec"]["containers"][0]["args"][-1]
    guard = "python -m sluice.migrations forward-only;"
    assert script.index("airflow db check --retry") < script.index(guard) < script.index("airflow db migrate")


def test_no_job_command_hides_a_failure() -> None:
    for job in jobs().values():
        for container in containers(job["spec"]["template"]["spec"]):
            assert "|| true" not in " ".join(container["args"]), job["metadata"]["name"]


def test_the_admin_job_runs_through_python_with_the_username_as_one_argument() -> None:
    """The official image's entrypoint runs `python` and `bash` as given and prefixes anything else with
    `airflow`; the username is an argv element, never shell text."""
    spec = jobs({"createUserJob": {"username": "ops.admin@example"}})["sluice-create-user"]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["args"] == ["python", "-m", "sluice", "admin-user", "--username", "ops.admin@example"]
    assert env_of(container)["SLUICE_ADMIN_PASSWORD"] == {"secretKeyRef": {"name": "sluice-admin", "key": "password"}}
    assert spec["initContainers"][0]["name"] == "wait-for-migrations"


def test_the_admin_job_reads_an_existing_password_secret() -> None:
    container = jobs({"createUserJob": {"passwordSecretName": "my-admin"}})["sluice-create-user"]["spec"]["template"]
    env = env_of(container["spec"]["containers"][0])
    assert env["SLUICE_ADMIN_PASSWORD"] == {"secretKeyRef": {"name": "my-admin", "key": "password"}}


def test_admin_user_job_is_optional() -> None:
    assert sorted(jobs({"createUserJob": {"enabled": False}})) == ["sluice-migrate"]


def admin_job(docs: list[dict]) -> str:
    return next(d["metadata"]["name"] for d in by_kind(docs, "Job") if "-create-user-" in d["metadata"]["name"])


def with_password(secret: dict, password: str) -> dict:
    """The Secret as a user leaves it after `kubectl edit`/`apply` with a new password."""
    changed = copy.deepcopy(secret)
    changed["data"]["password"] = base64.b64encode(password.encode()).decode()
    return changed


def test_an_upgrade_that_finds_the_admin_secret_unchanged_keeps_the_admin_jobs_name(tmp_path) -> None:
    install = render_chart()
    with LookupApi.for_render(install) as api:
        api.store(get(install, "Secret", "sluice-admin"))
        upgrade = api.render(tmp_path)
    assert get(upgrade, "Secret", "sluice-admin")["data"] == get(install, "Secret", "sluice-admin")["data"]
    assert admin_job(upgrade) == admin_job(install)


def test_a_changed_admin_password_renames_the_admin_job_so_it_runs_again(tmp_path) -> None:
    """values.yaml, NOTES.txt and docs/operations.md: change the Secret's password and upgrade to rotate it."""
    install = render_chart()
    with LookupApi.for_render(install) as api:
        api.store(with_password(get(install, "Secret", "sluice-admin"), "a-new-admin-password"))
        rotated, again = api.render(tmp_path), api.render(tmp_path)
    assert admin_job(rotated) != admin_job(install)
    assert admin_job(again) == admin_job(rotated), "an unchanged upgrade after the rotation runs nothing again"


def test_an_admin_secret_generated_again_on_upgrade_renames_the_admin_job() -> None:
    """The Secret was deleted: the upgrade generates a new password, which only a new Job run sets."""
    assert admin_job(render_chart(upgrade=True)) != admin_job(render_chart())


def test_a_changed_password_in_a_named_secret_renames_the_admin_job(tmp_path) -> None:
    values = {"createUserJob": {"passwordSecretName": "my-admin"}}
    mine = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "my-admin"}, "data": {}}
    install = render_chart(values)
    with LookupApi.for_render(install) as api:
        api.store(with_password(mine, "first-password"))
        first, again = api.render(tmp_path, values), api.render(tmp_path, values)
        api.store(with_password(api.secrets[("ml", "my-admin")], "second-password"))
        second = api.render(tmp_path, values)
    assert admin_job(again) == admin_job(first)
    assert admin_job(second) != admin_job(first)


def test_a_new_admin_username_renames_the_admin_job() -> None:
    assert admin_job(render_chart({"createUserJob": {"username": "ops"}})) != admin_job(render_chart())
