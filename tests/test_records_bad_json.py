"""JSON record lines that json or float() reject with exceptions other than JSONDecodeError."""

from vigil.ingest.records import BadRecord, parse_line

BIG = "1" + "0" * 400  # an integer beyond float range
HUGE = "1" + "0" * 5000  # over Python's integer-string digit limit
DEEP = '{"time": ' + "[" * 100_000 + "]" * 100_000 + ', "channel": "a", "value": 1}'


def test_out_of_range_json_numbers_are_bad_records_not_exceptions():
    for text, channel in [
        (f'{{"time": 1, "channel": "a", "value": {BIG}}}', "a"),
        (f'{{"time": {BIG}, "channel": "a", "value": 1}}', "a"),
        (f'{{"time": 1, "channel": "a", "value": {HUGE}}}', None),
        (DEEP, None),
    ]:
        item = parse_line(text, "x.jsonl", 3)
        assert isinstance(item, BadRecord), item
        assert item.line == 3 and item.channel == channel


def test_a_file_replay_reads_past_them(tmp_path):
    from vigil.ingest.records import FileSource

    path = tmp_path / "p.csv"
    path.write_text(f'0,a,1\n{{"time": 1, "channel": "a", "value": {BIG}}}\n2,a,3\n')
    items = [i for b in FileSource(path).batches() for i in b]
    assert sorted(type(i).__name__ for i in items) == ["BadRecord", "Record", "Record"]
