"""``vigil packets ...``: CCSDS space packets described by XTCE (decode, check, monitor)."""

from __future__ import annotations

from contextlib import contextmanager
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


TIME_HELP = (
    "packet time parameter (repeatable; CONTAINER.PARAM for one packet type); default: the database's "
    "one AbsoluteTimeParameterType"
)
ENGINE_HELP = "bulk (fixed layouts in one pass, space_packet_parser for the rest) or spp (every packet)"
SEGMENTS_HELP = (
    "auto: join segmented packets (first, continuations, last) of APIDs the database sizes by their length "
    "field; off: decode every segment on its own"
)
SHB_HELP = "bytes of secondary header a later segment drops (default: the time fields after the primary header)"


@contextmanager
def _clean_errors(status: int = 2):
    """A refusal (bad database, bad option, bad file) is one line on stderr and exit ``status``."""
    from vigil.errors import VigilError

    try:
        yield
    except (VigilError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(status) from None


def _mission(xtce, csv, time, time_fine, time_scale, time_fine_scale, epoch, where: str):
    from vigil.ingest.ccsds.source import mission_from_options

    options = {
        "xtce": xtce,
        "csv": csv,
        "time": time,
        "time_fine": time_fine,
        "time_scale": time_scale,
        "time_fine_scale": time_fine_scale,
        "epoch": epoch,
    }
    return mission_from_options({k: v for k, v in options.items() if v not in (None, [], "")}, where=where)


def _with_time(spec: str, time, time_fine, time_scale, time_fine_scale, epoch) -> str:
    """The source spec with the time options added to its query (``time=...&epoch=...``)."""
    from urllib.parse import urlencode

    pairs = [("time", t) for t in time or []] + [("time_fine", t) for t in time_fine or []]
    pairs += [
        (k, v) for k, v in (("time_scale", time_scale), ("time_fine_scale", time_fine_scale), ("epoch", epoch)) if v
    ]
    if not pairs:
        return spec
    return spec + ("&" if "?" in spec else "?") + urlencode(pairs)


def _segments(segments: str, secondary_header_bytes: int | None) -> dict:
    from vigil.ingest.ccsds.source import segment_options

    return segment_options({"segments": segments, "secondary_header_bytes": secondary_header_bytes})


def _with_options(spec: str, **options) -> str:
    """The source spec with the options that are set added to its query."""
    from urllib.parse import urlencode

    pairs = [(k, v) for k, v in options.items() if v is not None]
    return spec + ("&" if "?" in spec else "?") + urlencode(pairs) if pairs else spec


def _xtce_file(xtce: str) -> str:
    if xtce == "demo":
        from vigil.ingest.ccsds.demo.generator import xtce_path

        return xtce_path()
    return xtce


def _describe(mission, stream) -> list[str]:
    """What an operator must know about the database: untimed types, unsupported, not monitored."""
    lines = [stream.report()]
    for lay in sorted(mission.layouts.values(), key=lambda x: (x.apid, x.name)):
        apids = ",".join(str(a) for a in lay.apids[:8]) + (",..." if len(lay.apids) > 8 else "")
        path = "bulk" if lay.plan is not None else f"per packet ({lay.slow_reason})"
        when = f"time {lay.time_field}" + (f" + {lay.fine_field}" if lay.fine_field else "")
        if lay.time_field is None:
            when = "no time field: timed by reception order"
        join = stream.reassembler
        if join.active[lay.apid]:
            path += f", segmented packets joined (secondary header {join.secondary_header_bytes[lay.apid]} bytes)"
        lines.append(f"packet type {lay.name} (APID {apids}): {len(lay.channels)} channels, {when}, decoded {path}")
    lines += [f"unsupported: {name} ({why})" for name, why in mission.unsupported.items()]
    lines += [f"not monitored: {name} ({why})" for name, why in mission.skipped.items()]
    return lines


@packets_app.command("inspect")
def packets_inspect(
    file: Path = typer.Argument(..., help="packet file (concatenated CCSDS space packets)"),
    xtce: str | None = typer.Option(None, help=XTCE_HELP),
    csv: str | None = typer.Option(None, help="instead of XTCE: ccsdspy definitions APID:FILE,APID:FILE"),
    time: list[str] | None = typer.Option(None, "--time", help=TIME_HELP),
    time_fine: list[str] | None = typer.Option(None, "--time-fine", help="sub-second time parameter"),
    time_scale: str | None = typer.Option(None, help="seconds per unit of the time parameter (default 1)"),
    time_fine_scale: str | None = typer.Option(None, help="seconds per unit of --time-fine (default 2**-bits)"),
    epoch: str | None = typer.Option(None, help="ISO 8601 time of time zero (e.g. 2010-01-01T00:00:00Z)"),
    engine: str = typer.Option("bulk", help=ENGINE_HELP),
    segments: str = typer.Option("auto", help=SEGMENTS_HELP),
    secondary_header_bytes: int | None = typer.Option(None, help=SHB_HELP),
) -> None:
    """Decode a packet file: counters per APID, packet types, channels, imported alarms and what is not mapped.

    Exits 1 when no packet could be decoded.
    """
    import numpy as np

    from vigil.ingest.ccsds import PacketStream
    from vigil.ingest.ccsds.xtce_alarms import read_xtce_alarms

    with _clean_errors():
        mission = _mission(xtce, csv, time, time_fine, time_scale, time_fine_scale, epoch, "vigil packets inspect")
        stream = PacketStream(mission, engine, str(file), **_segments(segments, secondary_header_bytes))
        block = stream.feed(file.read_bytes(), final=True)
        alarms = read_xtce_alarms(mission) if mission.xtce_path is not None else None
    for line in _describe(mission, stream):
        typer.echo(line)
    if block is not None:
        typer.echo(f"{block.n_samples} rows from t={block.time[0]:.3f} to t={block.time[-1]:.3f}")
        for j, name in enumerate(block.channels):
            col = block.values[:, j]
            ok = col[~np.isnan(col)]
            if ok.size:
                typer.echo(f"  {name}: {ok.size} samples, min {ok.min():.6g}, max {ok.max():.6g}")
    if alarms is not None:
        typer.echo(alarms.report())
    _exit_if_nothing(stream)


def _exit_if_nothing(stream) -> None:
    if stream.decoded_packets == 0:
        typer.echo("error: no packet could be decoded (see the counters above)", err=True)
        raise typer.Exit(1)


@packets_app.command("decode")
def packets_decode(
    file: Path = typer.Argument(..., help="packet file (concatenated CCSDS space packets)"),
    out: Path = typer.Option(
        ..., help="table to write (.parquet or .csv): time,channel,value,apid,sequence_count,packet"
    ),
    xtce: str | None = typer.Option(None, help=XTCE_HELP),
    csv: str | None = typer.Option(None, help="instead of XTCE: ccsdspy definitions APID:FILE,APID:FILE"),
    time: list[str] | None = typer.Option(None, "--time", help=TIME_HELP),
    time_fine: list[str] | None = typer.Option(None, "--time-fine", help="sub-second time parameter"),
    time_scale: str | None = typer.Option(None, help="seconds per unit of the time parameter (default 1)"),
    time_fine_scale: str | None = typer.Option(None, help="seconds per unit of --time-fine (default 2**-bits)"),
    epoch: str | None = typer.Option(None, help="ISO 8601 time of time zero (e.g. 2010-01-01T00:00:00Z)"),
    engine: str = typer.Option("bulk", help=ENGINE_HELP),
    wide: bool = typer.Option(False, help="write one column per channel and one row per time instead"),
    segments: str = typer.Option("auto", help=SEGMENTS_HELP),
    secondary_header_bytes: int | None = typer.Option(None, help=SHB_HELP),
    texts: bool = typer.Option(True, help="also write binary (hex) and string parameters, in a text column"),
) -> None:
    """Decode a packet file into a table: one row per decoded value (e.g. history for vigil monitor --fit).

    Every decoded value is written, packets with the same time included; what was not decoded is
    counted by reason in the report. Exits 1 when no packet could be decoded.
    """
    from vigil.ingest.ccsds import PacketStream
    from vigil.ingest.ccsds.stream import write_long, write_wide

    with _clean_errors():
        mission = _mission(xtce, csv, time, time_fine, time_scale, time_fine_scale, epoch, "vigil packets decode")
        options = _segments(segments, secondary_header_bytes)
        stream = PacketStream(mission, engine, str(file), texts=texts and not wide, **options)
        data = file.read_bytes()
        if wide:
            block = stream.feed(data, final=True)
            n = 0 if block is None else write_wide(block, out)
            what = "rows"
        else:
            packets = stream.feed_packets(data, final=True)
            n = write_long(packets, stream.decoder, out)
            what = f"values of {len(packets)} packets"
    for line in _describe(mission, stream):
        typer.echo(line)
    typer.echo(f"wrote {n} {what} to {out}")
    _exit_if_nothing(stream)


@packets_app.command("config")
def packets_config(
    out: Path = typer.Option(..., help="TOML channel configuration to write (for vigil monitor --config)"),
    xtce: str = typer.Option(..., help=XTCE_HELP),
    time: list[str] | None = typer.Option(None, "--time", help=TIME_HELP),
    time_fine: list[str] | None = typer.Option(None, "--time-fine", help="sub-second time parameter"),
) -> None:
    """Write the XTCE limits, debounce counts and rates as a channel configuration (valid TOML).

    A database without a usable packet layout gives the alarms of every parameter it declares.
    """
    from vigil.errors import ConfigError
    from vigil.ingest.ccsds.xtce_alarms import read_xtce_alarms

    with _clean_errors():
        try:
            alarms = read_xtce_alarms(_mission(xtce, None, time, time_fine, None, None, None, "vigil packets config"))
        except ConfigError as err:
            if err.key != "ContainerSet":
                raise
            typer.echo(f"no packet layout ({err.reason}); alarms read from the file alone, by parameter name")
            alarms = read_xtce_alarms(None, _xtce_file(xtce))
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
        ...,
        help="udp+ccsds://127.0.0.1:PORT?xtce=FILE&time=NAME, tcp+ccsds://... or file+ccsds://PATH?xtce=...",
    ),
    store: Path = typer.Option(Path("vigil.sqlite"), help="alarm store (SQLite file)"),
    report_every: float = typer.Option(10.0, help="seconds between counter lines"),
    serve: int | None = typer.Option(None, help="also serve the API/console on this port"),
    host: str = typer.Option("127.0.0.1", help="API bind address"),
    token_file: Path | None = typer.Option(None, help="API token file (else $VIGIL_API_TOKEN, else random)"),
    time: list[str] | None = typer.Option(None, "--time", help=TIME_HELP + " (or time= in the spec)"),
    time_fine: list[str] | None = typer.Option(None, "--time-fine", help="sub-second time parameter"),
    time_scale: str | None = typer.Option(None, help="seconds per unit of the time parameter (default 1)"),
    time_fine_scale: str | None = typer.Option(None, help="seconds per unit of --time-fine (default 2**-bits)"),
    epoch: str | None = typer.Option(None, help="ISO 8601 time of time zero (e.g. 2010-01-01T00:00:00Z)"),
    segments: str | None = typer.Option(None, help=SEGMENTS_HELP + " (or segments= in the spec; default auto)"),
    secondary_header_bytes: int | None = typer.Option(None, help=SHB_HELP),
    resume: bool = typer.Option(True, help="continue from the store's checkpoint, exactly as if never stopped"),
) -> None:
    """Monitor a packet stream with the mission's own XTCE alarms (ranges, contexts, states, rates).

    A stop (SIGTERM, Ctrl-C) or kill and a restart on the same store give the uninterrupted run:
    a packet file resumes by its input position, a live source counts what is at or before the
    checkpoint as replayed. Exit status: 0 clean, 1 fatal error, 3 finished with reported data problems.
    """
    import signal
    import threading

    from vigil.ingest.ccsds.pump import packet_session, run_blocks
    from vigil.ingest.ccsds.pump import resume as resume_blocks
    from vigil.ingest.ccsds.source import open_packet_source
    from vigil.ingest.ccsds.xtce_alarms import read_xtce_alarms
    from vigil.monitor.runner import event_line

    with _clean_errors(status=1):
        spec = _with_time(source, time, time_fine, time_scale, time_fine_scale, epoch)
        src = open_packet_source(_with_options(spec, segments=segments, secondary_header_bytes=secondary_header_bytes))
        mission = src.stream.mission
        alarms = read_xtce_alarms(mission)
    for line in _describe(mission, src.stream)[1:]:
        typer.echo(line)
    typer.echo(alarms.report())
    session = packet_session(src, alarms, store)
    db, manager = session.store, session.manager
    start = None
    if resume:
        try:
            start = resume_blocks(session, src)
        except ValueError as err:  # CheckpointMismatch: another configuration or database
            typer.echo(f"error: {err}", err=True)
            db.close()
            src.close()
            raise typer.Exit(1) from None
        if start is not None:
            typer.echo(f"resuming after t={start['time']} ({start['items']} input rows; checkpoint in {store})")
    manager.subscribe(lambda event: typer.echo(event_line(event)))
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())  # restored after (in-process callers)
    if serve is not None:
        from vigil.cli import _serve_in_background

        _serve_in_background(session, host, serve, token_file)
    typer.echo(f"monitoring {len(src.stream.channels)} channels from {src.name}")
    try:
        run_blocks(session, src, echo=typer.echo, report_every_s=report_every, stop=stop)
    except KeyboardInterrupt:
        typer.echo("interrupted")
    finally:
        signal.signal(signal.SIGTERM, previous)
        typer.echo(src.report())
        db.close()
    from vigil.cli import _report_outcome
    from vigil.monitor.report import exit_code

    raise typer.Exit(exit_code(_report_outcome(session, src, None if start is None else start["time"])))
