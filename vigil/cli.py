"""The ``vigil`` command: a thin layer over the package's modules (imports stay inside commands)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Vigil: early warning for spacecraft telemetry.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks on labelled or generated telemetry.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


# --- engine (issue 2) -----------------------------------------------------------------------------
@bench_app.command("smap-msl")
def bench_smap_msl(
    data: Path = typer.Option(..., help="folder holding train/, test/ and labeled_anomalies.csv"),
    out: Path = typer.Option(Path("results.json"), help="JSON results file"),
    per_channel: Path | None = typer.Option(None, help="CSV file with one row per channel"),
    channels: str | None = typer.Option(None, help="comma-separated channel ids (default: all)"),
) -> None:
    """Fit and score every SMAP/MSL channel with one global configuration; labels only score."""
    from vigil.bench.smap_msl import run_benchmark

    chans = [c.strip() for c in channels.split(",")] if channels else None
    result = run_benchmark(data, out=out, per_channel=per_channel, channels=chans)
    typer.echo(result.summary())


# --- live monitoring (issue 3) --------------------------------------------------------------------

# --- operator console (issue 4) -------------------------------------------------------------------

# --- ground-segment ingest (issue 5) --------------------------------------------------------------


if __name__ == "__main__":
    app()
