"""Derive the compact STS-107 event table shipped in ``vigil/scenarios/data/sts107.json``.

Reads the reconstruction in ``../shared/scenarios/sts107`` (timeline and nominal entry profile) and
keeps only facts: times, kinds, real-time availability, confidence, timing uncertainty, sensor ids and
the names of the sources. Descriptions are our own one-line labels (below), not the sources' prose.

    python scripts/build_sts107_data.py [--shared ../shared/scenarios/sts107]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "vigil" / "scenarios" / "data" / "sts107.json"

#: Events kept: from the start of the generated window to the breakup seen from the ground.
WINDOW_S = (-300, 969)

#: Our own short label for every event in the window, keyed by seconds from entry interface.
LABELS: dict[int, str] = {
    0: "entry interface, 400,000 ft",
    270: "left wing front-spar strain above any previous entry (recorder only)",
    290: "left wing RCC panel 9 clevis temperature starts an unusual rise (recorder only)",
    298: "closed-loop entry guidance starts",
    323: "first planned bank to the right",
    381: "brief S-band telemetry dropouts begin (times approximate)",
    404: "start of the peak-heating period",
    420: "left wing leading-edge temperature spikes (recorder only)",
    425: "left wing front-spar temperature starts an off-nominal rise (recorder only)",
    457: "derived sideslip angle turns and stays negative (found after the flight)",
    488: "left main gear brake-line temperatures (three sensors) start an unusual rise",
    532: "derived rolling moment starts an off-nominal negative growth",
    557: "crosses the California coast",
    561: "four left-wing hydraulic return-line temperatures go off-scale low within seconds",
    577: "first debris shedding seen from the ground",
    581: "left main gear strut- and uplock-actuator temperatures rise 30-40 F in five minutes",
    591: "left mid-fuselage bondline temperature rises about four times faster than the right",
    611: "aileron trim starts a slow change; derived rolling-moment trend reverses",
    615: "MMACS first reports the four lost hydraulic temperatures to the Flight Director",
    616: "bright flash seen from the ground over Nevada",
    681: "a fifth left wheel-well temperature rises sharply",
    683: "crosses from Nevada into Utah",
    741: "first roll reversal starts",
    756: "crosses into New Mexico",
    764: "left main gear strut-actuator temperature rate jumps from 1.7 to 12.9 F/min",
    766: "first roll reversal complete",
    790: "left outboard tire pressure 1 starts an off-nominal trend",
    795: "left outboard tire pressure 2 starts an off-nominal trend",
    796: "Flight Director asks GNC whether control is nominal",
    799: "left lower wing skin temperature goes off-scale low",
    806: "GNC reports control stable",
    831: "aileron trim grows to the right; three more left-side temperatures lost",
    851: "crosses into Texas; westernmost debris shed about now",
    871: "onboard fault message: left main gear tire pressure",
    891: "left main gear tire pressures and wheel temperatures go off-scale low",
    897: "one left main gear position sensor reads down-and-locked",
    906: "MMACS reports both left tire pressures lost",
    916: "CAPCOM calls the crew about the tire messages; MMACS: off-scale low",
    921: "right yaw jets fire to counter left drag",
    923: "last valid telemetry frame (loss of signal)",
    928: "loss of control (after loss of signal)",
    953: "end of the corrupted post-LOS data",
    969: "breakup seen from the ground",
}


def source_names(text: str) -> list[str]:
    """Names of the cited sources: the CAIB report and crew-survival report by title, web sources by host."""
    names = []
    if "CAIB" in text:
        names.append("CAIB Report Vol. I ch. 2")
    if "Crew Survival" in text:
        names.append("NASA Columbia Crew Survival Investigation Report")
    for host in re.findall(r"https?://(?:www\.)?([^/\s]+)", text):
        if host not in names:
            names.append(host)
    return names


def build(shared: Path) -> dict:
    timeline = json.loads((shared / "sts107_timeline.json").read_text())
    profile = json.loads((shared / "nominal_profile.json").read_text())
    events = []
    for e in timeline:
        t = int(e["t_from_ei_s"])
        if not WINDOW_S[0] <= t <= WINDOW_S[1]:
            continue
        if t not in LABELS:
            raise SystemExit(f"{shared}/sts107_timeline.json: event at EI{t:+d} s has no label in LABELS")
        events.append(
            {
                "t_from_ei_s": t,
                "t_est": e["t_est"],
                "uncertainty_s": e["timing_uncertainty_s"],
                "kind": e["kind"],
                "realtime": bool(e["available_in_realtime_at_MCC"]),
                "confidence": e["confidence"],
                "msid": e["msid"],
                "label": LABELS[t],
                "sources": source_names(e["source"]),
            }
        )
    trajectory = [
        {"t_from_ei_s": p["t_from_ei_s"], "alt_ft": p["alt_ft"], "mach": p["mach"]}
        for p in profile["trajectory_points"]
    ]
    return {
        "about": "Derived by scripts/build_sts107_data.py from a public-source reconstruction of the "
        "STS-107 entry; not flight data.",
        "ei_utc": "2003-02-01T13:44:09Z",
        "est_offset_h": -5,
        "events": events,
        "trajectory": trajectory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "scenarios" / "sts107")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    data = build(args.shared)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {args.out} ({len(data['events'])} events, {len(data['trajectory'])} trajectory points)")


if __name__ == "__main__":
    main()
