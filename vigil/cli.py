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
@app.command("monitor")
def monitor(
    config: Path = typer.Option(..., help="channel configuration (TOML)"),
    source: str = typer.Option("stdin", help="file:PATH, stdin, tcp://127.0.0.1:PORT or udp://127.0.0.1:PORT"),
    fit: Path | None = typer.Option(None, help="nominal history (CSV/Parquet) to fit the learned detector on"),
    speed: str = typer.Option("1", help="file replay speed: 1, 10, ... or max (as fast as possible)"),
    store: Path = typer.Option(Path("vigil.sqlite"), help="alarm store (SQLite file)"),
    lateness: float = typer.Option(0.0, help="seconds a time step still accepts records after a later one"),
    max_jump: float = typer.Option(3600.0, help="a record this far ahead is quarantined until the stream follows (0: off)"),
    report_every: float = typer.Option(10.0, help="seconds between counter lines"),
    resume: bool = typer.Option(True, help="continue from the store's checkpoint, exactly as if never stopped"),
    refit: bool = typer.Option(False, help="fit the model again on --fit (else the saved <store>.model is loaded)"),
    serve: int | None = typer.Option(None, help="also serve the API/console on this port"),
    host: str = typer.Option("127.0.0.1", help="API bind address"),
    token_file: Path | None = typer.Option(None, help="API token file (else $VIGIL_API_TOKEN, else random)"),
) -> None:
    """Score telemetry as it arrives; print alarm changes and counters."""
    import signal
    import threading

    from vigil.errors import VigilError
    from vigil.ingest.records import FileSource, open_source
    from vigil.monitor.runner import build_session, event_line, is_replay, run

    try:
        rate = None if speed.lower() in ("max", "inf", "0") else float(speed.lower().rstrip("x"))
        jump = max_jump if max_jump > 0 else None
        session = build_session(
            config, fit_path=fit, store_path=store, lateness_s=lateness, max_jump_s=jump, refit=refit, echo=typer.echo
        )
        src = open_source(source, speed=rate)
        start = session.monitor.resume(replayable=isinstance(src, FileSource)) if resume else None
    except (VigilError, ValueError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    session.manager.subscribe(lambda event: typer.echo(event_line(event)))
    if start is not None:
        typer.echo(f"resuming after t={start['time']} ({start['items']} input items; checkpoint in {store})")
        if isinstance(src, FileSource):
            src.skip_items = start["items"]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if serve is not None:
        _serve_in_background(session, host, serve, token_file)
    typer.echo(f"monitoring {len(session.monitor.channels)} channels from {src.name}")
    try:
        run(session, src, echo=typer.echo, report_every_s=report_every, stop=stop)
        if start is not None and is_replay(src) and session.monitor.position_ == start["items"]:
            typer.echo(
                f"nothing new: the checkpoint already covers all {start['items']} input items of {src.name} "
                f"(--no-resume to score it again)"
            )
    except KeyboardInterrupt:
        typer.echo("interrupted")
    finally:
        session.store.close()


@bench_app.command("stream")
def bench_stream(
    channels: int = typer.Option(10_000, help="number of channels"),
    out: Path = typer.Option(Path("results-stream.json"), help="JSON results file"),
    rows: int = typer.Option(1_000, help="rows scored in blocks for samples_per_s"),
    block_rows: int = typer.Option(100, help="rows per block"),
    ticks: int = typer.Option(300, help="1-row ticks timed for the latency percentiles, per pass"),
    repeats: int = typer.Option(3, help="passes (samples_per_s is their median)"),
    seed: int = typer.Option(0, help="random seed of the generated channels"),
) -> None:
    """Channel-samples scored per second, 1 Hz tick latency and state bytes per channel."""
    from vigil.bench.stream import run_stream_bench, summary, write_results

    result = run_stream_bench(
        channels=channels, rows=rows, block_rows=block_rows, ticks=ticks, repeats=repeats, seed=seed
    )
    write_results(result, out)
    typer.echo(summary(result))


def _serve_in_background(session, host: str, port: int, token_file: Path | None) -> None:
    import threading

    import uvicorn

    from vigil.serve.app import create_app
    from vigil.serve.auth import resolve_token

    token, where = resolve_token(token_file)
    api = create_app(session.monitor, session.manager, session.store, token, lock=session.lock)
    server = uvicorn.Server(uvicorn.Config(api, host=host, port=port, log_level="warning"))
    threading.Thread(target=server.run, name="vigil-api", daemon=True).start()
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


@app.command("alarms")
def alarms_list(
    store: Path = typer.Option(Path("vigil.sqlite"), help="alarm store (SQLite file)"),
    state: str | None = typer.Option(None, help="only this state (active, acknowledged, ...; all: also cleared)"),
    incidents: bool = typer.Option(False, help="list incidents instead of alarms"),
    audit: int = typer.Option(0, help="also print the last N audit entries"),
) -> None:
    """List the alarms (or incidents) and the audit trail kept in a store."""
    from vigil.store.sqlite import SqliteStore

    if not store.is_file():
        typer.echo(f"error: {store}: no such store", err=True)
        raise typer.Exit(2)
    db = SqliteStore(store)
    try:
        if incidents:
            for inc in db.load_incidents():
                typer.echo(f"incident {inc.id} [{'active' if inc.active else 'closed'}] {inc.explanation}")
        else:
            for a in db.load_alarms(open_only=state != "all" and state != "cleared"):
                if state in (None, "all") or a.state == state:
                    typer.echo(f"#{a.id} {a.state} {a.explanation}")
        for e in db.audit(limit=audit) if audit > 0 else []:
            change = f"{e.action} {e.from_state} -> {e.to_state}"
            typer.echo(f"audit t={e.time:.6g} alarm {e.alarm_id} by {e.user}: {change} {e.comment}".rstrip())
    finally:
        db.close()


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
    nats: str | None = typer.Option(None, help="serve the whole fleet from these NATS URL(s) (vigil fleet ...)"),
) -> None:
    """Serve the operator console and API over a live monitor and its alarm store."""
    if nats is not None:  # the fleet console (issue 11): vigil/cli_fleet.py
        from vigil.cli_fleet import serve_fleet

        serve_fleet(nats, host, port, token_file, _announce)
        return
    if config is None:
        raise typer.BadParameter("give --config (or --nats for the fleet console)", param_hint="--config")
    from vigil.ingest.records import FileSource, open_source
    from vigil.monitor.runner import build_session
    from vigil.serve.app import create_app, loopback_hosts
    from vigil.serve.auth import resolve_token
    from vigil.serve.runner import SessionPump, serve_app

    token, where = resolve_token(token_file)
    session = build_session(config, fit_path=fit, store_path=store)
    hosts = loopback_hosts(host)
    api = create_app(session.monitor, session.manager, session.store, token, lock=session.lock, allowed_hosts=hosts)
    if source is not None:
        rate = None if speed.lower() in ("max", "inf", "0") else float(speed.lower().rstrip("x"))
        src = open_source(source, speed=rate)
        start = session.monitor.resume(replayable=isinstance(src, FileSource))
        if start is not None and isinstance(src, FileSource):
            src.skip_items = start["items"]
        pump = SessionPump(session, src)
        api.state.feeders.append(pump)
        pump.start()
    _announce(host, port, token, where)
    try:
        serve_app(api, host, port)
    finally:
        for feeder in api.state.feeders:
            feeder.stop()
        session.store.close()


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

    token, where = resolve_token(token_file)
    typer.echo("generating the STS-107 scenario and fitting the detector ...")
    session = build_demo(token, speed=speed, store_path=store, seed=seed, allowed_hosts=loopback_hosts(host))
    rows = session.replay.block.n_samples
    typer.echo(f"replaying {rows} s of telemetry at {speed:g}x; alarms in {session.store_path}")
    session.replay.start()
    _announce(host, port, token, where)
    typer.echo("open the URL now: alarms appear as the replay reaches them. Ctrl-C stops.")
    try:
        serve_app(session.app, host, port)
    finally:
        session.replay.stop()
        session.replay.join(timeout=5)  # let a chunk being fed finish before the store closes
        session.store.close()


def _announce(host: str, port: int, token: str, where: str) -> None:
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    typer.echo(f"Vigil console: http://{shown}:{port}/   (API schema: http://{shown}:{port}/openapi.json)")
    if where == "generated":
        typer.echo(f"API token (needed to acknowledge/shelve/clear; generated for this run): {token}")
    else:
        typer.echo(f"API token from {where}")


# --- ground-segment ingest (issue 5) --------------------------------------------------------------
packets_app = typer.Typer(help="CCSDS space packets described by XTCE: decode, check, monitor.", no_args_is_help=True)
app.add_typer(packets_app, name="packets")
XTCE_HELP = "XTCE mission database (or 'demo' for the packaged DEMOSAT one)"


def _register_packet_sources() -> None:
    """Let ``vigil monitor --source udp+ccsds://...`` open packet sources (imported only when used)."""
    from vigil.ingest.records import register_source

    def factory(spec: str, speed: float | None = None, skip_until: float | None = None):
        from vigil.ingest.ccsds.source import open_packet_source

        return open_packet_source(spec, speed=speed)

    for scheme in ("udp+ccsds", "tcp+ccsds", "file+ccsds"):
        register_source(scheme, factory)


_register_packet_sources()


def _xtce(path: str) -> str:
    if path == "demo":
        from vigil.ingest.ccsds.demo.generator import xtce_path

        return xtce_path()
    return path


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
    packets: int = typer.Option(1_000_000, help="packets through the ccsdspy (bulk) engine"),
    spp_packets: int = typer.Option(50_000, help="packets through the space_packet_parser engine"),
) -> None:
    """Decode and score a DEMOSAT packet stream end to end; report packets_per_s per engine."""
    from vigil.bench.packets import run_benchmark

    typer.echo(run_benchmark(out, packets=packets, spp_packets=spp_packets).summary())


@packets_app.command("inspect")
def packets_inspect(
    file: Path = typer.Argument(..., help="packet file (concatenated CCSDS space packets)"),
    xtce: str = typer.Option(..., help=XTCE_HELP),
    engine: str = typer.Option("ccsdspy", help="ccsdspy (bulk) or spp (space_packet_parser per packet)"),
) -> None:
    """Decode a packet file: per-APID counters, decoded channels, imported alarms and what is not mapped."""
    import numpy as np

    from vigil.ingest.ccsds import PacketStream, load_xtce
    from vigil.ingest.ccsds.xtce_alarms import read_xtce_alarms

    mission = load_xtce(_xtce(xtce))
    stream = PacketStream(mission, engine=engine, source=str(file))
    blocks = [b for b in (stream.feed(file.read_bytes(), final=True),) if b is not None]
    typer.echo(stream.report())
    for name, why in mission.skipped.items():
        typer.echo(f"not monitored: {name} ({why})")
    for block in blocks:
        typer.echo(f"{block.n_samples} rows from t={block.time[0]:.3f} to t={block.time[-1]:.3f}")
        for j, name in enumerate(block.channels):
            col = block.values[:, j]
            ok = col[~np.isnan(col)]
            if ok.size:
                typer.echo(f"  {name}: {ok.size} samples, min {ok.min():.4g}, max {ok.max():.4g}")
    typer.echo(read_xtce_alarms(mission).report())


@packets_app.command("decode")
def packets_decode(
    file: Path = typer.Argument(..., help="packet file (concatenated CCSDS space packets)"),
    out: Path = typer.Option(..., help="long time,channel,value table to write (.parquet or .csv)"),
    xtce: str | None = typer.Option(None, help=XTCE_HELP),
    csv: str | None = typer.Option(None, help="instead of XTCE: ccsdspy definitions APID:FILE,APID:FILE"),
    time: str | None = typer.Option(None, help="with --csv: the field holding packet time"),
    time_scale: float = typer.Option(1.0, help="with --csv: seconds per count of the time field"),
    engine: str = typer.Option("ccsdspy", help="ccsdspy (bulk) or spp (space_packet_parser per packet)"),
) -> None:
    """Decode a packet file into a table (e.g. nominal history for vigil monitor --fit)."""
    from vigil.ingest.ccsds import PacketStream
    from vigil.ingest.ccsds.source import mission_from_options
    from vigil.ingest.ccsds.stream import write_long

    options = {"xtce": xtce, "csv": csv, "time": time, "time_scale": str(time_scale)}
    mission = mission_from_options({k: v for k, v in options.items() if v}, where="vigil packets decode")
    stream = PacketStream(mission, engine=engine, source=str(file))
    block = stream.feed(file.read_bytes(), final=True)
    typer.echo(stream.report())
    n = 0 if block is None else write_long(block, out)
    typer.echo(f"wrote {n} records to {out}")


@packets_app.command("config")
def packets_config(
    xtce: str = typer.Option(..., help=XTCE_HELP),
    out: Path = typer.Option(..., help="TOML channel configuration to write (for vigil monitor --config)"),
) -> None:
    """Write the XTCE limits, debounce counts and rates as a channel configuration."""
    from vigil.ingest.ccsds import load_xtce
    from vigil.ingest.ccsds.xtce_alarms import read_xtce_alarms

    alarms = read_xtce_alarms(load_xtce(_xtce(xtce)))
    out.write_text(alarms.to_toml(), encoding="utf-8")
    typer.echo(alarms.report())
    typer.echo(f"wrote {out}")


@packets_app.command("demo")
def packets_demo(
    udp: str | None = typer.Option(None, help="send live to HOST:PORT over UDP (e.g. 127.0.0.1:10025)"),
    out: Path | None = typer.Option(None, help="write a packet file instead"),
    duration: float = typer.Option(3600.0, help="seconds of telemetry"),
    anomalies: bool = typer.Option(True, help="inject the demo anomalies"),
    seed: int = typer.Option(0, help="noise seed"),
    speed: float = typer.Option(1.0, help="UDP sending pace, times real time (10: first anomaly after 1 min)"),
) -> None:
    """Generate DEMOSAT packets (with known injected anomalies) to a file or a UDP port."""
    from vigil.ingest.ccsds.demo.generator import ANOMALIES, DemoSpacecraft

    sc = DemoSpacecraft(seed=seed)
    if anomalies:
        for a in ANOMALIES:
            typer.echo(f"injecting at +{a.start_s:.0f}..{a.end_s:.0f} s: {a.channel} {a.severity}: {a.what}")
    if out is not None:
        out.write_bytes(sc.packets(duration, anomalies=anomalies))
        typer.echo(f"wrote {out}")
    elif udp is not None:
        host, _, port = udp.rpartition(":")
        typer.echo(f"sending {duration:.0f} s of telemetry to udp://{host}:{port} at {speed:g}x (Ctrl-C stops)")
        try:
            typer.echo(f"sent {sc.send_udp(host or '127.0.0.1', int(port), duration, anomalies, speed)} packets")
        except KeyboardInterrupt:
            typer.echo("stopped")
    else:
        raise typer.BadParameter("give --udp HOST:PORT or --out FILE")


@packets_app.command("monitor")
def packets_monitor(
    source: str = typer.Option(
        ..., help="udp+ccsds://127.0.0.1:PORT?xtce=FILE, tcp+ccsds://... or file+ccsds://PATH?..."
    ),
    store: Path = typer.Option(Path("vigil.sqlite"), help="alarm store (SQLite file)"),
    report_every: float = typer.Option(10.0, help="seconds between counter lines"),
    serve: int | None = typer.Option(None, help="also serve the API/console on this port"),
    host: str = typer.Option("127.0.0.1", help="API bind address"),
    token_file: Path | None = typer.Option(None, help="API token file (else $VIGIL_API_TOKEN, else random)"),
) -> None:
    """Monitor a packet stream with the mission's own XTCE alarms (ranges, contexts, states, rates)."""
    import threading

    from vigil.alarms import AlarmManager
    from vigil.detect.xtce_alarm import XtceAlarmCheck, xtce_monitor_config
    from vigil.ingest.ccsds.source import open_packet_source
    from vigil.ingest.ccsds.xtce_alarms import read_xtce_alarms
    from vigil.model import TelemetryBlock
    from vigil.monitor.engine import Monitor
    from vigil.monitor.runner import Session, event_line, run
    from vigil.store.sqlite import SqliteStore

    src = open_packet_source(source)
    alarms = read_xtce_alarms(src.stream.mission)
    typer.echo(alarms.report())
    config = xtce_monitor_config(alarms)
    channels = src.stream.channels
    empty = TelemetryBlock.from_arrays([0.0], [[float("nan")] * len(channels)], channels)
    detector = XtceAlarmCheck(alarms).fit(empty)
    db = SqliteStore(store)
    manager = AlarmManager(config, store=db)
    manager.subscribe(lambda event: typer.echo(event_line(event)))
    session = Session(Monitor(config, detector, manager, store=db), manager, db, threading.RLock())
    if serve is not None:
        _serve_in_background(session, host, serve, token_file)
    typer.echo(f"monitoring {len(channels)} channels from {src.name}")
    try:
        run(session, src, echo=typer.echo, report_every_s=report_every)
    except KeyboardInterrupt:
        typer.echo("interrupted")
    finally:
        typer.echo(src.report())
        db.close()


# --- fleet on NATS JetStream (issue 11): the `vigil fleet ...` commands are in vigil/cli_fleet.py ---
from vigil.cli_fleet import fleet_app  # noqa: E402

app.add_typer(fleet_app, name="fleet")


if __name__ == "__main__":
    app()
