"""Each ML step on small data as a real subprocess: success, and bad input failing cleanly.

A clean failure = non-zero exit, a last stderr line naming the problem, and nothing written.
"""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sluice_steps.demo_data import write_demo_sources


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_demo_sources(tmp_path_factory.mktemp("demo"))


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1 serving tmp_path."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", tmp_path
    server.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_clean_failure(result, message: str) -> None:
    assert result.code != 0
    assert result.error.startswith("sluice-step: error:"), result.stderr
    assert message in result.error, result.stderr
    assert "Traceback" not in result.stderr
    assert result.leftovers() == [], "a failed step must leave no output and no temp file"


# --- ingest ---------------------------------------------------------------------------------------


def test_ingest_reads_a_csv_file(run_step, demo) -> None:
    result = run_step("ingest", params={"source": demo["csv"]}, outputs={"data": "data.parquet"})
    assert result.code == 0, result.stderr
    assert result.result["metrics"]["rows"] == 569
    assert pd.read_parquet(result.outputs["data"]).shape == (569, 21)


def test_ingest_runs_a_sql_query_through_sqlalchemy(run_step, demo) -> None:
    params = {"source": demo["sql_url"], "query": "SELECT id, target FROM measurements WHERE target = 1"}
    result = run_step("ingest", params=params, outputs={"data": "data.parquet"})
    assert result.code == 0, result.stderr
    assert set(pd.read_parquet(result.outputs["data"])["target"]) == {1}


def test_ingest_reads_parquet_over_http(run_step, http_root) -> None:
    base, folder = http_root
    pd.DataFrame({"id": [1, 2, 3], "x": [0.1, 0.2, 0.3]}).to_parquet(folder / "small.parquet")
    result = run_step("ingest", params={"source": f"{base}/small.parquet"}, outputs={"data": "d.parquet"})
    assert result.code == 0, result.stderr
    assert pd.read_parquet(result.outputs["data"])["id"].tolist() == [1, 2, 3]


def test_ingest_missing_file(run_step, tmp_path) -> None:
    result = run_step("ingest", params={"source": str(tmp_path / "nope.csv")}, outputs={"data": "d.parquet"})
    assert_clean_failure(result, "does not exist")


def test_ingest_empty_file(run_step, tmp_path) -> None:
    (tmp_path / "empty.csv").write_text("")
    result = run_step("ingest", params={"source": str(tmp_path / "empty.csv")}, outputs={"data": "d.parquet"})
    assert_clean_failure(result, "is empty")


def test_ingest_unknown_protocol(run_step) -> None:
    result = run_step("ingest", params={"source": "nosuchproto://bucket/x.csv"}, outputs={"data": "d.parquet"})
    assert_clean_failure(result, "unknown protocol")


def test_ingest_unreachable_http(run_step) -> None:
    source = f"http://127.0.0.1:{free_port()}/data.csv"
    result = run_step("ingest", params={"source": source}, outputs={"data": "d.parquet"})
    assert_clean_failure(result, source)


def test_ingest_http_404(run_step, http_root) -> None:
    base, _ = http_root
    result = run_step("ingest", params={"source": f"{base}/missing.csv"}, outputs={"data": "d.parquet"})
    assert_clean_failure(result, "does not exist")


def test_ingest_bad_sql(run_step, demo) -> None:
    params = {"source": demo["sql_url"], "query": "SELECT nope FROM measurements"}
    result = run_step("ingest", params=params, outputs={"data": "d.parquet"})
    assert_clean_failure(result, "the query failed on sqlite")


# --- the chain ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def joined(demo, tmp_path_factory) -> str:
    frame = pd.read_csv(demo["csv"]).merge(pd.read_sql_table("measurements", demo["sql_url"]), on="id")
    path = tmp_path_factory.mktemp("joined") / "data.parquet"
    frame.to_parquet(path)
    return str(path)


def test_join_joins_two_tables_on_the_key(run_step, tmp_path) -> None:
    pd.DataFrame({"id": [1, 2, 3], "a": [1, 2, 3]}).to_parquet(tmp_path / "l.parquet")
    pd.DataFrame({"id": [2, 3, 4], "b": [5, 6, 7]}).to_parquet(tmp_path / "r.parquet")
    inputs = {"left": str(tmp_path / "l.parquet"), "right": str(tmp_path / "r.parquet")}
    result = run_step("join", inputs=inputs, params={"on": "id"}, outputs={"data": "d.parquet"})
    assert result.code == 0, result.stderr
    assert pd.read_parquet(result.outputs["data"]).to_dict("list") == {"id": [2, 3], "a": [2, 3], "b": [5, 6]}


def test_join_missing_key_column(run_step, tmp_path) -> None:
    pd.DataFrame({"id": [1]}).to_parquet(tmp_path / "l.parquet")
    pd.DataFrame({"key": [1]}).to_parquet(tmp_path / "r.parquet")
    inputs = {"left": str(tmp_path / "l.parquet"), "right": str(tmp_path / "r.parquet")}
    result = run_step("join", inputs=inputs, params={"on": "id"}, outputs={"data": "d.parquet"})
    assert_clean_failure(result, "input 'right': join column 'id' is missing")


def test_validate_passes_good_data_and_writes_a_report(run_step, joined) -> None:
    params = {
        "schema": {"id": "int", "target": "int"},
        "not_null": ["target"],
        "ranges": {"target": [0, 1]},
        "min_rows": 100,
    }
    result = run_step("validate", inputs={"data": joined}, params=params, outputs={"report": "r.json"})
    assert result.code == 0, result.stderr
    assert result.result["metrics"]["checks_passed"] == 5


def test_validate_lists_every_violation_and_writes_no_report(run_step, joined) -> None:
    params = {"schema": {"missing_col": "float"}, "ranges": {"target": [0, 0]}, "min_rows": 10_000}
    result = run_step("validate", inputs={"data": joined}, params=params, outputs={"report": "r.json"})
    assert_clean_failure(result, "3 validation check(s) failed")
    assert "column 'missing_col' is missing" in result.error
    assert "row(s) outside [0, 0]" in result.error


@pytest.mark.slow  # trains models (4-12 s)
def test_featurize_train_evaluate_publish_chain(run_step, joined) -> None:
    feat = run_step(
        "featurize",
        inputs={"data": joined},
        params={"target": "target", "drop": ["id"], "test_size": 0.25, "random_state": 7},
        outputs={"train": "train.parquet", "test": "test.parquet", "transformer": "t.joblib"},
    )
    assert feat.code == 0, feat.stderr
    train = run_step(
        "train",
        inputs={"train": feat.outputs["train"]},
        params={"target": "target", "algorithm": "logistic_regression"},
        outputs={"model": "m.joblib"},
    )
    assert train.code == 0, train.stderr
    evaluate = run_step(
        "evaluate",
        inputs={"model": train.outputs["model"], "test": feat.outputs["test"]},
        params={"target": "target", "metric": "roc_auc", "threshold": 0.9},
        outputs={"metrics": "metrics.json"},
    )
    assert evaluate.code == 0, evaluate.stderr
    assert evaluate.result["metrics"]["roc_auc"] > 0.95
    publish = run_step(
        "publish",
        inputs={"model": train.outputs["model"], "metrics": evaluate.outputs["metrics"]},
        params={"model_name": "bc"},
        outputs={"model": "m.joblib", "model_card": "CARD.md"},
    )
    assert publish.code == 0, publish.stderr
    card = Path(publish.outputs["model_card"]).read_text()
    assert "# Model card: bc" in card and "| roc_auc |" in card


@pytest.mark.slow  # trains models (4-12 s)
def test_train_unknown_algorithm_lists_the_known_ones(run_step, joined) -> None:
    result = run_step(
        "train",
        inputs={"train": joined},
        params={"target": "target", "algorithm": "deep_magic"},
        outputs={"model": "m.joblib"},
    )
    assert_clean_failure(result, "'deep_magic' is unknown; algorithms: gradient_boosting, knn")


@pytest.mark.slow  # trains models (4-12 s)
def test_failed_quality_gate_writes_no_metrics(run_step, tmp_path) -> None:
    import joblib
    from sklearn.dummy import DummyClassifier

    test = pd.DataFrame({"x": [0.0, 1.0, 0.0, 1.0], "target": [0, 1, 0, 1]})
    test.to_parquet(tmp_path / "test.parquet")
    joblib.dump(DummyClassifier(strategy="most_frequent").fit(test[["x"]], test["target"]), tmp_path / "m.joblib")
    result = run_step(
        "evaluate",
        inputs={"model": str(tmp_path / "m.joblib"), "test": str(tmp_path / "test.parquet")},
        params={"target": "target", "metric": "accuracy", "threshold": 0.9},
        outputs={"metrics": "metrics.json"},
    )
    assert_clean_failure(result, "quality gate failed: accuracy 0.5000 < threshold 0.9000")


def test_unknown_step_name_is_refused_with_the_usage_exit_code(run_step) -> None:
    result = run_step("teleport")
    assert result.code == 64, "EX_USAGE: the launcher fails the task without retries"
    assert "unknown step 'teleport'" in result.error
