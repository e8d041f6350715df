"""The UCR anomaly archive (KDD Cup 2021): one anomaly per series, scored by where the highest score lies.

Each file ``NNN_UCR_Anomaly_<name>_<trainEnd>_<begin>_<end>.txt`` holds one series (whitespace-
separated values). Its indices are 1-based: points ``1..trainEnd`` are nominal training data and the
single labelled anomaly spans ``begin..end``. Protocol: fit the detector on the training prefix,
score the rest as one stream, and predict the position of the highest score in the test part; the
prediction is correct when it lies within ``[begin - 100, end + 100]``. The labels only score.

>>> parse_name("025_UCR_Anomaly_DISTORTEDCIMIS44AirTemperature1_4000_5391_5392.txt")
('025', 'DISTORTEDCIMIS44AirTemperature1', 4000, 5391, 5392)
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vigil.detect.base import Detector
from vigil.detect.events import runs
from vigil.errors import DataError
from vigil.model import TelemetryBlock

#: Points either side of the labelled anomaly that still count as a hit (the archive's rule).
TOLERANCE = 100

_NAME = re.compile(r"^(\d+)_UCR_Anomaly_(.+)_(\d+)_(\d+)_(\d+)\.txt$")


@dataclass(frozen=True)
class SeriesResult:
    """One series: where the highest score fell (0-based index into the whole series) and whether it hit."""

    file: str
    n: int
    train_end: int
    begin: int
    end: int
    predicted: int
    peak_score: float
    check: str
    correct: bool
    alarms: int  # runs of flagged test samples (the detector's own hysteresis)
    alarm_at_anomaly: bool  # one of them overlaps [begin - 100, end + 100]
    alarm_fraction: float  # share of test samples flagged
    seconds: float


def parse_name(name: str) -> tuple[str, str, int, int, int]:
    """``(number, name, trainEnd, begin, end)`` from an archive file name (indices as written, 1-based)."""
    m = _NAME.match(name)
    if m is None:
        raise DataError("not an archive file name NNN_UCR_Anomaly_<name>_<trainEnd>_<begin>_<end>.txt", source=name)
    return m.group(1), m.group(2), int(m.group(3)), int(m.group(4)), int(m.group(5))


def read_series(path: Path) -> tuple[np.ndarray, int, int, int]:
    """The values and the 1-based ``trainEnd, begin, end`` of one file; :class:`DataError` saying why it cannot be used."""
    _, _, train_end, begin, end = parse_name(path.name)
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as err:
        raise DataError(f"not whitespace-separated numbers ({err})", source=str(path)) from None
    if not 1 <= train_end < values.size:
        raise DataError(f"trainEnd {train_end} outside the series of {values.size} points", source=str(path))
    if not train_end < begin <= end <= values.size:
        raise DataError(
            f"anomaly {begin}..{end} not inside the test part {train_end + 1}..{values.size}", source=str(path)
        )
    return values, train_end, begin, end


def top1(scores: np.ndarray) -> int:
    """Index of the highest finite score (the first on ties; 0 when none is finite).

    >>> top1(np.array([np.nan, 1.0, 3.0, 3.0, -np.inf]))
    2
    """
    s = np.where(np.isfinite(scores), scores, -np.inf)
    return int(np.argmax(s))


def judged_window(detector: Detector, check: str, channel: int = 0) -> int:
    """Samples judged by one score of ``check`` (ending at that sample): one period for the shape
    check, one sample for the pointwise checks."""
    shape = getattr(detector, "shape_", None)
    if check.endswith("shape") and shape is not None and shape.block_[channel] > 0:
        return int(shape.block_[channel] * shape.points)
    return 1


def run_series(path: Path, make_detector: Callable[[], Detector]) -> SeriesResult:
    """Fit on the training prefix, score the rest in one stream, check the top-1 position."""
    values, train_end, begin, end = read_series(path)
    started = time.perf_counter()
    block = TelemetryBlock.from_arrays(
        np.arange(values.size, dtype=np.float64), values[:, None], ["x"], source=path.name
    )
    detector = make_detector().fit(block.slice(0, train_end))
    scores = detector.score(block.slice(train_end, values.size))
    seconds = time.perf_counter() - started
    at = top1(scores.score[:, 0])
    check = scores.detector[int(scores.by[at, 0])]
    # A score judges the window that ends at its sample: the location is that window's middle.
    predicted = train_end + at - (judged_window(detector, check) - 1) // 2  # 0-based index into the series
    lo, hi = begin - 1 - TOLERANCE, end - 1 + TOLERANCE
    flagged = runs(scores.level[:, 0] > 0) + train_end
    at_anomaly = bool(((flagged[:, 0] <= hi) & (flagged[:, 1] >= lo)).any())
    return SeriesResult(
        path.name,
        values.size,
        train_end,
        begin,
        end,
        predicted,
        float(scores.score[at, 0]),
        check,
        bool(lo <= predicted <= hi),
        len(flagged),
        at_anomaly,
        float(np.mean(scores.level[:, 0] > 0)),
        seconds,
    )


def default_detector() -> Detector:
    from vigil.detect import build_detector

    return build_detector(None)


def run_benchmark(
    data: str | Path,
    out: str | Path | None = None,
    per_series: str | Path | None = None,
    make_detector: Callable[[], Detector] = default_detector,
    progress: bool = True,
    files: Iterable[Path] | None = None,
) -> dict:
    """Every ``*.txt`` of ``data``: top-1 accuracy, seconds (fit + score) and a message per unreadable file."""
    paths = sorted(files) if files is not None else sorted(Path(data).glob("*.txt"))
    results: list[SeriesResult] = []
    errors: dict[str, str] = {}
    for path in tqdm(paths, desc="series", unit="series", disable=not progress):
        try:
            results.append(run_series(path, make_detector))
        except (DataError, OSError, UnicodeDecodeError) as err:
            errors[path.name] = str(err)
    correct = sum(r.correct for r in results)
    report = {
        "series": len(results),
        "correct": correct,
        "top1_accuracy": round(correct / len(results), 4) if results else 0.0,
        "seconds": round(sum(r.seconds for r in results), 2),
        "alarm_at_anomaly": sum(r.alarm_at_anomaly for r in results),
        "alarms_per_series_mean": round(float(np.mean([r.alarms for r in results])), 2) if results else 0.0,
        "alarm_fraction_mean": round(float(np.mean([r.alarm_fraction for r in results])), 4) if results else 0.0,
        "errors": errors,
        "detector": type(make_detector()).__name__,
        "tolerance": TOLERANCE,
    }
    if out is not None:
        Path(out).write_text(json.dumps(report, indent=2) + "\n")
    if per_series is not None:
        write_per_series(per_series, results)
    return report


def write_per_series(path: str | Path, results: list[SeriesResult]) -> None:
    """One CSV row per scored series (indices: ``predicted`` 0-based, ``begin``/``end`` as in the file name)."""
    fields = list(SeriesResult.__dataclass_fields__)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for r in results:
            row = asdict(r)
            row["seconds"] = round(r.seconds, 4)
            row["alarm_fraction"] = round(r.alarm_fraction, 4)
            writer.writerow(row)


def summary(report: dict) -> str:
    """One line for the terminal."""
    return (
        f"{report['correct']}/{report['series']} series correct, top-1 accuracy {report['top1_accuracy']:.3f}, "
        f"{report['seconds']:.1f} s fit + score, {len(report['errors'])} unreadable; "
        f"an alarm at the anomaly in {report['alarm_at_anomaly']} series, "
        f"{report['alarms_per_series_mean']:.1f} alarms per series, {report['alarm_fraction_mean']:.1%} of samples in alarm"
    )
