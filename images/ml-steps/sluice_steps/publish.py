"""publish: write the model and a model card (markdown with the metrics table)."""

from __future__ import annotations

from datetime import UTC, datetime

from sluice_steps.contract import StepContext, StepError


def model_card(name: str, evaluation: dict, inputs: dict[str, str]) -> str:
    rows = "\n".join(f"| {metric} | {value} |" for metric, value in sorted(evaluation.get("scores", {}).items()))
    sources = "\n".join(f"- `{key}`: `{uri}`" for key, uri in sorted(inputs.items()))
    return (
        f"# Model card: {name}\n\n"
        f"Published {datetime.now(UTC).isoformat(timespec='seconds')} by Sluice's `publish` step.\n\n"
        f"Quality gate: `{evaluation.get('metric')}` ≥ {evaluation.get('threshold')} on "
        f"{evaluation.get('test_rows')} held-out rows.\n\n"
        f"| metric | value |\n| --- | --- |\n{rows}\n\n## Inputs\n\n{sources}\n"
    )


def run(ctx: StepContext) -> None:
    name = ctx.param("model_name", kind=str)
    if not name:
        raise StepError("param 'model_name' is empty")
    evaluation = ctx.read_json("metrics")
    with ctx.open_input("model") as handle:
        model_bytes = handle.read()
    ctx.write_bytes("model", model_bytes)
    ctx.write_text("model_card", model_card(name, evaluation, ctx.inputs))
    ctx.metrics.update(model_bytes=len(model_bytes))
