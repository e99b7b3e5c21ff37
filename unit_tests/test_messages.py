"""Reading protocol lines: exact values, STATE as raw JSON, and a reason for every line that is neither."""

import json
import math
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from destination_heap_analytics.messages import (
    IDLE,
    NO_DATA,
    NOT_A_MESSAGE,
    NOT_JSON,
    TOO_DEEP,
    LineReader,
    LongInteger,
    StreamEnded,
    Unreadable,
    _message,
    dump_json,
    parse_json,
    polled_lines,
    read_lines,
    state_at,
)


@pytest.mark.parametrize("number", [2**64 + 1, -(2**63) - 1, 10**40, 2**64 - 1, -(2**63)])
def test_integers_of_any_size_are_read_and_written_exactly(number):
    line = b'{"n": %d, "t": "2022-10-21"}' % number
    assert parse_json(line) == {"n": number, "t": "2022-10-21"}
    assert type(parse_json(line)["n"]) is int
    assert parse_json(dump_json(parse_json(line))) == {"n": number, "t": "2022-10-21"}


@pytest.mark.parametrize("digits_in_first_read", [1, 10, 18])
def test_an_integer_beyond_64_bits_split_between_two_reads_is_read_exactly(digits_in_first_read):
    def record(number):
        return b'{"type":"RECORD","record":{"stream":"s","data":{"n":%d},"emitted_at":1}}\n' % number

    line = record(2**64 + 1)
    cut = line.index(b"18446744073709551617") + digits_in_first_read
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as stream:
        os.write(write_end, record(7) + line[:cut])
        messages = polled_lines(stream, LineReader(), 0.01)
        assert next(messages)[1] == {"n": 7}
        os.write(write_end, line[cut:])
        os.close(write_end)
        rest = [message for message in messages if type(message) is tuple]
    assert [data for _, data, _, _ in rest] == [{"n": 2**64 + 1}]
    assert type(rest[0][1]["n"]) is int


@pytest.mark.parametrize("cut_after", [[], [-60], [1], [0, 1, 2], [-1, 3, 75, 76]])
def test_reads_are_cut_into_lines_wherever_a_read_ends(cut_after):
    """Blank lines, a CRLF ending, a line spanning reads and a last line without a newline: every record is
    read as soon as its newline is, whichever bytes each read of the pipe holds (each piece is read before the
    next is written)."""

    def record(number):
        return b'{"type":"RECORD","record":{"stream":"s","data":{"n":%d},"emitted_at":1}}' % number

    data = record(1) + b"\n\n" + record(2) + b"\r\n" + record(3) + b"\n \n" + record(4)
    cuts = [len(record(1)) + offset for offset in cut_after]  # pieces end that far after the first line
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as stream:
        messages = polled_lines(stream, LineReader(), 0.01)
        read = []
        for start, end in zip([0, *cuts], cuts, strict=False):
            os.write(write_end, data[start:end])
            read += [message for message in iter(lambda: next(messages), IDLE) if type(message) is tuple]
            ended = [line for line in data[:end].split(b"\n")[:-1] if line.strip()]
            assert len(read) == len(ended), "a line is handed on once its newline is read, not held for more"
        os.write(write_end, data[cuts[-1] if cuts else 0 :])
        os.close(write_end)
        read += [message for message in messages if type(message) is tuple]
    assert [value for _, value, _, _ in read] == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert [line.rstrip() for _, _, _, line in read] == [record(n) for n in range(1, 5)]


def test_lines_are_numbered_across_calls():
    reader = LineReader()
    good = b'{"type":"RECORD","record":{"stream":"s","data":{},"emitted_at":1}}'
    assert [type(message) for message in reader([good, good])] == [tuple, tuple]
    assert list(reader([])) == []
    assert list(reader([good, b"{oops"])) == [(("s", None), {}, 1, good), Unreadable(4, NOT_JSON)]


def test_what_orjson_refuses_python_reads():
    assert math.isnan(parse_json(b'{"v": NaN}')["v"])
    assert parse_json(b'"\\ud800"') == "\ud800"
    assert dump_json("\ud800") == b'"\\ud800"'


def status(body) -> bytes:
    return json.dumps(
        {"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": 1, "stream_status": body}}
    ).encode()


def test_a_stream_status_of_complete_or_incomplete_says_the_stream_ended_and_any_other_trace_is_skipped():
    lines = [
        status({"stream_descriptor": {"name": "users"}, "status": "COMPLETE"}),
        status({"stream_descriptor": {"name": "users", "namespace": "crm"}, "status": "INCOMPLETE"}),
        status({"stream_descriptor": {"name": "users"}, "status": "STARTED"}),
        status({"stream_descriptor": {"name": 5}, "status": "COMPLETE"}),
        status({"stream_descriptor": "users", "status": "COMPLETE"}),
        status(["COMPLETE"]),
        b'{"type":"TRACE","trace":{"type":"ERROR","error":{"message":"x"}}}',
        b'{"type":"TRACE","trace":"STREAM_STATUS"}',
    ]
    assert list(read_lines(lines)) == [
        StreamEnded(("users", None), "COMPLETE"),
        StreamEnded(("users", "crm"), "INCOMPLETE"),
    ]


def test_lines_become_records_states_or_reasons():
    lines = [
        b'{"type":"RECORD","record":{"stream":"s","namespace":"n","data":{"a":1},"emitted_at":5}}',
        b'{"type":"STATE","state":{"type":"STREAM","id":1,"stream":{"stream_descriptor":{"name":"s"}}}}',
        b'{"type":"RECORD","record":{"stream":"s","data":[1],"emitted_at":5}}',
        b'{"type":"LOG","log":{"level":"INFO","message":"skipped"}}',
        b"   ",
        b"[1]",
        b"{oops",
        b"[" * 3000 + b"]" * 3000,
        b'{"type":["RECORD"],"record":{}}',
        b'{"type":{"STATE":1}}',
    ]
    messages = list(read_lines(lines))
    assert messages[0] == (("s", "n"), {"a": 1}, 5, lines[0])
    assert messages[1] == state_at(lines[1], ("s", None))
    assert messages[2:] == [
        Unreadable(3, NO_DATA, ("s", None), lines[2]),
        Unreadable(6, NOT_A_MESSAGE),
        Unreadable(7, NOT_JSON),
        Unreadable(8, TOO_DEEP),
        Unreadable(9, NOT_A_MESSAGE),
        Unreadable(10, NOT_A_MESSAGE),
    ]


odd_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
    | st.just([])
    | st.just({})
)
record_lines = st.builds(
    lambda kind, record, dropped: json.dumps(
        {"type": kind, "record": {key: value for key, value in record.items() if key not in dropped}}
    ).encode(),
    st.sampled_from(["RECORD", "LOG"]) | odd_values,
    st.fixed_dictionaries(
        {
            "stream": st.sampled_from(["users"]) | odd_values,
            "namespace": st.none() | odd_values,
            "data": st.dictionaries(st.text(max_size=3), odd_values, max_size=3) | odd_values,
            "emitted_at": st.integers() | st.floats(allow_nan=False) | odd_values,
        }
    ),
    st.sets(st.sampled_from(["stream", "namespace", "data", "emitted_at"])),
)


@given(record_lines)
def test_the_fast_path_for_records_reads_every_line_as_the_general_reader_does(line):
    assert list(LineReader()([line])) == [message for message in [_message(line, 1)] if message is not None]


DEEP_DATA = b'{"a":' * 1500 + b"1" + b"}" * 1500
HEAD = b'{"type":"RECORD","record":{"stream":"s","namespace":"n","data":'


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            b'{"type":"RECORD","record":{"stream":"s","namespace":"n","data":' + DEEP_DATA + b',"emitted_at":5}}',
            TOO_DEEP,
        ),
        (
            b'{"record":{"emitted_at":5,"data":' + DEEP_DATA + b',"namespace":"n","stream":"s"},"type":"RECORD"}',
            TOO_DEEP,
        ),
        (HEAD + b'{"stream":"other","a":[1,', NOT_JSON),
    ],
)
def test_a_record_line_the_parser_cannot_read_still_names_its_stream(line, reason):
    """Deeper than any parser reads, or cut off: the stream is found in the envelope, so the record is counted
    (and kept) as its stream's, not as a line of no stream."""
    assert list(read_lines([line])) == [Unreadable(1, reason, ("s", "n"), line)]


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"STATE","record":{"stream":"s"},"state":' + DEEP_DATA + b"}",
        b'{"type":"RECORD","data":{"record":{"stream":"s"}},"x":' + DEEP_DATA + b"}",
        b'{"type":"RECORD","record":{"stream":7,"data":' + DEEP_DATA + b"}}",
    ],
)
def test_a_line_not_a_records_envelope_names_no_stream(line):
    (message,) = read_lines([line])
    assert message.stream is None


def test_an_integer_longer_than_python_reads_is_kept_as_its_text():
    digits = b"9" * 5000
    line = b'{"type":"RECORD","record":{"stream":"s","data":{"n":' + digits + b',"m":-12},"emitted_at":5}}'
    ((stream, data, _, _),) = read_lines([line])
    assert stream == ("s", None) and data["n"] == digits.decode() and isinstance(data["n"], LongInteger)
    assert data["m"] == -12 and type(data["m"]) is int
