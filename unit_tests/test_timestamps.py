"""Times: every form a source writes is read as the instant it means and written in Heap's one form. Tested
against a reference that builds both the text and the expected form from a datetime's fields, by hand."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from destination_heap_analytics.timestamps import heap_time, heap_time_of_epoch_ms

moments = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 30))
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda minutes: timedelta(minutes=minutes))


def expected(moment: datetime, offset: timedelta) -> str:
    """Heap's form, from the fields: the local time minus its offset, ms unless it has microseconds."""
    utc = moment - offset
    fraction = f"{utc.microsecond:06d}"
    fraction = fraction[:3] if fraction.endswith("000") else fraction
    return f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{fraction}Z"


def offset_text(offset: timedelta, style: str) -> str:
    minutes = int(offset.total_seconds() // 60)
    if style == "none":
        return ""
    if style == "Z" and minutes == 0:
        return "Z"
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{rest:02d}" if style == "basic" else f"{sign}{hours:02d}:{rest:02d}"


@given(
    moments,
    offsets,
    st.sampled_from(["extended", "basic", "space", "week", "ordinal"]),
    st.sampled_from(["none", "Z", "extended", "basic"]),
    st.sampled_from([0, 3, 6, 9]),
    st.booleans(),
)
def test_iso_8601_in_any_form_is_the_instant_it_names(moment, offset, date_form, offset_style, digits, lower):
    if offset_style in ("none", "Z"):
        offset = timedelta(0)
    assume(datetime(1, 1, 2) < moment - offset < datetime(9999, 12, 30))
    micro = f"{moment.microsecond:06d}"
    fraction = "" if digits == 0 else "." + (micro + "789")[:digits]
    shown = moment
    if digits == 3:
        shown = moment.replace(microsecond=int(micro[:3]) * 1000)
    elif digits == 0:
        shown = moment.replace(microsecond=0)
    if date_form == "basic":
        text = f"{moment:%Y%m%dT%H%M%S}" if moment.year >= 1000 else f"{moment.year:04d}{moment:%m%dT%H%M%S}"
    else:
        if date_form == "week":
            year, week, weekday = moment.isocalendar()
            date = f"{year:04d}-W{week:02d}-{weekday}"
        elif date_form == "ordinal":
            date = f"{moment.year:04d}-{moment.timetuple().tm_yday:03d}"
        else:
            date = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        separator = " " if date_form == "space" else "T"
        text = f"{date}{separator}{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    text += fraction + offset_text(offset, offset_style)
    if lower:
        text = text.lower()
    assert heap_time(text) == expected(shown, offset), text


@given(st.integers(min_value=-(10**10), max_value=10**11 - 1), st.sampled_from([1, 1000, 1_000_000]), st.booleans())
def test_epoch_numbers_are_read_by_magnitude_as_numbers_and_as_text(seconds, scale, as_text):
    value = seconds * scale + (scale - 1 if scale > 1 else 0)
    if abs(value) >= {1: 10**11, 1000: 10**14, 1_000_000: 10**17}[scale]:
        return
    if scale > 1 and abs(value) < {1000: 10**11, 1_000_000: 10**14}[scale]:
        return  # a smaller number of this scale reads as the scale below: covered there
    instant = datetime(1970, 1, 1) + timedelta(microseconds=value * (1_000_000 // scale))
    if not datetime(1, 1, 1) < instant < datetime(9999, 12, 31):
        assert heap_time(value) is None
        return
    if len(str(value)) == 8 and value > 0 and as_text:
        return  # eight digits of text are a basic date
    assert heap_time(str(value) if as_text else value) == expected(instant, timedelta(0))


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("1704110400", "2024-01-01T12:00:00.000Z"),
        ("1704110400000", "2024-01-01T12:00:00.000Z"),
        ("1704110400000000", "2024-01-01T12:00:00.000Z"),
        ("1704110400.25", "2024-01-01T12:00:00.250Z"),
        (1704110400.5, "2024-01-01T12:00:00.500Z"),
        ("20240101", "2024-01-01T00:00:00.000Z"),
        ("2024-01-01", "2024-01-01T00:00:00.000Z"),
        ("2024-366", "2024-12-31T00:00:00.000Z"),
        ("2024-01-01T12:00:00,5Z", "2024-01-01T12:00:00.500Z"),
        ("2024-01-01T12:00:00.123000Z", "2024-01-01T12:00:00.123Z"),
        ("2024-01-01T12:00:00.123001+00:00", "2024-01-01T12:00:00.123001Z"),
        ("2024-01-01T12:00:00-00:00", "2024-01-01T12:00:00.000Z"),
        ("2024-01-01T00:30:00+01:00", "2023-12-31T23:30:00.000Z"),
        (" 2024-01-01T12:00:00Z ", "2024-01-01T12:00:00.000Z"),
    ],
)
def test_forms_sources_write(value, sent):
    assert heap_time(value) == sent


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "",
        "2023-366",
        "0000-01-01",
        "2024-13-01",
        "2024-01-01T24:00:00",
        "1e5",
        "12:00",
        True,
        None,
        float("nan"),
        float("inf"),
        10**17,
        "9999-12-31T23:59:59-01:00",
        "2024-01-01T12:00:00Zjunk",
        [2024],
    ],
)
def test_what_is_no_time_is_never_sent(value):
    assert heap_time(value) is None


def test_emitted_at_is_written_in_the_same_form():
    assert heap_time_of_epoch_ms(1666325394622) == "2022-10-21T04:09:54.622Z"
    assert heap_time_of_epoch_ms(1e20) is None


def test_an_aware_time_keeps_its_instant():
    moment = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=-5)))
    assert heap_time(moment.isoformat()) == expected(moment.replace(tzinfo=None), timedelta(hours=-5))
    assert heap_time(moment.astimezone(timezone.utc).isoformat()) == "2024-01-01T17:00:00.000Z"


@pytest.mark.parametrize(
    "text", ["2022-02-30T00:00:00.000Z", "2022-10-21T24:00:00.000+00:00", "2022-13-01T00:00:00.000Z"]
)
def test_heaps_own_form_of_a_time_that_does_not_exist_is_no_time(text):
    assert heap_time(text) is None
