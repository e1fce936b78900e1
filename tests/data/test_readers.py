import json

import pytest

from lnemo.data import by_blank_line, by_file, by_line, read_jsonl, read_jsonl_records, read_text


def test_splitters():
    text = "a b\nc\n\n \n\nd\r\n\r\ne\n"
    assert by_file(text) == [text]
    assert by_line("a\n\nb\r\n") == ["a", "", "b"]
    assert by_blank_line(text) == ["a b\nc", "d", "e\n"]


def test_read_text(tmp_path):
    (tmp_path / "one.txt").write_text("first doc\nstill first\n\nsecond\n\n\n", encoding="utf-8")
    (tmp_path / "two.txt").write_text("  third é \n", encoding="utf-8")
    files = [tmp_path / "one.txt", str(tmp_path / "two.txt")]
    assert read_text(files) == ["first doc\nstill first", "second", "third é"]
    assert read_text(files, split=by_line) == ["first doc", "still first", "second", "third é"]
    assert read_text(files, split=by_file) == ["first doc\nstill first\n\nsecond", "third é"]
    assert read_text(tmp_path / "two.txt") == ["third é"]


def test_read_text_rejects_invalid_utf8(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"ok\xff")
    with pytest.raises(ValueError, match=r"bad.txt: not valid UTF-8 at byte 2"):
        read_text(tmp_path / "bad.txt")


def test_read_jsonl(tmp_path):
    lines = [json.dumps({"text": "a", "body": "x"}), "", json.dumps({"text": "", "body": "y"})]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    assert read_jsonl(tmp_path / "c.jsonl") == ["a", ""]
    assert read_jsonl([tmp_path / "c.jsonl"] * 2, field="body") == ["x", "y", "x", "y"]
    assert [n for n, _ in read_jsonl_records(tmp_path / "c.jsonl")] == [1, 3]


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ('{"body": "x"}', "text", r"c.jsonl:3: record has no field 'text' \(fields: \['body'\]\)"),
        ('{"text": 5}', "text", r"c.jsonl:3: field 'text' must be a string, got int"),
        ('{"text": "a"', "text", r"c.jsonl:3: invalid JSON"),
        ('["a"]', "text", r"c.jsonl:3: expected a JSON object, got list"),
    ],
)
def test_read_jsonl_errors_name_line_and_field(tmp_path, line, field, message):
    (tmp_path / "c.jsonl").write_text('{"text": "ok"}\n{"text": "ok"}\n' + line + "\n")
    with pytest.raises(ValueError, match=message):
        read_jsonl(tmp_path / "c.jsonl", field=field)
