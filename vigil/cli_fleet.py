"""``vigil fleet ...``: many spacecraft over NATS JetStream (server, generate, publish, worker, status).

The optional extra ``vigil-telemetry[fleet]`` (nats-py) is needed; ``nats-server`` runs the bus.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import typer

fleet_app = typer.Typer(help="Many spacecraft on NATS JetStream: server, generate, publish, worker, status.",
                        no_args_is_help=True)  # fmt: skip
NATS_HELP = "NATS server URL(s), comma-separated (e.g. nats://127.0.0.1:4222)"


def _urls(nats: str) -> list[str]:
    urls = [u.strip() for u in nats.split(",") if u.strip()]
    if not urls:
        raise typer.BadParameter("give at least one NATS URL", param_hint="--nats")
    return urls


def _need_nats() -> None:
    try:
        import nats  # noqa: F401
    except ImportError:
        typer.echo("the fleet needs nats-py: pip install 'vigil-telemetry[fleet]'", err=True)
        raise typer.Exit(2) from None


def load_model_for(config_path: Path, model: Path | None):
    """The configuration, the fitted detector (a saved model, else the configured limits) and the
    identity checkpoints are written under."""
    import numpy as np

    from vigil.config import load_config
    from vigil.detect.limits import LimitCheck
    from vigil.errors import ConfigError
    from vigil.model import TelemetryBlock
    from vigil.store.model_file import config_sha256, load_model

    config = load_config(config_path)
    identity = {"configuration": config_sha256(config)}
    if model is not None:
        detector, info = load_model(model)
        identity["model"] = info["model_id"]
    else:
        if not config.limits():
            raise ConfigError("no limits configured and no --model: nothing to check", key="channels")
        channels = list(config.channels)
        empty = TelemetryBlock.from_arrays([0.0], np.full((1, len(channels)), np.nan), channels)
        detector = LimitCheck(config.limits()).fit(empty)
        identity["model"] = "limits only"
    return config, detector, identity


@fleet_app.command("server")
def server(
    servers: int = typer.Option(3, help="servers: 1, or 3 for a JetStream cluster"),
    folder: Path | None = typer.Option(None, help="where the servers keep their data (default: a temporary folder)"),
) -> None:
    """Run NATS with JetStream on this machine (127.0.0.1) until Ctrl-C: for trying the fleet out."""
    from vigil.fleet.cluster import LocalCluster

    cluster = LocalCluster(servers, folder=folder).start()
    try:
        leader = cluster.wait_ready()
        typer.echo(f"NATS JetStream ({servers} server{'s' if servers > 1 else ''}, leader {leader}): "
                   f"--nats {','.join(cluster.urls)}")  # fmt: skip
        stop = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # the servers started before keep the default mask
        signal.sigwait(stop)
    finally:
        cluster.stop()


@fleet_app.command("generate")
def generate(
    out: Path = typer.Option(..., help="folder for config.toml and one SAT-NN.csv per satellite"),
    spacecraft: int = typer.Option(8, min=1, max=1000),
    channels: int = typer.Option(50, min=1, max=100_000),
    duration: int = typer.Option(600, min=30, help="seconds at 1 Hz"),
    seed: int = typer.Option(0),
    degrade: str | None = typer.Option(None, help="SAT:CHANNEL drifting from its siblings inside its limits"),
) -> None:
    """Write a generated constellation (identical satellites, injected anomalies) to publish."""
    from vigil.fleet.constellation import Constellation

    deg = tuple(degrade.split(":", 1)) if degrade else None
    c = Constellation(spacecraft, channels, duration, seed=seed, degrade=deg)
    paths = c.write(out)
    (out / "truth.json").write_text(json.dumps(c.truth, indent=1))
    typer.echo(f"{len(paths)} satellites x {channels} channels x {duration} s in {out} (config.toml, truth.json)")


@fleet_app.command("publish")
def publish(
    nats: str = typer.Option(..., help=NATS_HELP),
    spacecraft: str = typer.Option(..., help="spacecraft name (letters, digits, - and _)"),
    source: str = typer.Option(..., help="file:PATH, stdin, tcp://HOST:PORT, udp://HOST:PORT, udp+ccsds://..."),
    speed: str = typer.Option("max", help="file replay speed: max, 1, 10, ..."),
) -> None:
    """Publish a source's telemetry for one spacecraft into the fleet's stream."""
    _need_nats()
    from vigil.fleet.protocol import check_spacecraft
    from vigil.fleet.publish import publish_source
    from vigil.ingest.records import open_source
    from vigil.monitor.runner import is_replay

    try:
        check_spacecraft(spacecraft)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--spacecraft") from None
    rate = None if speed.lower() in ("max", "inf", "0") else float(speed.lower().rstrip("x"))
    src = open_source(source, speed=rate)
    counts = asyncio.run(publish_source(_urls(nats), spacecraft, src, lambda m: typer.echo(m, err=True),
                                        live=not is_replay(src)))  # fmt: skip
    resent = (f", {counts['resent']} sent again after a lost acknowledgement ({counts['duplicate_after_resend']} "
              "of them already stored)") if counts["resent"] else ""  # fmt: skip
    typer.echo(f"{spacecraft}: {counts['stored']} messages stored, {counts['duplicate']} duplicates dropped, "
               f"{counts['samples']} samples{resent}")  # fmt: skip


@fleet_app.command("worker")
def worker(
    nats: str = typer.Option(..., help=NATS_HELP),
    config: Path = typer.Option(..., help="the constellation's channel configuration (TOML)"),
    model: Path | None = typer.Option(None, help="a saved model (vigil monitor --fit writes <store>.model)"),
    name: str | None = typer.Option(None, help="worker name (default: host-pid)"),
    lease_s: float = typer.Option(10.0, min=0.5, help="lease of a spacecraft: renewed every lease/4"),
    batch: int = typer.Option(100, min=1, max=10_000, help="messages applied per checkpoint"),
    replicas: int = typer.Option(3, min=1, max=5, help="stream and bucket replicas (1 on a single server)"),
    checkpoint_every_s: float = typer.Option(0.0, min=0.0, help="checkpoint at most this often (0: every batch)"),
    commit_log: Path | None = typer.Option(None, help="append each checkpoint written (for tests)"),
) -> None:
    """Own spacecraft (leases), apply their telemetry and commands, checkpoint, publish alarms."""
    _need_nats()
    import os

    from vigil.fleet.worker import Worker, WorkerOptions

    cfg, detector, identity = load_model_for(config, model)
    opts = WorkerOptions(lease_s=lease_s, batch=batch, replicas=replicas, commit_log=commit_log,
        checkpoint_every_s=checkpoint_every_s,
                         crash=os.environ.get("VIGIL_FLEET_CRASH"))  # fmt: skip
    w = Worker(_urls(nats), cfg, detector, identity, name=name, options=opts, log=lambda m: typer.echo(m, err=True))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await w.run(stop)

    asyncio.run(main())


@fleet_app.command("status")
def status(nats: str = typer.Option(..., help=NATS_HELP)) -> None:
    """Spacecraft, their owners and how far each got."""
    _need_nats()
    from vigil.fleet.bus import Layout, Retry, connect

    async def main() -> None:
        say = lambda m: typer.echo(m, err=True)  # noqa: E731
        nc = await connect(_urls(nats), "vigil-status", say, retry=False)
        layout = await Layout.ensure(nc.jetstream(timeout=5), replicas=3, retry=Retry(say))
        keys = await layout.retry("status keys", _keys, layout.fleet)
        for key in sorted(k for k in keys if k.startswith("status.")):
            s = json.loads((await layout.retry(key, layout.fleet.get, key)).value)
            t = s["totals"]
            typer.echo(f"{key[7:]:<16} owner {s['owner']:<24} seq {s['applied_seq']:>8} scored {t['scored']:>10} "
                       f"bad messages {s['bad_messages']}")  # fmt: skip
        await nc.close()

    asyncio.run(main())


async def _keys(kv) -> list[str]:
    from nats.js.errors import NoKeysError

    try:
        return await kv.keys()
    except NoKeysError:
        return []


def serve_fleet(nats: str, host: str, port: int, token_file: Path | None, announce) -> None:
    """``vigil serve --nats URL``: the fleet console (see :mod:`vigil.fleet.console`)."""
    _need_nats()
    from vigil.fleet.console import create_fleet_app
    from vigil.serve.app import loopback_hosts
    from vigil.serve.auth import resolve_token
    from vigil.serve.runner import serve_app

    token, where = resolve_token(token_file)
    app = create_fleet_app(
        _urls(nats), token, allowed_hosts=loopback_hosts(host), log=lambda m: typer.echo(m, err=True)
    )
    announce(host, port, token, where)
    serve_app(app, host, port)


@fleet_app.command("check")
def check(
    data: Path = typer.Option(..., help="folder of one wide CSV per spacecraft (SAT-00.csv ...), one time grid"),
    period_s: float = typer.Option(600.0, min=1.0, help="orbit period: each spacecraft is compared one orbit apart"),
    window_s: float = typer.Option(600.0, min=1.0, help="window the siblings are compared over"),
    z_max: float = typer.Option(6.0, min=1.0, help="robust deviations from the siblings that count as departing"),
) -> None:
    """Compare each channel with the same channel on the sibling spacecraft (label-free)."""
    import numpy as np

    from vigil.fleet.check import FleetCheck
    from vigil.ingest.tabular import read_table

    blocks = {p.stem: read_table(p, strict=False)[0] for p in sorted(data.glob("*.csv"))}
    if len(blocks) < 3:
        raise typer.BadParameter(
            f"{data} holds {len(blocks)} spacecraft CSVs; the check needs siblings", param_hint="--data"
        )
    channels = sorted(set.intersection(*(set(b.channels) for b in blocks.values())))
    first = next(iter(blocks.values()))
    fleet = {}
    for sc, b in blocks.items():
        if b.n_samples != first.n_samples or not np.array_equal(b.time, first.time):
            raise typer.BadParameter(f"{sc}.csv is not on the same time grid as {next(iter(blocks))}.csv")
        fleet[sc] = b.values[:, [b.channels.index(c) for c in channels]]
    findings = FleetCheck(period_s=period_s, window_s=window_s, z_max=z_max).run(first.time, fleet, channels)
    for f in findings:
        typer.echo(f.explain())
    typer.echo(f"{len(findings)} channel(s) departing from their siblings among {len(fleet)} spacecraft x "
               f"{len(channels)} channels")  # fmt: skip
