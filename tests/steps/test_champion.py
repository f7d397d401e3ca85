"""The champion step as a real subprocess under contract v1: best by the declared metric, either direction,
and a clear failure when no candidate succeeded (nothing to compare).

The candidates are hand-made evaluations (the shape ``train`` writes) pointing at real fitted models, so
the scores, and with them the expected champion, are chosen by the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

OUTPUTS = {"model": "model.joblib", "leaderboard": "leaderboard.json", "plot": "roc.png"}
# roc_auc ranks a > b > c; log_loss (lower is better) ranks b < c < a: each direction has another champion,
# and neither is what the other direction would pick.
SCORES = {
    "00-a": {"roc_auc": 0.97, "log_loss": 0.40, "accuracy": 0.90},
    "01-b": {"roc_auc": 0.95, "log_loss": 0.20, "accuracy": 0.91},
    "02-c": {"roc_auc": 0.90, "log_loss": 0.30, "accuracy": 0.89},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """train.parquet, test.parquet, and per candidate a fitted model and its evaluation JSON."""
    folder = tmp_path_factory.mktemp("champion")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(80, 3)), columns=["x1", "x2", "x3"])
    frame["target"] = (frame["x1"] + 0.5 * frame["x2"] + rng.normal(scale=0.5, size=80) > 0).astype(int)
    frame[:60].to_parquet(folder / "train.parquet", index=False)
    frame[60:].to_parquet(folder / "test.parquet", index=False)
    paths = {"train": str(folder / "train.parquet"), "test": str(folder / "test.parquet")}
    for i, (name, scores) in enumerate(SCORES.items()):
        model = LogisticRegression(C=10.0 ** (i - 1)).fit(frame[:60].drop(columns=["target"]), frame[:60]["target"])
        joblib.dump(model, folder / f"{name}.joblib")
        evaluation = {
            "candidate": name,
            "algorithm": "logistic_regression",
            "hyperparams": {"C": 10.0 ** (i - 1)},
            "model": str(folder / f"{name}.joblib"),
            "scores": scores,
            "test_rows": 20,
        }
        (folder / f"{name}.json").write_text(json.dumps(evaluation))
        paths[name] = str(folder / f"{name}.json")
    return paths


def assert_no_candidate_succeeded(result) -> None:
    assert result.code == 2, result.stderr
    assert result.error.startswith("sluice-step: error: input 'candidates'"), result.stderr
    assert "no candidate succeeded" in result.error, result.stderr
    assert "check the logs of the candidate (train) instances" in result.error, result.stderr
    assert "Traceback" not in result.stderr
    assert result.leftovers() == [], "a failed step must leave no output and no temp file"


def test_champion_with_an_empty_fan_in_says_no_candidate_succeeded(run_step, data) -> None:
    params = {"target": "target", "metric": "roc_auc"}
    result = run_step("champion", inputs={"candidates": [], "test": data["test"]}, outputs=OUTPUTS, params=params)
    assert_no_candidate_succeeded(result)
    assert "input 'candidates' is empty" in result.error


@pytest.mark.slow  # trains candidates first (5-8 s each)
def test_champion_when_every_candidate_failed_says_no_candidate_succeeded(run_step, data) -> None:
    """Two real train steps fail (a fit error, an unknown algorithm): no evaluation exists to compare."""
    planned = []
    for hyper in ({"algorithm": "knn", "hyperparams": {"n_neighbors": -1}}, {"algorithm": "no_such_algorithm"}):
        train = run_step(
            "train",
            inputs={"train": data["train"], "test": data["test"]},
            outputs={"model": "model.joblib", "evaluation": "evaluation.json"},
            params={"target": "target", **hyper},
        )
        assert train.code == 2 and not Path(train.outputs["evaluation"]).exists(), train.stderr
        planned.append(train.outputs["evaluation"])
    result = run_step(
        "champion",
        inputs={"candidates": planned, "test": data["test"]},
        outputs=OUTPUTS,
        params={"target": "target"},
    )
    assert_no_candidate_succeeded(result)
    assert "none of the 2 evaluation(s) exists" in result.error and planned[0] in result.error


@pytest.mark.slow  # trains candidates first (5-8 s each)
@pytest.mark.parametrize(
    ("params", "champion", "order"),
    [
        ({"metric": "roc_auc"}, "00-a", ["00-a", "01-b", "02-c"]),
        ({"metric": "accuracy"}, "01-b", ["01-b", "00-a", "02-c"]),
        ({"metric": "log_loss", "higher_is_better": False}, "01-b", ["01-b", "02-c", "00-a"]),
    ],
    ids=["roc_auc-higher", "accuracy-higher", "log_loss-lower"],
)
def test_champion_is_the_best_by_the_declared_metric(run_step, data, params, champion, order) -> None:
    candidates = [data[name] for name in SCORES]
    result = run_step(
        "champion",
        inputs={"candidates": candidates, "test": data["test"]},
        outputs=OUTPUTS,
        params={"target": "target", **params},
    )
    assert result.code == 0, result.stderr
    metrics = result.result["metrics"]
    assert metrics["champion"] == champion and metrics["candidates"] == 3 and metrics["metric"] == params["metric"]
    assert metrics["champion_score"] == SCORES[champion][params["metric"]]
    leaderboard = json.loads(Path(result.outputs["leaderboard"]).read_text())
    assert [c["candidate"] for c in leaderboard["candidates"]] == order
    assert leaderboard["champion"]["candidate"] == champion
    assert leaderboard["higher_is_better"] is params.get("higher_is_better", True)
    written = Path(result.outputs["model"]).read_bytes()
    assert written == Path(data["train"]).with_name(f"{champion}.joblib").read_bytes(), "the champion's model"
    assert Path(result.outputs["plot"]).read_bytes().startswith(b"\x89PNG")
