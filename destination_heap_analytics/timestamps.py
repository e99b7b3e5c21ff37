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
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECONDS_BELOW = 10**11
MILLISECONDS_BELOW = 10**14
MICROSECONDS_BELOW = 10**17
EPOCH_TEXT = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
ORDINAL = re.compile(r"([0-9]{4})-?([0-9]{3})(?=$|[T ])")


def heap_time(value: Any) -> str | None:
    """Heap's form of a time value, or None when the value is not a time."""
    kind = type(value)
    if kind is str:
        return _from_text(value.strip())
    if kind is int:
        return _from_epoch(Decimal(value))
    if kind is float:
        try:
            return _from_epoch(Decimal(repr(value)))
        except InvalidOperation:  # nan, inf
            return None
    return None


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


def _from_text(text: str) -> str | None:
    if EPOCH_TEXT.fullmatch(text) and (len(text) != 8 or not text.isdigit()):
        try:
            return _from_epoch(Decimal(text))
        except InvalidOperation:
            return None
    text = text.upper()
    ordinal = ORDINAL.match(text)
    if ordinal is not None:
        year, day = int(ordinal[1]), int(ordinal[2])
        if not (year >= 1 and 1 <= day <= (366 if _leap(year) else 365)):
            return None
        date = datetime(year, 1, 1) + timedelta(days=day - 1)
        text = f"{year:04d}-{date.month:02d}-{date.day:02d}{text[ordinal.end() :]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return utc_text(moment)


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
