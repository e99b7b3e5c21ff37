"""Reads a time in the forms sources write it, and writes it in the one form Heap's reference shows.

Heap takes RFC 3339 with an explicit offset. Every time sent is UTC, `Z`, to the millisecond, or to the
microsecond when the source's time has microseconds: `2024-01-01T12:00:00.123Z`. Read:

- ISO 8601, extended or basic, `T` or a space between date and time, week (`2024-W01-1`) and ordinal
  (`2024-001`) dates, a date alone (midnight UTC), fractions of any length (cut to microseconds), an
  offset or none (UTC);
- epoch numbers, as JSON numbers or as text of digits (with a sign or a fraction): below 10^11 seconds,
  below 10^14 milliseconds, below 10^17 microseconds. Text of exactly 8 digits is a basic date (YYYYMMDD).

Anything else, and any time outside years 1 to 9999, is no time: the record is refused with its reason.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

if sys.version_info >= (3, 11):
    from_iso = datetime.fromisoformat
else:  # 3.10's fromisoformat reads only what isoformat writes; this is 3.11's, the grammar described above
    from backports.datetime_fromisoformat import datetime_fromisoformat as from_iso

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECONDS_BELOW = 10**11
MILLISECONDS_BELOW = 10**14
MICROSECONDS_BELOW = 10**17
EPOCH_TEXT = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
HEAP_FORM = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}(?:Z|\+00:00)")
"""Heap's form to the millisecond, or with `+00:00` for `Z`: what most sources write, sent without parsing it
into parts and formatting them again (which costs several times the check)."""
ORDINAL = re.compile(r"([0-9]{4})-?([0-9]{3})(?=$|[T ])")


def heap_time(value: Any) -> str | None:
    """Heap's form of a time value, or None when the value is not a time."""
    kind = type(value)
    if kind is str:
        if HEAP_FORM.fullmatch(value) is not None:
            try:
                from_iso(value)  # a real date and time
                return value if len(value) == 24 else value[:23] + "Z"
            except ValueError:
                pass
        text = value.strip()
        epoch = text.find("-", 1) < 0 and ":" not in text and EPOCH_TEXT.fullmatch(text)
        if epoch and (len(text) != 8 or not text.isdigit()):
            return _from_epoch(Decimal(text))
        try:
            moment = from_iso(text)
        except ValueError:
            moment = _unusual(text)
            if moment is None:
                return None
        zone = moment.tzinfo
        if zone is None or zone is UTC:
            same = _as_written(text, moment.microsecond)
            if same is not None:
                return same
            moment = moment.replace(tzinfo=UTC)
        return utc_text(moment)
    if kind is int:
        return _from_epoch(Decimal(value))
    if kind is float:
        try:
            return _from_epoch(Decimal(repr(value)))
        except InvalidOperation:  # nan, inf
            return None
    return None


UTC_SUFFIXES = ("Z", "+00:00")


def _as_written(text: str, microsecond: int) -> str | None:
    """Heap's form of a UTC time read from `text`, cut from the text itself when it is laid out as
    `YYYY-MM-DD[T ]HH:MM:SS[.fff|.ffffff][Z|+00:00]` (fromisoformat having read it, each field is where
    Heap's form has it), else None. Formatting a datetime costs several times what reading one does."""
    if len(text) < 19 or text[4] != "-" or text[7] != "-" or text[10] not in "T " or text[13] != ":":
        return None
    if text[16] != ":":
        return None
    fraction = text[19:]
    for suffix in UTC_SUFFIXES:
        if text.endswith(suffix):
            fraction = text[19 : len(text) - len(suffix)]
            break
    if fraction == "":
        return f"{text[:10]}T{text[11:19]}.000Z"
    if fraction[0] != "." or len(fraction) not in (4, 7) or not fraction[1:].isdigit():
        return None
    if len(fraction) == 7 and microsecond % 1000 == 0:
        fraction = fraction[:4]
    return f"{text[:10]}T{text[11:19]}{fraction}Z"


def heap_time_of_epoch_ms(milliseconds: float) -> str | None:
    """Heap's form of a time given in epoch milliseconds (a record's emitted_at), or None out of range."""
    try:
        micros = round(milliseconds * 1000)
        return utc_text(EPOCH + timedelta(microseconds=micros))
    except (OverflowError, ValueError):
        return None


def utc_text(moment: datetime) -> str | None:
    """An aware datetime as Heap's form: UTC, `Z`, milliseconds or microseconds; None out of range."""
    try:
        moment = moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    spec = "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds"
    return moment.isoformat(timespec=spec)[:-6] + "Z"


def _unusual(text: str) -> datetime | None:
    """A time fromisoformat does not read as written: lowercase `t` or `z`, or an ordinal date."""
    text = text.upper()
    ordinal = ORDINAL.match(text)
    if ordinal is not None:
        year, day = int(ordinal[1]), int(ordinal[2])
        if not (year >= 1 and 1 <= day <= (366 if _leap(year) else 365)):
            return None
        date = datetime(year, 1, 1) + timedelta(days=day - 1)
        text = f"{year:04d}-{date.month:02d}-{date.day:02d}{text[ordinal.end() :]}"
    try:
        return from_iso(text)
    except ValueError:
        return None


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _from_epoch(number: Decimal) -> str | None:
    size = abs(number)
    if size < SECONDS_BELOW:
        scale = 1_000_000
    elif size < MILLISECONDS_BELOW:
        scale = 1_000
    elif size < MICROSECONDS_BELOW:
        scale = 1
    else:
        return None
    micros = int((number * scale).to_integral_value())
    try:
        return utc_text(EPOCH + timedelta(microseconds=micros))
    except OverflowError:
        return None
