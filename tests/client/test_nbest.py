"""N-best lists: reading Moses and plain files, writing them back byte for byte with one
feature added, re-ranking within groups; checked without a server."""

from __future__ import annotations

import io

import pytest

from rnnlm.client.nbest import (
    NBestFormatError,
    check_feature_name,
    format_number,
    parse_nbest,
    read_nbest,
    rerank,
    rescored,
    write_nbest,
)

# Odd on purpose: UTF-8, irregular spacing, an empty hypothesis, old "name:" features, a
# sparse feature, extra fields after the total, CRLF endings, no final newline.
MOSES = (
    "0 ||| das Haus ist klein ||| LM0= -12.3 TM0= -1 -2.5 d: 0 ||| -15.8\r\n"
    "0 |||  ||| LM0= -40 TM0= -9 -9 d: 0 ||| -58\r\n"
    "0 ||| ça coûte 5 € ||| LM0= -9.75  TM0=  -3 -1  ||| -13.75 ||| a=1 ||| extra  \r\n"
    "1 ||| 漢字 テキスト |||sparse_x=1 LM0= -3|||-2\r\n"
    "1 ||| the   house |||  LM0= -7 ||| -7.5"
)


def _values(entries, start=-1.0):
    return [start - i for i in range(len(entries))]


def test_moses_round_trip_changes_only_the_added_feature():
    entries = parse_nbest(MOSES)
    items = [rescored(e, "RNNLM0", v, None) for e, v in zip(entries, _values(entries))]
    written = "".join(r.line() for r in items)
    for r in items:
        assert f" RNNLM0= {format_number(r.value)}" in r.line()
    restored = written
    for r in items:
        restored = restored.replace(f" RNNLM0= {format_number(r.value)}", "", 1)
    assert restored.replace("-3 |||-2", "-3|||-2") == MOSES  # the space kept before a bare |||
    assert written.count("\r\n") == 4 and not written.endswith("\n")


def test_moses_fields_are_parsed_liberally():
    first, empty, euro, cjk, spaced = parse_nbest(MOSES)
    assert (first.id, first.hypothesis, first.total) == ("0", "das Haus ist klein", -15.8)
    assert first.features == (("LM0", (-12.3,)), ("TM0", (-1.0, -2.5)), ("d", (0.0,)))
    assert empty.hypothesis == "" and empty.line_no == 2  # kept in place, scored as ""
    assert euro.hypothesis == "ça coûte 5 €" and euro.total == -13.75
    assert cjk.feature("sparse_x") == (1.0,) and cjk.feature("LM0") == (-3.0,)
    assert spaced.hypothesis == "the   house" and spaced.ending == ""
    assert [e.group for e in (first, empty, euro, cjk, spaced)] == [0, 0, 0, 1, 1]


def test_the_line_after_the_feature_keeps_extra_fields_and_endings():
    euro = parse_nbest(MOSES)[2]
    line = rescored(euro, "RNNLM0", -23.456, None).line()
    assert line == (
        "0 ||| ça coûte 5 € ||| LM0= -9.75  TM0=  -3 -1 RNNLM0= -23.456  ||| -13.75 "
        "||| a=1 ||| extra  \r\n"
    )


def test_update_total_rewrites_only_the_total():
    first = parse_nbest(MOSES)[0]
    item = rescored(first, "RNNLM0", -10.0, 0.5)
    assert item.total == pytest.approx(-20.8)
    assert item.line(update_total=True) == (
        "0 ||| das Haus ist klein ||| LM0= -12.3 TM0= -1 -2.5 d: 0 RNNLM0= -10 ||| -20.8\r\n"
    )
    assert item.line().endswith("||| -15.8\r\n")  # kept unless asked


def test_bytes_lines_from_a_binary_file_round_trip():
    data = MOSES.encode()
    entries = list(read_nbest(io.BytesIO(data)))
    assert [e.hypothesis for e in entries][3] == "漢字 テキスト"
    out = io.BytesIO()
    write_nbest(out, [rescored(e, "X", None, None) for e in entries])
    assert out.getvalue() == data  # no value: blank pass-through of every byte


@pytest.mark.parametrize(
    "name", ["", "RNN LM", "RNN|||LM", "a|b", "LM=", "=LM", "lm:", "tab\tname", "nl\n"]
)
def test_unsafe_feature_names_are_refused(name):
    with pytest.raises(ValueError, match="feature name"):
        check_feature_name(name)


def test_a_line_that_has_the_feature_already_is_refused():
    entry = parse_nbest("3 ||| a b ||| RNNLM0= -1 LM0= -2 ||| -3\n")[0]
    with pytest.raises(NBestFormatError, match="line 1: the line has a RNNLM0 feature"):
        rescored(entry, "RNNLM0", -1.0, None)


@pytest.mark.parametrize(
    ("text", "line_no", "problem"),
    [
        ("0 ||| a ||| LM0= -1 ||| -1\n0 ||| b ||| LM0= -1\n", 2, "expected 'id |||"),
        ("0 ||| a ||| LM0= -1 ||| -1\n\n1 ||| b ||| LM0= x ||| 1\n", 3, "feature LM0: 'x'"),
        ("0 ||| a ||| LM0= -1 ||| total\n", 1, "the total: 'total'"),
        (" ||| a ||| LM0= -1 ||| -1\n", 1, "the id"),
    ],
)
def test_malformed_lines_name_their_number(text, line_no, problem):
    with pytest.raises(NBestFormatError) as info:
        parse_nbest(text, "moses")
    assert info.value.line_no == line_no
    assert str(info.value).startswith(f"line {line_no}: ") and problem in str(info.value)


def test_a_long_malformed_line_is_quoted_short():
    with pytest.raises(NBestFormatError) as info:
        parse_nbest("0 ||| " + "word " * 100 + "||| no total\n", "moses")
    message = str(info.value)
    assert "..." in message and len(message) < 140


def test_a_line_that_is_not_utf8_is_named():
    with pytest.raises(NBestFormatError, match="line 2: not UTF-8"):
        parse_nbest([b"0 ||| a ||| LM0= 1 ||| 1\n", b"0 ||| \xff ||| LM0= 1 ||| 1\n"])


def test_a_byte_order_mark_is_kept_but_not_part_of_the_id():
    text = "\ufeff0 ||| a ||| LM0= -1 ||| -1\n0 ||| b ||| LM0= -1 ||| -2\n"
    first, second = parse_nbest(text)
    assert first.id == "0" and first.group == second.group
    assert rescored(first, "X", -3.0, 1.0).line(True) == "\ufeff0 ||| a ||| LM0= -1 X= -3 ||| -4\n"
    plain = parse_nbest("\ufeff7\tword\n7\tother\n")
    assert [(e.id, e.group) for e in plain] == [("7", 0), ("7", 0)]


def test_blank_moses_lines_pass_through_unscored():
    entries = parse_nbest("0 ||| a ||| LM0= -1 ||| -1\n\n0 ||| b ||| LM0= -1 ||| -1\n")
    assert [e.scored for e in entries] == [True, False, True]
    assert [e.group for e in entries] == [0, 1, 2]  # a blank line ends a group
    assert rescored(entries[1], "X", None, 1.0).line() == "\n"


def test_plain_lines_with_and_without_ids():
    with_ids = parse_nbest("7\tthe cat\r\n7\t\n8\ta dog\n")
    assert [(e.id, e.hypothesis, e.group) for e in with_ids] == [
        ("7", "the cat", 0),
        ("7", "", 0),
        ("8", "a dog", 1),
    ]
    assert rescored(with_ids[0], "X", -2.5, None).line() == "7\tthe cat\t-2.5\r\n"
    bare = parse_nbest("the cat\n\nhas two words\tinside\n")  # no id: one list
    assert [(e.id, e.hypothesis, e.group) for e in bare] == [
        ("", "the cat", 0),
        ("", "", 0),
        ("", "has two words\tinside", 0),
    ]
    with pytest.raises(ValueError, match="no total"):
        rescored(bare[0], "X", -1.0, 1.0).line(update_total=True)


def test_format_is_detected_from_the_first_non_blank_line_or_forced():
    text = "\n0 ||| a ||| LM0= -1 ||| -1\n"
    assert [e.format for e in parse_nbest(text)] == ["moses", "moses"]
    assert {e.format for e in parse_nbest(text, "plain")} == {"plain"}
    assert parse_nbest("a ||| b\n", "plain")[0].hypothesis == "a ||| b"
    with pytest.raises(ValueError, match="format must be one of"):
        parse_nbest(text, "kaldi")


def test_rerank_is_stable_within_a_group():
    text = "".join(f"0 ||| h{i} ||| LM0= 0 ||| {t}\n" for i, t in enumerate([-5, -1, -5, -1]))
    entries = parse_nbest(text)
    order = [r.entry.hypothesis for r in rerank([rescored(e, "X", -1.0, 1.0) for e in entries])]
    assert order == ["h1", "h3", "h0", "h2"]  # ties keep their input order
    lm = [0.0, -10.0, 0.0, -10.0]  # the weighted LM score decides: -5, -11, -5, -11
    items = [rescored(e, "X", v, 1.0) for e, v in zip(entries, lm)]
    assert [r.entry.hypothesis for r in rerank(items)] == ["h0", "h2", "h1", "h3"]


def test_write_nbest_to_a_text_file():
    entries = parse_nbest("a\nb\n")
    buf = io.StringIO(newline="")
    assert write_nbest(buf, [rescored(e, "X", -1.0, None) for e in entries]) == 2
    assert buf.getvalue() == "a\t-1\nb\t-1\n"


def test_numbers_are_short_and_never_negative_zero():
    assert [format_number(v) for v in (-23.4567891, 12.0, -0.0000001, 0.5)] == [
        "-23.456789",
        "12",
        "0",
        "0.5",
    ]
