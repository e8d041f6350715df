"""Packet generator for DEMOSAT, the example mission of ``demosat.xtce.xml``.

Three packets, big-endian, each with a 48-bit secondary-header time (seconds and 1/65536 s):

=====  ==========  =====  ===================================================
APID   container   rate   fields after the time
=====  ==========  =====  ===================================================
100    HK_POWER    10 Hz  BATT_V u16 (mV), BATT_I i16 (10 mA), BUS_T u16, PWR_MODE u8
101    HK_THERMAL  1 Hz   HTR_STATE u8, PANEL_T float32 (degC)
110    ADCS        10 Hz  WHEEL_RPM_1..3 i16 (0.25 rpm)
=====  ==========  =====  ===================================================

Values follow a 90-minute orbit plus noise. :meth:`DemoSpacecraft.packets` can inject a known
list of anomalies (:data:`ANOMALIES`), so tests and the demo know what must be found. The
encoding here is written independently of the decoders (numpy structured arrays, not the
libraries under test), so decoding it checks them.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from importlib import resources

import numpy as np

ORBIT_S = 5400.0
SUBSEC = 65536.0


def xtce_path() -> str:
    """Path of the DEMOSAT XTCE file shipped with the package."""
    return str(resources.files("vigil.ingest.ccsds.demo") / "demosat.xtce.xml")


@dataclass(frozen=True)
class Injected:
    """An anomaly put into the generated telemetry: channel, window (s after start), expected severity."""

    channel: str
    start_s: float
    end_s: float
    severity: str
    what: str


#: The anomalies :meth:`DemoSpacecraft.packets` injects when asked (times after the start).
ANOMALIES: tuple[Injected, ...] = (
    Injected("BUS_T", 600.0, 900.0, "distress", "power bus overheats, ramping to 52 degC"),
    Injected("PWR_MODE", 1200.0, 1220.0, "critical", "power subsystem reports FAULT"),
    Injected("PANEL_T", 1500.0, 1700.0, "warning", "heater on but panel cold (-15 degC): context alarm"),
    Injected("BATT_V", 1800.0, 1805.0, "warning", "battery voltage sags to 25 V"),
    Injected("WHEEL_RPM_2", 2000.0, 2010.0, "warning", "reaction wheel 2 overspeed, 6500 rpm"),
)

_HEADER = [("w0", ">u2"), ("w1", ">u2"), ("len", ">u2"), ("sec", ">u4"), ("sub", ">u2")]
DTYPES = {
    100: np.dtype(_HEADER + [("BATT_V", ">u2"), ("BATT_I", ">i2"), ("BUS_T", ">u2"), ("PWR_MODE", "u1")]),
    101: np.dtype(_HEADER + [("HTR_STATE", "u1"), ("PANEL_T", ">f4")]),
    110: np.dtype(_HEADER + [("WHEEL_RPM_1", ">i2"), ("WHEEL_RPM_2", ">i2"), ("WHEEL_RPM_3", ">i2")]),
}
RATES_HZ = {100: 10.0, 101: 1.0, 110: 10.0}
PHASE_S = {100: 0.0, 101: 0.03, 110: 0.05}


class DemoSpacecraft:
    """Generates DEMOSAT packet streams.

    Args:
        seed: random seed of the noise.
        start_time: spacecraft time of the first packet (Unix seconds).
    """

    def __init__(self, seed: int = 0, start_time: float = 1_795_000_000.0) -> None:
        self.seed = seed
        self.start_time = float(start_time)

    def packets(self, duration_s: float, anomalies: bool = True, t0: float | None = None) -> bytes:
        """All packets of ``duration_s`` seconds from ``t0`` (default the start), in time order."""
        t0 = self.start_time if t0 is None else float(t0)
        rng = np.random.default_rng([self.seed, int(t0 * 1000) % (2**32)])
        rows = []
        for apid in DTYPES:
            n = int(np.floor(duration_s * RATES_HZ[apid]))
            t = t0 + PHASE_S[apid] + np.arange(n) / RATES_HZ[apid]
            # Sequence counts continue across calls as if the spacecraft had sent since start_time.
            first = int(round((t0 - self.start_time) * RATES_HZ[apid]))
            rows.append((t, self._encode(apid, t, first, rng, anomalies)))
        return interleave(rows)

    def _encode(self, apid: int, t: np.ndarray, first_seq: int, rng, anomalies: bool) -> np.ndarray:
        rec = np.zeros(t.shape[0], dtype=DTYPES[apid])
        rec["w0"] = (1 << 11) | apid  # version 0, telemetry, secondary header present
        rec["w1"] = (3 << 14) | ((first_seq + np.arange(t.shape[0])) % 16384)
        rec["len"] = DTYPES[apid].itemsize - 7
        ticks = np.round(t * SUBSEC).astype(np.int64)
        rec["sec"] = ticks // 65536
        rec["sub"] = ticks % 65536
        values = self.values(apid, t, rng, anomalies)
        for name, v in values.items():
            rec[name] = v
        return rec

    def values(self, apid: int, t: np.ndarray, rng, anomalies: bool) -> dict[str, np.ndarray]:
        """Raw (encoded) field values of one APID at times ``t``."""
        phase = 2 * np.pi * (t - self.start_time) / ORBIT_S
        rel = t - self.start_time
        n = t.shape[0]

        def window(name: str) -> np.ndarray:
            hits = [a for a in ANOMALIES if a.channel == name] if anomalies else []
            mask = np.zeros(n, dtype=bool)
            for a in hits:
                mask |= (rel >= a.start_s) & (rel < a.end_s)
            return mask

        if apid == 100:
            volts = 30.0 + 1.0 * np.sin(phase) + rng.normal(0, 0.02, n)
            volts[window("BATT_V")] = 25.0
            amps = 2.0 + 3.0 * np.sin(phase) + rng.normal(0, 0.05, n)
            temp = 20.0 + 5.0 * np.sin(phase + 1.0) + rng.normal(0, 0.1, n)
            hot = window("BUS_T")
            temp[hot] = np.interp(rel[hot], [600.0, 900.0], [30.0, 52.0])
            mode = np.where(np.sin(phase / 3) > 0.8, 2, 1)
            mode[window("PWR_MODE")] = 3
            return {
                "BATT_V": np.round(volts / 0.001),
                "BATT_I": np.round(amps / 0.01),
                "BUS_T": _bus_t_raw(temp),
                "PWR_MODE": mode,
            }
        if apid == 101:
            panel = 15.0 + 20.0 * np.sin(phase) + rng.normal(0, 0.2, n)
            heater = (panel < 5.0).astype(np.uint8)
            failed = window("PANEL_T")
            panel[failed] = -15.0
            heater[failed] = 1
            return {"HTR_STATE": heater, "PANEL_T": panel}
        rpm = 2000.0 + 500.0 * np.sin(phase[:, None] + np.arange(3)) + rng.normal(0, 2.0, (n, 3))
        rpm[window("WHEEL_RPM_2"), 1] = 6500.0
        return {f"WHEEL_RPM_{k + 1}": np.round(rpm[:, k] / 0.25) for k in range(3)}

    def send_udp(
        self,
        host: str = "127.0.0.1",
        port: int = 10025,
        duration_s: float = 3600.0,
        anomalies: bool = True,
        speed: float = 1.0,
    ) -> int:
        """Send packets as UDP datagrams (one packet each), paced at ``speed`` times real time.

        Spacecraft time starts at the wall clock; anomalies happen at their offsets from there
        (at ``speed`` 10 the first one comes after a minute). Returns the number of packets sent.
        """
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        start = time.time()
        self.start_time = start
        wall0 = time.monotonic()
        sent = 0
        try:
            for second in range(int(duration_s)):
                for packet, t in split(self.packets(1.0, anomalies=anomalies, t0=start + second)):
                    delay = wall0 + (t - start) / speed - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    sock.sendto(packet, (host, port))
                    sent += 1
        finally:
            sock.close()
        return sent


def _bus_t_raw(temp: np.ndarray) -> np.ndarray:
    """Invert BUS_T's calibration ``-40 + 0.002 x + 1e-8 x^2`` (the positive root)."""
    a, b, c = 1e-8, 0.002, -40.0 - temp
    return np.round((-b + np.sqrt(b * b - 4 * a * c)) / (2 * a))


def interleave(rows: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    """Concatenate records of several APIDs into one byte stream ordered by packet time."""
    times = np.concatenate([t for t, _ in rows])
    sizes = np.concatenate([np.full(r.shape[0], r.dtype.itemsize) for _, r in rows])
    order = np.argsort(times, kind="stable")
    offsets = np.empty_like(sizes)
    offsets[order] = np.concatenate(([0], np.cumsum(sizes[order])[:-1]))
    out = np.empty(int(sizes.sum()), dtype=np.uint8)
    start = 0
    for _, rec in rows:
        k, size = rec.shape[0], rec.dtype.itemsize
        idx = offsets[start : start + k, None] + np.arange(size)
        out[idx] = rec.view(np.uint8).reshape(k, size)
        start += k
    return out.tobytes()


def split(data: bytes) -> list[tuple[bytes, float]]:
    """Well-formed generated stream -> (packet bytes, packet time) pairs, by the length fields."""
    out = []
    pos = 0
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos + 4 : pos + 6], "big") + 7
        t = int.from_bytes(data[pos + 6 : pos + 12], "big") / SUBSEC
        out.append((data[pos : pos + length], t))
        pos += length
    return out
