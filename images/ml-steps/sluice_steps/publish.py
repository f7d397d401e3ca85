"""publish: write a model card (markdown: metrics table, leaderboard, plot) and register the model.

With a ``registration`` output the model is published as a new version of the model registry under the
artifact root (``models/{model_name}/{version}/`` + the ``current`` pointer, see ``registry.py``); the
``registration`` JSON says which version and where. Publishing the model that is already current
registers nothing new (a retried or repeated run does not pile up identical versions).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sluice_steps import registry
from sluice_steps.contract import StepContext, StepError
from sluice_steps.spec import Artifact, Param, StepSpec

PLOT_FILE = "roc.png"
SPEC = StepSpec(
    name="publish",
    summary="write a model card and, with a registration output, register the model as a new version",
    params={
        "model_name": Param("string", "the model's name in the registry (no '/')", required=True),
        "version": Param(
            ("string", "integer", "null"), "the version to register (unset, null or '': the next number)", default=""
        ),
        "registry": Param("string", "URI of the model registry (default: models/ under the artifact root)", default=""),
    },
    inputs={
        "model": Artifact("the model (joblib)"),
        "metrics": Artifact("JSON: the evaluation (evaluate's metrics)"),
        "transformer": Artifact("joblib: the featurize transformer, registered beside the model", required=False),
        "leaderboard": Artifact("JSON: the champion's leaderboard, for the card", required=False),
        "plot": Artifact("PNG: the ROC curve, for the card", required=False),
    },
    outputs={
        "model_card": Artifact("markdown: the model card"),
        "registration": Artifact("JSON: the version registered and where (registers the model)", required=False),
        "model": Artifact("a copy of the model", required=False),
    },
    pure=False,
    effects="with a registration output, registers the model under models/{model_name}/ in the artifact root "
    "(or the registry param) and switches models/{model_name}/current to it",
)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def leaderboard_table(leaderboard: dict[str, Any]) -> str:
    metric = leaderboard.get("metric")
    candidates = leaderboard.get("candidates", [])
    names = sorted({name for c in candidates for name in c.get("scores", {})})
    head = "| rank | candidate | algorithm | hyperparams | " + " | ".join(names) + " |"
    rule = "| --- " * (4 + len(names)) + "|"
    rows = [
        f"| {i} | {c.get('candidate')} | {c.get('algorithm')} | `{json.dumps(c.get('hyperparams', {}))}` | "
        + " | ".join(_fmt(c.get("scores", {}).get(n, "")) for n in names)
        + " |"
        for i, c in enumerate(candidates, 1)
    ]
    return (
        f"## Candidates\n\n{len(candidates)} candidate(s) ranked by `{metric}` "
        f"({'higher' if leaderboard.get('higher_is_better', True) else 'lower'} is better); rank 1 is published.\n\n"
        + "\n".join([head, rule, *rows])
        + "\n"
    )


def model_card(
    name: str,
    evaluation: dict[str, Any],
    inputs: dict[str, Any],
    version: str | None = None,
    leaderboard: dict[str, Any] | None = None,
    plot: str | None = None,
) -> str:
    rows = "\n".join(f"| {metric} | {value} |" for metric, value in sorted(evaluation.get("scores", {}).items()))
    sources = "\n".join(
        f"- `{key}`: " + (f"`{uri}`" if isinstance(uri, str) else f"{len(uri)} artifacts")
        for key, uri in sorted(inputs.items())
    )
    title = f"# Model card: {name}" + (f" · version {version}" if version else "")
    champion = (leaderboard or {}).get("champion")
    parts = [
        f"{title}\n\n"
        f"Published {datetime.now(UTC).isoformat(timespec='seconds')} by Sluice's `publish` step.\n\n"
        + (
            f"Champion: `{champion.get('candidate')}` ({champion.get('algorithm')}, hyperparameters "
            f"`{json.dumps(champion.get('hyperparams', {}))}`).\n\n"
            if champion
            else ""
        )
        + f"Quality gate: `{evaluation.get('metric')}` ≥ {evaluation.get('threshold')} on "
        f"{evaluation.get('test_rows')} held-out rows.\n\n"
        f"| metric | value |\n| --- | --- |\n{rows}\n"
    ]
    if plot:
        parts.append(f"## ROC curve on the held-out rows\n\n![ROC curve]({plot})\n")
    if leaderboard:
        parts.append(leaderboard_table(leaderboard))
    parts.append(f"## Inputs\n\n{sources}\n")
    return "\n".join(parts)


def _read_bytes(ctx: StepContext, name: str) -> bytes:
    with ctx.open_input(name) as handle:
        data: bytes = handle.read()
    return data


def run(ctx: StepContext) -> None:
    name = ctx.param("model_name")
    if not name or "/" in name:
        raise StepError(f"param 'model_name': {name!r} must be a non-empty name without '/'")
    evaluation = ctx.read_json("metrics")
    model_bytes = _read_bytes(ctx, "model")
    leaderboard = ctx.read_json("leaderboard") if "leaderboard" in ctx.inputs else None
    plot = _read_bytes(ctx, "plot") if "plot" in ctx.inputs else None
    transformer = _read_bytes(ctx, "transformer") if "transformer" in ctx.inputs else None
    if "model" in ctx.outputs:
        ctx.write_bytes("model", model_bytes)
    if "registration" not in ctx.outputs:
        ctx.write_text("model_card", model_card(name, evaluation, ctx.inputs, leaderboard=leaderboard))
        ctx.metrics.update(model_bytes=len(model_bytes))
        return

    base = ctx.param("registry") or ctx.shared_uri("models")
    base = f"{base.rstrip('/')}/{name}"
    digest = hashlib.sha256(model_bytes).hexdigest()
    wanted = ctx.param("version") or ""  # unset, null or "": the next number
    current = registry.read_current(base)
    if not wanted and current and current.get("model_sha256") == digest:
        version, registered = current["version"], False
        card_text = model_card(name, evaluation, ctx.inputs, version, leaderboard, PLOT_FILE if plot else None)
    else:
        version = str(wanted) if wanted else registry.next_version(base)
        card_text = model_card(name, evaluation, ctx.inputs, version, leaderboard, PLOT_FILE if plot else None)
        files = {
            "model.joblib": model_bytes,
            "MODEL_CARD.md": card_text.encode(),
            "metrics.json": json.dumps(evaluation, indent=2, sort_keys=True).encode(),
        }
        if transformer is not None:
            files["transformer.joblib"] = transformer
        if plot is not None:
            files[PLOT_FILE] = plot
        if leaderboard is not None:
            files["leaderboard.json"] = json.dumps(leaderboard, indent=2, sort_keys=True).encode()
        metadata = {
            "name": name,
            "model_sha256": digest,
            "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "scores": evaluation.get("scores", {}),
            "champion": (leaderboard or {}).get("champion", {}).get("candidate"),
            "source_prefix": ctx.prefix,
        }
        registry.publish_version(base, version, files, metadata)
        registry.set_current(base, version)  # only once the version is complete
        registered = True
    ctx.write_text("model_card", card_text)
    ctx.write_json(
        "registration",
        {"name": name, "version": version, "uri": f"{base}/{version}", "current": True, "registered": registered},
    )
    ctx.metrics.update(model_bytes=len(model_bytes), version=version, registered=int(registered))
