"""Bulk record parsing gives exactly the per-line parser's verdict on every line, and the monitor's
bulk input (feed_columns) counts exactly what feed_records counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.config import MonitorConfig
from vigil.detect.limits import LimitCheck
from vigil.ingest.bulk import RecordBatch, parse_block
from vigil.ingest.records import BadRecord, FileSource, Record, parse_line
from vigil.model import TelemetryBlock
from vigil.monitor import Monitor

FIELDS_T = ["1", "2.5", " 3 ", "-1e3", "nan", "inf", "1e999", "2026-11-24T00:00:01", "2026-11-24T00:00:01+01:00",
            "x", "", "1_0", "+4", ".5", "5.", "0x10", '{"time": 1']  # fmt: skip
FIELDS_C = ["a", "b", " c ", "", "T-1", "é", "#x", '"q"']
FIELDS_V = ["1", "2.5", "", "nan", "inf", "-inf", "hot", " 7 ", "1e999", "1_0", "NaN", "+.5e-3", "null", "  "]
LINE = st.one_of(
    st.builds(lambda t, c, v: f"{t},{c},{v}", *(st.sampled_from(f) for f in (FIELDS_T, FIELDS_C, FIELDS_V))),
    st.sampled_from(
        [
            "",
            "# comment",
            "time,channel,value",
            "timestamp,parameter,value",
            '{"time": 4, "channel": "j", "value": 3}',
            '{"time": 4}',
            "1,a",
            "1,a,2,3",
            "   ",
            "junk",
        ]
    ),  # fmt: skip
    st.text(alphabet="0123456789.,ae-x ", max_size=12),
)


def per_line(text: str, first: int) -> list[tuple[int, object]]:
    out = []
    for k, line in enumerate(text.splitlines(), start=first):
        item = parse_line(line, "s", k)
        if item is not None:
            out.append((k, item))
    return out


def same_record(a: Record, b: Record) -> bool:
    both_nan = math.isnan(a.value) and math.isnan(b.value)
    return a.time == b.time and a.channel == b.channel and (a.value == b.value or both_nan)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(LINE, max_size=40), newline=st.sampled_from(["\n", "\r\n"]), end=st.booleans())
def test_bulk_parse_equals_the_per_line_parser(lines, newline, end):
    text = newline.join(lines) + (newline if end else "")
    want = per_line(text, 7)
    batch = parse_block(text.encode(), "s", 7)
    records = [x for x in batch if isinstance(x, Record)]
    want_records = [(k, x) for k, x in want if isinstance(x, Record)]
    assert batch.lines.tolist() == [k for k, _ in want_records]
    assert all(same_record(a, b) for a, (_, b) in zip(records, want_records, strict=True))
    assert [str(b) for b in batch.bad] == [str(x) for _, x in want if isinstance(x, BadRecord)]


def test_every_bad_line_of_a_bulk_parsed_file_is_counted_by_line(tmp_path):
    lines = [f"{t},a,{t}" for t in range(10_000)]
    lines[17], lines[5000], lines[9998] = "17,a,hot", "garbage", "9998,,1"
    path = tmp_path / "r.csv"
    path.write_text("time,channel,value\n" + "\n".join(lines) + "\n")
    batches = list(FileSource(path, block_bytes=4096).batches())  # many blocks: line numbers carry over
    assert all(isinstance(b, RecordBatch) for b in batches)
    assert sum(b.size for b in batches) == 9_997
    assert [(b.line, b.reason) for x in batches for b in x.bad] == [
        (19, "value 'hot' is not a number"),
        (5002, "expected 3 comma-separated fields, got 1"),
        (10000, "empty channel name"),
    ]


def test_invalid_utf8_is_replaced_as_the_line_reader_did():
    batch = parse_block(b"0,a\xff,1\n1,b,2\n")
    assert batch.channels() == ["a\ufffd", "b"]


CHANNELS = ("a", "b", "c")


def monitor() -> Monitor:
    cfg = MonitorConfig.from_dict(
        {"channels": {c: {"subsystem": "s", "limits": {"warning": [-5, 5]}} for c in CHANNELS}}
    )
    empty = TelemetryBlock.from_arrays([0.0], [[math.nan] * 3], CHANNELS)
    return Monitor(cfg, LimitCheck(cfg.limits()).fit(empty), _Quiet())


class _Quiet:
    def update(self, block, scores):
        return []

    def report_stale(self, *a):
        return None

    def report_fresh(self, *a):
        return None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 12).map(float),
            st.sampled_from([*CHANNELS, "zz"]),
            st.sampled_from([0.0, 1.0, 9.0, math.nan, math.inf]),
        ),
        max_size=60,
    ),
    st.integers(1, 7),
)
def test_feed_columns_counts_as_feed_records(records, chunk):
    by_object, by_column = monitor(), monitor()
    by_object.feed_records([Record(*r) for r in records])
    by_object.flush()
    for a in range(0, len(records), chunk):
        part = records[a : a + chunk]
        t = np.array([r[0] for r in part], dtype=float)
        by_column.feed_columns(t, np.array([r[1] for r in part], dtype=object), np.array([r[2] for r in part]))
    by_column.flush()
    x, y = by_object.counters(), by_column.counters()
    assert x["channels"] == y["channels"] and x["unknown"] == y["unknown"] and x["rows"] == y["rows"]


def test_feed_columns_with_codes_and_a_bad_time():
    m = monitor()
    m.feed_columns([0.0, math.nan, 1.0, 1.0], [0, 1, 2, 1], [1.0, 2.0, 3.0, 4.0], names=["a", "b", "zz"])
    m.flush()
    c = m.counters()
    assert c["totals"]["scored"] == 2 and c["channels"]["b"]["malformed"] == 1 and c["unknown"] == {"zz": 1}
    with pytest.raises(ValueError, match="differ in length"):
        m.feed_columns([0.0], [0, 1], [1.0], names=["a", "b"])


CELLS = ["1", "2.5", "", " 3 ", "nan", "inf", "hot", "1e999", "1_0", "null", "-0"]
WIDE_LINE = st.one_of(
    st.builds(lambda t, cells: ",".join([t, *cells]), st.sampled_from(FIELDS_T), st.lists(st.sampled_from(CELLS), min_size=3, max_size=3)),
    st.sampled_from(["", "# comment", "1,2", "1,2,3,4,5", ",,,", "junk"]),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(WIDE_LINE, max_size=30), newline=st.sampled_from(["\n", "\r\n"]), end=st.booleans())
def test_bulk_wide_parse_equals_the_per_line_wide_parser(lines, newline, end):
    from vigil.ingest.bulk import parse_wide_block
    from vigil.ingest.records import _WideParser

    text = newline.join(lines) + (newline if end else "")
    parse = _WideParser("time,T1,V1,W1")
    want = [(k, x) for k, line in enumerate(text.splitlines(), start=2) for x in parse(line, "s", k)]
    batch = parse_wide_block(text.encode(), ["T1", "V1", "W1"], "s", 2)
    records = [x for x in batch if isinstance(x, Record)]
    want_records = [(k, x) for k, x in want if isinstance(x, Record)]
    assert batch.lines.tolist() == [k for k, _ in want_records]
    assert all(same_record(a, b) for a, (_, b) in zip(records, want_records, strict=True))
    assert [str(b) for b in batch.bad] == [str(x) for _, x in want if isinstance(x, BadRecord)]
