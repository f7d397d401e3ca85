"""The external-services path (deploy/values-prod.yaml: the database and broker from Secrets the user creates),
proven without a second install: the session's install runs the chart's defaults (the bundled services), and
here the prod render's migration Job runs against this machine's PostgreSQL, through the user's Secret.

test_pod_config.py sets up every pod of the same render (each Secret key it reads exists); this test runs the one
pod that writes to the external database, and checks what it wrote there.
"""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest
from cryptography.fernet import Fernet

from tests.chart.render import REPO, render_chart
from tests.chart_runtime.install import NAMESPACE, images, user_secret
from tests.chart_runtime.kubelet import Kubelet, Objects
from tests.support.postgres import fresh_database

pytestmark = pytest.mark.integration
JOB_BOUND = 300.0


def test_the_prod_values_migrate_an_external_database(pg_server, tmp_path: Path, prove) -> None:
    docs = render_chart({}, values_files=[REPO / "deploy" / "values-prod.yaml"], namespace=NAMESPACE)
    bundled = [d["metadata"]["name"] for d in docs if d["metadata"]["name"].endswith(("-postgresql", "-redis"))]
    assert bundled == [], f"values-prod.yaml renders bundled services: {bundled}"
    job = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"].startswith("sluice-migrate-"))
    with fresh_database(pg_server, "sluice_external") as db_url:
        secrets = {  # what docs/chart.md tells a production user to create
            "sluice-metadata-db": {
                "connection": db_url,
                "keda-connection": db_url.replace("postgresql+psycopg2://", "postgresql://"),
            },
            "sluice-broker": {"connection": "redis://127.0.0.1:6379/15"},
            "sluice-airflow-secrets": {
                "fernet-key": Fernet.generate_key().decode(),
                "api-secret-key": "a" * 32,
                "jwt-secret": "j" * 32,
            },
            "sluice-artifacts": {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"},
        }
        objects = Objects([*docs, *(user_secret(name, data) for name, data in secrets.items())])
        kubelet = Kubelet(objects, images(tmp_path), NAMESPACE, tmp_path)
        try:
            [pod] = kubelet.apply([job])
            assert pod.finished.wait(JOB_BOUND), f"not done in {JOB_BOUND:.0f} s:\n{pod.describe()}"
            assert pod.phase == "Succeeded", pod.describe()
            env = pod.containers[0].env
        finally:
            kubelet.stop_all(grace=10)
        # The components' connection is the user's Secret as written: no bundled address, nothing rerouted.
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == db_url
        with psycopg2.connect(db_url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM alembic_version")
            migrated = cur.fetchone()[0]
            cur.execute(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s",
                ("sluice_ti_pool_load",),
            )
            index = cur.fetchall()
        conn.close()
    assert (migrated, index) == (1, [(True,)])
    prove(
        f"values-prod.yaml render: {job['metadata']['name']} exit 0 in {pod.containers[0].seconds:.0f} s against "
        "this machine's PostgreSQL through the user's sluice-metadata-db Secret: migrated, pool-load index valid"
    )
