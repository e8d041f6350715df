"""The ``vigil`` command: a thin layer over the package's modules (imports stay inside commands)."""

from __future__ import annotations

from pathlib import Path

import typer

from vigil.cli_alarms import alarms_app

app = typer.Typer(help="Vigil: early warning for spacecraft telemetry.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks on labelled or generated telemetry.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(alarms_app, name="alarms")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"vigil {version('vigil-telemetry')}")
        except PackageNotFoundError:  # a source tree never installed
            typer.echo("vigil 0+unknown")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
) -> None:
    """Vigil: early warning for spacecraft telemetry."""


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


@bench_app.command("ucr")
def bench_ucr(
    data: Path = typer.Option(..., help="folder holding the archive's NNN_UCR_Anomaly_*.txt files"),
    out: Path = typer.Option(Path("results.json"), help="JSON results file"),
    per_series: Path | None = typer.Option(None, help="CSV file with one row per series"),
) -> None:
    """UCR anomaly archive: fit on each training prefix, is the highest test score on the anomaly?"""
    from vigil.bench.ucr import run_benchmark, summary

    typer.echo(summary(run_benchmark(data, out=out, per_series=per_series)))


# --- live monitoring (issue 3) --------------------------------------------------------------------
@app.command("monitor")
def monitor(
    config: Path = typer.Option(..., help="channel configuration (TOML)"),
    source: str = typer.Option("stdin", help="file:PATH, stdin, tcp://127.0.0.1:PORT or udp://127.0.0.1:PORT"),
    fit: Path | None = typer.Option(None, help="nominal history (CSV/Parquet) to fit the learned detector on"),
    speed: str = typer.Option("1", help="file replay speed: 1, 10, ... or max (as fast as possible)"),
    store: Path = typer.Option(Path("vigil.sqlite"), help="alarm store (SQLite file)"),
    lateness: float = typer.Option(0.0, help="seconds a time step still accepts records after a later one"),
    max_jump: float = typer.Option(3600.0, help="a record this far ahead is quarantined until the stream follows it"),
    report_every: float = typer.Option(10.0, help="seconds between counter lines"),
    resume: bool = typer.Option(True, help="continue from the store's checkpoint, exactly as if never stopped"),
    refit: bool = typer.Option(False, help="fit the model on --fit again (else the saved <store>.model is loaded)"),
    strict: bool = typer.Option(False, help="refuse a --fit history with bad rows instead of counting them"),
    serve: int | None = typer.Option(None, help="also serve the API/console on this port"),
    host: str = typer.Option("127.0.0.1", help="API bind address"),
    token_file: Path | None = typer.Option(None, help="API token file (else $VIGIL_API_TOKEN, else random)"),
    archive: Path | None = typer.Option(None, help="archive folder for every accepted sample (default: STORE.archive)"),
    no_archive: bool = typer.Option(False, "--no-archive", help="keep no archive (plots: last 256 samples)"),
    retention_days: float | None = typer.Option(None, min=0.01, help="archive: delete days older than this"),
) -> None:
    """Score telemetry as it arrives; print alarm changes and counters.

    Exit status: 0 clean, 1 fatal error, 3 finished with reported data problems.
    """
    import signal
    import threading

    from vigil.errors import VigilError
    from vigil.ingest.records import open_source
    from vigil.monitor.report import EXIT_FATAL, exit_code
    from vigil.monitor.runner import build_session, event_line, run

    sock = _bind_or_exit(host, serve) if serve is not None else None  # a busy port: said before any work
    try:
        rate = None if speed.lower() in ("max", "inf", "0") else float(speed.lower().rstrip("x"))
        jump = max_jump if max_jump > 0 else None
        session = build_session(
            config, fit_path=fit, store_path=store, lateness_s=lateness, max_jump_s=jump, strict=strict,
            refit=refit, echo=typer.echo,
        )  # fmt: skip
    except (VigilError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_FATAL) from None
    for line in session.fit_report.lines() if session.fit_report is not None else []:
        typer.echo(f"[fit] {line}")
    try:
        src = open_source(source, speed=rate)
        start = _resume(session, src) if resume else None
    except (VigilError, ValueError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        session.store.close()
        raise typer.Exit(EXIT_FATAL) from None
    session.manager.subscribe(lambda event: typer.echo(event_line(event)))
    extras = _extras(session, None if no_archive else archive or Path(f"{store}.archive"), retention_days)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if serve is not None:
        _serve_in_background(session, host, serve, token_file, sock, extras)
    typer.echo(f"monitoring {len(session.monitor.channels)} channels from {src.name}")
    try:
        run(session, src, echo=typer.echo, report_every_s=report_every, stop=stop)
    except KeyboardInterrupt:
        typer.echo("interrupted")
    finally:
        extras.close()
        session.store.close()
    found = _report_outcome(session, src, start)
    raise typer.Exit(exit_code(found))


def _resume(session, src) -> float | None:
    """Restore the store's checkpoint (raises ``CheckpointMismatch`` if it no longer fits); a file
    replay passes over the input it covers. Returns the checkpoint time."""
    from vigil.monitor.runner import resume

    start = resume(session, src)
    if start is None:
        return None
    where = getattr(session.store, "path", "the store")
    typer.echo(f"resuming after t={start['time']} ({start['items']} input items; checkpoint in {where})")
    return start["time"]


def _report_outcome(session, src, resumed_at: float | None = None) -> list[str]:
    """Print what the reader assumed and the data problems of the run; return the problems."""
    from vigil.monitor.report import problems

    for note in getattr(src, "notes", []):
        typer.echo(f"[note] {note}")
    skipped = getattr(src, "skipped", 0)
    if skipped:
        typer.echo(f"[note] passed over {skipped} input items the checkpoint (t={resumed_at}) already covers")
    with session.lock:
        summary = session.monitor.counters(nonzero=True)
    # Counters continue the stream's (restored with the checkpoint); "nothing scored" is about this run.
    summary["rows"] -= session.monitor.rows_at_resume
    found = problems(summary, session.fit_report, skipped=skipped, resumed_at=resumed_at)
    for line in found:
        typer.echo(f"[problem] {line}")
    return found


@bench_app.command("stream")
def bench_stream(
    channels: int = typer.Option(10_000, help="number of channels"),
    out: Path = typer.Option(Path("results-stream.json"), help="JSON results file"),
    rows: int = typer.Option(1_000, help="rows scored in blocks for samples_per_s"),
    block_rows: int = typer.Option(100, help="rows per block"),
    ticks: int = typer.Option(300, help="1-row ticks timed for the latency percentiles, per pass"),
    repeats: int = typer.Option(3, help="passes (samples_per_s is their median)"),
    seed: int = typer.Option(0, help="random seed of the generated channels"),
    archive: bool = typer.Option(False, help="also keep every sample in an archive (vigil.archive) and measure it"),
    history_points: int | None = typer.Option(None, help="live plot ring per channel (default: the monitor's)"),
) -> None:
    """Channel-samples scored per second, 1 Hz tick latency and state bytes per channel."""
    from vigil.bench.stream import run_stream_bench, summary, write_results

    result = run_stream_bench(
        channels=channels, rows=rows, block_rows=block_rows, ticks=ticks, repeats=repeats, seed=seed,
        archive=archive, history_points=history_points,
    )  # fmt: skip
    write_results(result, out)
    typer.echo(summary(result))


@bench_app.command("records")
def bench_records(
    out: Path = typer.Option(Path("results-records.json"), help="JSON results file"),
    channels: int = typer.Option(100, help="channels of the --speed max file"),
    seconds: int = typer.Option(50_000, help="seconds (1 Hz rows) of the --speed max file"),
    paced_channels: int = typer.Option(1_000, help="channels of the paced replay"),
    paced_seconds: int = typer.Option(10_000, help="seconds of the paced replay"),
    speed: list[float] = typer.Option([1000.0], help="paced replay speeds (repeat the option for several)"),
    code: str | None = typer.Option(None, help="run the monitor from this checkout (PYTHONPATH): before/after"),
) -> None:
    """The record path end to end: vigil monitor on a generated CSV of records, --speed max and paced."""
    from vigil.bench.records import run_benchmark, summary

    result = run_benchmark(out, channels, seconds, paced_channels, paced_seconds, tuple(speed), code)
    typer.echo(summary(result))


@bench_app.command("trend")
def bench_trend(
    channels: int = typer.Option(200, help="generated channels (4 in 5 drift toward the limit)"),
    hours: float = typer.Option(10.0, help="hours of 1 Hz samples"),
    seed: int = typer.Option(1, help="random seed (the default tau_s was chosen on seed 0)"),
    out: Path = typer.Option(Path("results-trend.json"), help="JSON results file"),
) -> None:
    """Time until limit on generated drifts: how early, how accurate (vigil.detect.trend)."""
    from vigil.bench.trend import run_trend_bench, summary, write_results

    result = run_trend_bench(channels=channels, hours=hours, seed=seed)
    write_results(result, out)
    typer.echo(summary(result))


def _extras(session, archive: Path | None, retention_days: float | None):
    """The archive, notifications and time-until-limit forecast on a session (vigil.monitor.extras)."""
    from vigil.errors import VigilError
    from vigil.monitor.extras import attach

    try:
        return attach(session.monitor, session.manager, archive, retention_days)
    except (VigilError, OSError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None  # fatal (vigil.monitor.report.EXIT_FATAL)


def _serve_in_background(session, host: str, port: int, token_file: Path | None, sock=None, extras=None) -> None:
    from vigil.serve.app import create_app
    from vigil.serve.auth import resolve_token
    from vigil.serve.runner import serve_in_background

    token, where = resolve_token(token_file)
    api = create_app(session.monitor, session.manager, session.store, token, lock=session.lock, extras=extras)
    serve_in_background(api, host, port, sock or _bind_or_exit(host, port))
    typer.echo(f"API on http://{host}:{port}/ (token from {where})")
    if where == "generated":
        typer.echo(f"API token: {token}")


replay_app = typer.Typer(help="Replay generated scenarios through the monitor.", no_args_is_help=True)
app.add_typer(replay_app, name="replay")


@replay_app.command("sts-107")
def replay_sts107(
    out: Path | None = typer.Option(None, help="JSON file for the full result (alarms, incidents, events)"),
    seed: int = typer.Option(0, min=0, help="seed of the synthetic entries"),
) -> None:
    """Columbia's entry (a reconstruction, not flight data): first alarm and incident vs MMACS's call."""
    import json

    from vigil.scenarios.replay import summary_lines
    from vigil.scenarios.sts107 import run_replay

    result = run_replay(seed=seed)
    typer.echo("\n".join(summary_lines(result)))
    if out is not None:
        try:
            out.write_text(json.dumps(result, indent=1) + "\n")
        except OSError as err:
            raise typer.BadParameter(f"cannot write {out}: {err.strerror or err}", param_hint="--out") from None
        typer.echo(f"wrote {out}")


config_app = typer.Typer(help="Channel configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(path: Path = typer.Argument(..., help="channel configuration (TOML, or YAML)")) -> None:
    """Validate a channel configuration; an error names the file and the key."""
    from vigil.config import load_config
    from vigil.errors import ConfigError

    try:
        cfg = load_config(path)
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    subsystems = {c.subsystem for c in cfg.channels.values()}
    typer.echo(
        f"{path}: ok, {len(cfg.channels)} channels in {len(subsystems)} subsystems, "
        f"{len(cfg.limits())} with limits, incident window {cfg.incident_window_s:g} s"
    )


@config_app.command("init")
def config_init(
    data: Path = typer.Argument(..., help="history (CSV/Parquet, long time,channel,value or wide)"),
    out: Path = typer.Option(Path("channels.toml"), help="configuration file to write"),
    force: bool = typer.Option(False, help="overwrite --out if it exists"),
) -> None:
    """Write a first configuration from data: channels, rates, subsystems; limits as suggestions."""
    from vigil.config_init import write_config
    from vigil.errors import VigilError

    if out.exists() and not force:
        typer.echo(f"error: {out} exists (--force overwrites it)", err=True)
        raise typer.Exit(2)
    try:
        channels, subsystems = write_config(data, out)
    except (VigilError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {out}: {channels} channels, {subsystems} subsystems from name prefixes; "
               f"limits suggested in comments (review, uncomment, then `vigil config check {out}`)")  # fmt: skip


@app.command("fit")
def fit_model(
    config: Path = typer.Option(..., help="channel configuration (TOML)"),
    archive: Path = typer.Option(..., help="archive folder (vigil monitor/serve --archive)"),
    start: str = typer.Option(..., help="span start: seconds since 1970 or ISO 8601 (UTC)"),
    end: str = typer.Option(..., help="span end: seconds since 1970 or ISO 8601 (UTC)"),
    out: Path = typer.Option(Path("vigil.sqlite.model"), help="model file to write"),
) -> None:
    """Refit the default detector on an archived span and save the model."""
    from vigil.archive.refit import parse_time, refit
    from vigil.errors import VigilError

    try:
        info = refit(config, archive, parse_time(start), parse_time(end), out)
    except (VigilError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    rows = info["history"]["rows"]
    model = info["model_id"][:12]
    typer.echo(f"wrote {out}: {len(info['channels'])} channels fitted on {rows} archived rows (model {model})")


# --- operator console (issue 4) -------------------------------------------------------------------
@app.command("serve")
def serve(
    config: Path | None = typer.Option(None, help="channel configuration (TOML); not with --nats"),
    source: str | None = typer.Option(None, help="file:PATH, stdin, tcp://HOST:PORT or udp://HOST:PORT to monitor"),
    fit: Path | None = typer.Option(None, help="nominal history (CSV/Parquet) to fit the learned detector on"),
    speed: str = typer.Option("1", help="file replay speed: 1, 10, ... or max"),
    store: Path = typer.Option(Path("vigil.sqlite"), help="alarm store (SQLite file)"),
    host: str = typer.Option("127.0.0.1", help="bind address (127.0.0.1: this machine only)"),
    port: int = typer.Option(8000, min=1, max=65535, help="HTTP port"),
    token_file: Path | None = typer.Option(None, help="API token file (else $VIGIL_API_TOKEN, else a random one)"),
    archive: Path | None = typer.Option(None, help="archive folder for every accepted sample (default: STORE.archive)"),
    no_archive: bool = typer.Option(False, "--no-archive", help="keep no archive (plots: last 256 samples)"),
    retention_days: float | None = typer.Option(None, min=0.01, help="archive: delete days older than this"),
    nats: str | None = typer.Option(None, help="serve the whole fleet from these NATS URL(s) (vigil fleet ...)"),
) -> None:
    """Serve the operator console and API over a live monitor and its alarm store.

    Exit status: 0 clean, 1 fatal error, 3 stopped after reporting data problems.
    """
    if nats is not None:  # the fleet console (issue 11): vigil/cli_fleet.py
        from vigil.cli_fleet import serve_fleet

        serve_fleet(nats, host, port, token_file, _announce)
        return
    if config is None:
        raise typer.BadParameter("give --config (or --nats for the fleet console)", param_hint="--config")
    from vigil.errors import VigilError
    from vigil.ingest.records import open_source
    from vigil.monitor.report import EXIT_FATAL, exit_code
    from vigil.monitor.runner import build_session
    from vigil.serve.app import create_app, loopback_hosts
    from vigil.serve.auth import resolve_token
    from vigil.serve.runner import SessionPump, serve_app

    sock = _bind_or_exit(host, port)
    token, where = resolve_token(token_file)
    src = start = None
    try:
        session = build_session(config, fit_path=fit, store_path=store)
        if source is not None:
            rate = None if speed.lower() in ("max", "inf", "0") else float(speed.lower().rstrip("x"))
            src = open_source(source, speed=rate)
            start = _resume(session, src)
    except (VigilError, ValueError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_FATAL) from None
    for line in session.fit_report.lines() if session.fit_report is not None else []:
        typer.echo(f"[fit] {line}")
    extras = _extras(session, None if no_archive else archive or Path(f"{store}.archive"), retention_days)
    hosts = loopback_hosts(host)
    api = create_app(
        session.monitor, session.manager, session.store, token, lock=session.lock, allowed_hosts=hosts, extras=extras
    )
    if src is not None:
        pump = SessionPump(session, src)
        api.state.feeders.append(pump)
        pump.start()
    _announce(host, port, token, where)
    try:
        serve_app(api, host, port, sock)
    finally:
        for feeder in api.state.feeders:
            feeder.stop()
        for feeder in api.state.feeders:  # let it checkpoint what it holds before the store closes
            if feeder.is_alive():
                feeder.join(timeout=30)
        extras.close()
        session.store.close()
    if src is not None:
        raise typer.Exit(exit_code(_report_outcome(session, src, start)))


@app.command("demo")
def demo(
    port: int = typer.Option(8000, min=1, max=65535, help="HTTP port"),
    host: str = typer.Option("127.0.0.1", help="bind address (127.0.0.1: this machine only)"),
    speed: float = typer.Option(10.0, min=0.01, help="replay speed (times real time; the entry is ~20 min)"),
    store: Path | None = typer.Option(None, help="alarm store (default: a new file in a temporary folder)"),
    token_file: Path | None = typer.Option(None, help="API token file (else $VIGIL_API_TOKEN, else a random one)"),
    seed: int = typer.Option(0, help="seed of the generated data"),
) -> None:
    """Replay Columbia's STS-107 entry (reconstructed) and SMAP/MSL-like channels into the console."""
    from vigil.serve.app import loopback_hosts
    from vigil.serve.auth import resolve_token
    from vigil.serve.demo import build_demo
    from vigil.serve.runner import serve_app

    sock = _bind_or_exit(host, port)  # a busy port is said now, not after building the demo
    token, where = resolve_token(token_file)
    typer.echo("generating the STS-107 scenario and fitting the detector ...")
    session = build_demo(token, speed=speed, store_path=store, seed=seed, allowed_hosts=loopback_hosts(host))
    rows = session.replay.block.n_samples
    typer.echo(f"replaying {rows} s of telemetry at {speed:g}x; alarms in {session.store_path}")
    session.replay.start()
    _announce(host, port, token, where)
    typer.echo("open the URL now: alarms appear as the replay reaches them. Ctrl-C stops.")
    try:
        serve_app(session.app, host, port, sock)
    finally:
        session.replay.stop()
        session.replay.join(timeout=5)  # let a chunk being fed finish before the store closes
        session.store.close()


def _bind_or_exit(host: str, port: int):
    """The server's socket, bound now; a busy port ends the command with a clear message (exit 1: fatal)."""
    from vigil.serve.runner import PortInUse, bind

    try:
        return bind(host, port)
    except PortInUse as err:
        typer.echo(f"error: {err.strerror}", err=True)
        raise typer.Exit(1) from None


def _announce(host: str, port: int, token: str, where: str) -> None:
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    typer.echo(f"Vigil console: http://{shown}:{port}/   (API schema: http://{shown}:{port}/openapi.json)")
    if where == "generated":
        typer.echo(f"API token (needed to acknowledge/shelve/clear; generated for this run): {token}")
    else:
        typer.echo(f"API token from {where}")


# --- ground-segment ingest (issue 5): the `vigil packets ...` commands are in vigil/cli_packets.py ---
from vigil.cli_packets import packets_app  # noqa: E402

app.add_typer(packets_app, name="packets")


@bench_app.command("fleet")
def bench_fleet(
    out: Path = typer.Option(Path("fleet.json"), help="JSON results file"),
    spacecraft: int = typer.Option(16, min=2),
    channels: int = typer.Option(200, min=1),
    duration: int = typer.Option(300, min=60, help="seconds of 1 Hz telemetry per spacecraft"),
    servers: int = typer.Option(3, help="NATS servers (1, or 3 for a JetStream cluster)"),
) -> None:
    """The fleet on NATS: channel-samples/s with 1, 2, 4 workers, scaling efficiency, failover time."""
    import json

    from vigil.bench.fleet import run_benchmark

    typer.echo(json.dumps(run_benchmark(out, spacecraft, channels, duration, servers=servers), indent=1))


@bench_app.command("packets")
def bench_packets(
    out: Path = typer.Option(Path("packets.json"), help="JSON results file"),
    packets: int = typer.Option(1_000_000, help="packets through the bulk engine"),
    spp_packets: int = typer.Option(50_000, help="packets through the space_packet_parser engine"),
) -> None:
    """Decode and score a DEMOSAT packet stream end to end; report packets_per_s per engine."""
    from vigil.bench.packets import run_benchmark

    typer.echo(run_benchmark(out, packets=packets, spp_packets=spp_packets).summary())


# --- fleet on NATS JetStream (issue 11): the `vigil fleet ...` commands are in vigil/cli_fleet.py ---
from vigil.cli_fleet import fleet_app  # noqa: E402

app.add_typer(fleet_app, name="fleet")


if __name__ == "__main__":
    app()
