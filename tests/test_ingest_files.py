"""Telemanom, CSV and Parquet loaders: good files load, bad ones say where."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vigil.errors import DataError
from vigil.ingest.tabular import read_table
from vigil.ingest.telemanom import load_telemanom
from vigil.model import TelemetryBlock


def write_layout(root, channels, labels):
    (root / "train").mkdir()
    (root / "test").mkdir()
    rng = np.random.default_rng(0)
    for name, width in channels.items():
        np.save(root / "train" / f"{name}.npy", rng.random((50, width)))
        np.save(root / "test" / f"{name}.npy", rng.random((80, width)))
    lines = ["chan_id,spacecraft,anomaly_sequences,class,num_values"]
    lines += [f'{c},{sc},"{seq}",[point],80' for c, sc, seq in labels]
    (root / "labeled_anomalies.csv").write_text("\n".join(lines) + "\n")


def test_telemanom_duplicate_rows_and_unlabelled_channel(tmp_path):
    write_layout(
        tmp_path,
        {"P-2": 25, "T-10": 55, "A-1": 25},
        [("P-2", "SMAP", "[[10, 30]]"), ("P-2", "SMAP", "[[5, 20]]"), ("A-1", "SMAP", "[[40, 45], [60, 70]]")],
    )
    ds = load_telemanom(tmp_path)
    assert [c.chan_id for c in ds.channels] == ["A-1", "P-2", "T-10"]
    assert len(ds.label_rows) == 3
    p2 = ds.channel("P-2")
    assert p2.anomalies == [(5, 30)]  # union of the two rows
    t10 = ds.channel("T-10")
    assert t10.anomalies == [] and t10.spacecraft == "MSL"
    assert t10.test.commands.shape == (80, 1, 54)
    assert any("T-10" in n for n in ds.notes) and any("P-2" in n for n in ds.notes)


def test_telemanom_nan_names_file_channel_row(tmp_path):
    write_layout(tmp_path, {"A-1": 25}, [("A-1", "SMAP", "[[1, 2]]")])
    arr = np.load(tmp_path / "test" / "A-1.npy")
    arr[17, 0] = np.nan
    np.save(tmp_path / "test" / "A-1.npy", arr)
    with pytest.raises(DataError, match=r"A-1\.npy: channel A-1: row 17: non-finite"):
        load_telemanom(tmp_path)


def test_telemanom_wrong_shape_and_label_beyond_data(tmp_path):
    write_layout(tmp_path, {"A-1": 25}, [("A-1", "SMAP", "[[70, 90]]")])
    with pytest.raises(DataError, match="beyond the 80 test samples"):
        load_telemanom(tmp_path)
    np.save(tmp_path / "test" / "A-1.npy", np.zeros(80))
    with pytest.raises(DataError, match="2-D array"):
        load_telemanom(tmp_path)


def test_long_csv_pivots_and_counts_bad_records(tmp_path):
    p = tmp_path / "long.csv"
    p.write_text("time,channel,value\n0,a,1\n0,b,2\n1,a,nan\n1,a,5\n2,b,inf\n")
    with pytest.raises(DataError, match=r"long\.csv: channel a: row 4: missing value"):
        read_table(p, strict=True)
    block, report = read_table(p)  # the default: read, count, report
    assert block.channels == ("a", "b")
    assert block.time.tolist() == [0.0, 1.0, 2.0]
    # (1, a) appears twice: the first (NaN) is kept, the second counted as a duplicate.
    assert np.isnan(block.values[1, 0]) and np.isnan(block.values[2, 1])
    assert report.non_finite == {"a": 1, "b": 1}
    assert report.duplicates == {"a": 1}
    assert not report.clean


def test_long_csv_out_of_order_sorted_when_lenient(tmp_path):
    p = tmp_path / "ooo.csv"
    p.write_text("time,channel,value\n2,a,3\n1,a,2\n")
    with pytest.raises(DataError, match="row 3: time 1.0 is earlier"):
        read_table(p, strict=True)
    block, report = read_table(p)
    assert block.values[:, 0].tolist() == [2.0, 3.0]
    assert report.out_of_order == 1


def test_wide_parquet_with_timestamps(tmp_path):
    p = tmp_path / "wide.parquet"
    times = pa.array(np.array(["2003-02-01T13:44:09", "2003-02-01T13:44:10"], dtype="datetime64[ns]"))
    pq.write_table(pa.table({"time": times, "V1": [1.0, 2.0], "V2": [3, 4]}), p)
    block, report = read_table(p)
    assert block.channels == ("V1", "V2")
    assert block.time[1] - block.time[0] == pytest.approx(1.0)
    assert block.time[0] == pytest.approx(1044107049.0)
    assert report.clean


def test_wide_csv_text_value_names_channel_and_row(tmp_path):
    p = tmp_path / "wide.csv"
    p.write_text("t,V1,V2\n0,1,2\n1,3,oops\n")
    with pytest.raises(DataError, match=r"channel V2: row 3: value 'oops' is not a number"):
        read_table(p)  # a text value is refused even when lenient: it says where


def test_wide_duplicate_time_read_by_default_and_refused_when_strict(tmp_path):
    p = tmp_path / "dup.csv"
    p.write_text("t,V1,V2\n0,1,5\n1,2,6\n1,3,7\n2,4,8\n")  # t=1 repeated (a daylight-saving repeat, say)
    with pytest.raises(DataError, match="row 4: duplicate time"):
        read_table(p, strict=True)
    block, report = read_table(p)
    assert block.time.tolist() == [0.0, 1.0, 2.0]
    assert block.values.tolist() == [[1.0, 5.0], [2.0, 6.0], [4.0, 8.0]]  # the first of the repeats kept
    assert report.duplicates == {"V1": 1, "V2": 1} and not report.clean
    assert "2 duplicate records (the first kept, the rest dropped) (V1: 1, V2: 1)" in "\n".join(report.lines())


@pytest.mark.parametrize("name", ["time", "Timestamp", "t", "datetime", "DATE", "epoch", "utc", "met", "time_s"])
def test_time_column_recognised_by_name_wherever_it_is(tmp_path, name):
    p = tmp_path / "w.csv"
    p.write_text(f"V1,{name},V2\n1,2026-11-24T00:00:00,3\n4,2026-11-24T00:00:01,6\n")
    block, report = read_table(p)
    assert block.channels == ("V1", "V2") and report.time_column == name and not report.notes
    assert block.time.tolist() == [1795478400.0, 1795478401.0]
    long = tmp_path / "l.csv"
    long.write_text(f"{name},parameter,value\n0,T1,1\n1,T1,2\n")
    block, report = read_table(long)
    assert block.channels == ("T1",) and report.time_column == name


def test_unrecognised_time_column_is_named_in_the_report_and_errors(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text("when,V1\n0,1\n1,2\n")
    block, report = read_table(p)
    assert block.channels == ("V1",)
    assert "the first column, 'when', was taken as time" in "\n".join(report.lines())
    bad = tmp_path / "b.csv"
    bad.write_text("label,V1\nfoo,1\nbar,2\n")
    with pytest.raises(DataError, match=r"b\.csv: row 2: time column 'label': 'foo' is not a time"):
        read_table(bad, strict=True)
    block, report = read_table(bad)  # lenient: the rows without a time are dropped, counted, reported
    assert block.n_samples == 0 and report.no_time == 2


def test_rows_without_a_time_are_counted_not_silently_dropped(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text("time,V1\n0,1\n,2\n2,3\n")
    block, report = read_table(p)
    assert block.time.tolist() == [0.0, 2.0] and report.no_time == 1 and not report.clean
    assert "1 rows without a readable time in 'time' (dropped)" in "\n".join(report.lines())


def test_empty_and_unknown_files(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("time,channel,value\n")
    with pytest.raises(DataError, match="no rows"):
        read_table(p)
    q = tmp_path / "x.xlsx"
    q.write_text("")
    with pytest.raises(DataError, match="unknown file type"):
        read_table(q)


def test_block_rejects_ragged_and_unsorted():
    with pytest.raises(DataError, match="3 timestamps for 2 rows"):
        TelemetryBlock.from_arrays([0, 1, 2], [[1.0], [2.0]], ["a"])
    with pytest.raises(DataError, match="row 2: out-of-order"):
        TelemetryBlock.from_arrays([0, 2, 1], [[1.0], [2.0], [3.0]], ["a"])
    with pytest.raises(DataError, match="duplicate channel"):
        TelemetryBlock.from_arrays([0], [[1.0, 2.0]], ["a", "a"])
    with pytest.raises(DataError, match="commands must be"):
        TelemetryBlock.from_arrays([0], [[1.0]], ["a"], commands=np.zeros((1, 2, 3)))
