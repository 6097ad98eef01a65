"""``edgekit calibrate``: tie the low-confidence threshold to measured accuracy, and save it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edgekit.cli import app
from edgekit.cli.options import context_option, json_option, threads_option
from edgekit.cli.output import err, out, print_json, print_table
from edgekit.cli.run import ARTIFACT_HELP, load_model
from edgekit.errors import ConfigError


@app.command("calibrate")
def calibrate_cmd(
    artifact: str = typer.Argument(..., help=ARTIFACT_HELP, show_default=False),
    data: Optional[Path] = typer.Option(None, "--data", help="Labelled questions, JSON Lines of {question, answer, aliases?} (default: the set edgekit ships).", show_default=False),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Use N questions spread evenly over the file (a quick run that still sees every kind).", show_default=False),
    first_k: Optional[int] = typer.Option(None, "--first-k", min=1, help="Tokens the confidence is measured over (default: the config's policy, else 8).", show_default=False),
    quantile: Optional[float] = typer.Option(None, "--quantile", min=0.0, max=1.0, help="Quantile of their probabilities (default: the config's, else 0.1; 0 = minimum).", show_default=False),
    target_accuracy: float = typer.Option(0.8, "--target-accuracy", min=0.0, max=1.0, help="Choose the lowest threshold whose local accuracy reaches this."),
    min_local: int = typer.Option(10, "--min-local", min=1, help="Ignore thresholds that leave fewer questions than this to the local model."),
    match: str = typer.Option("contains", "--match", help="contains: the answer holds a reference (normalised, whole words); exact: it is one."),
    system: Optional[str] = typer.Option(None, "--system", help="A system message before each question.", show_default=False),
    max_tokens: int = typer.Option(24, "--max-tokens", min=1, help="Tokens per answer."),
    threads: Optional[int] = threads_option("CPU threads for the local model."),
    context: Optional[int] = context_option("Local context window in tokens."),
    config: Optional[Path] = typer.Option(None, "--config", help="edgekit.toml to update (default: $EDGEKIT_CONFIG, else ./edgekit.toml, created if missing).", show_default=False),
    write: bool = typer.Option(True, "--write/--no-write", help="Save the chosen threshold, first_k and quantile to [policy] in the config."),
    as_json: bool = json_option("Print the table, the choice and every answer as JSON."),
):
    """Run the local model on labelled questions and tabulate, per threshold, the share it would answer
    locally and its accuracy on that share; write the chosen threshold to edgekit.toml.

    The score is what the router computes: the chosen quantile of the probabilities of the first K
    generated tokens (greedy, through the model's chat template).
    """
    from edgekit.fileio import check_output_file
    from edgekit.progress import RichProgress
    from edgekit.router import calibration as cal
    from edgekit.router.config import CONFIG_NAME, load_config, update_config
    from edgekit.router.policy import Policy

    if match not in ("contains", "exact"):
        raise ConfigError(f"--match must be 'contains' or 'exact', got {match!r}")
    target = Path(config).expanduser() if config is not None else Path(os.environ.get("EDGEKIT_CONFIG") or CONFIG_NAME)
    policy = load_config(target, env=False).policy if target.is_file() else Policy()
    policy = policy.with_(**{k: v for k, v in {"first_k": first_k, "quantile": quantile}.items() if v is not None})
    if write:  # before the questions run: the config is written at the end
        check_output_file(target, "config")
    questions = cal.load_questions(data if data is not None else cal.shipped_set(), limit)
    model = load_model(artifact, threads, context)
    try:
        samples = cal.run_calibration(model, questions, policy, system=system, max_tokens=max_tokens, match=match,
                                      progress=RichProgress(err))
    finally:
        model.close()
    rows = cal.threshold_table(samples)
    chosen, reached = cal.choose_threshold(rows, target_accuracy, min_local)
    stats = cal.summary(samples)
    written = None
    if write and chosen is not None:
        written = update_config(target, "policy", {"threshold": chosen.threshold, "first_k": policy.first_k, "quantile": policy.quantile})
    if as_json:
        print_json({
            "summary": stats, "policy": {"first_k": policy.first_k, "quantile": policy.quantile},
            "target_accuracy": target_accuracy, "rows": [r.__dict__ for r in rows],
            "chosen": chosen.__dict__ if chosen else None, "target_reached": reached,
            "config": str(written) if written else None, "samples": cal.samples_as_dicts(samples),
        })
        return
    print_table(_table(rows, chosen, policy, stats))
    kinds = ", ".join(f"{k} {v['accuracy']:.1%} of {v['questions']}" for k, v in stats["by_kind"].items())
    auroc = f"{stats['auroc']:.3f}" if stats["auroc"] is not None else "n/a"
    out.print(f"local accuracy on all {stats['questions']} questions: {stats['accuracy']:.1%} ({kinds}); "
              f"AUROC of the score for right vs wrong: {auroc}")
    if chosen is None:
        out.print(f"[yellow]no threshold leaves at least {min_local} questions to the local model; nothing chosen[/]")
        return
    verdict = "reaches" if reached else "[yellow]does not reach[/] (best available)"
    out.print(f"chosen threshold {chosen.threshold:.2f}: {chosen.local_share:.1%} answered locally at "
              f"{chosen.local_accuracy:.1%} accuracy, which {verdict} the target {target_accuracy:.0%}")
    if written:
        out.print(f"[green]wrote[/] \\[policy] threshold = {chosen.threshold:g}, first_k = {policy.first_k}, "
                  f"quantile = {policy.quantile:g} to {written}")


def _table(rows, chosen, policy, stats) -> Table:
    table = Table(title=f"local share vs accuracy ({policy.metric_name()}, {stats['questions']} questions)", title_justify="left")
    for col in ("threshold", "local", "local share", "local accuracy", "to remote"):
        table.add_column(col, justify="right")
    for r in rows:
        mark = " ←" if chosen is not None and r.threshold == chosen.threshold else ""
        acc = f"{r.local_accuracy:.1%}" if r.local_accuracy is not None else "-"
        table.add_row(f"{r.threshold:.2f}{mark}", str(r.local_n), f"{r.local_share:.1%}", acc, str(r.escalated_n))
    return table
