"""``vigil packets ...``: CCSDS space packets described by XTCE (decode, check, monitor)."""

from __future__ import annotations

from pathlib import Path

import typer

packets_app = typer.Typer(help="CCSDS space packets described by XTCE: decode, check, monitor.", no_args_is_help=True)
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
        from vigil.cli import _serve_in_background

        _serve_in_background(session, host, serve, token_file)
    typer.echo(f"monitoring {len(channels)} channels from {src.name}")
    try:
        run(session, src, echo=typer.echo, report_every_s=report_every)
    except KeyboardInterrupt:
        typer.echo("interrupted")
    finally:
        typer.echo(src.report())
        db.close()
