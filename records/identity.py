"""Mainland China resident identity numbers (GB 11643-1999)."""

from __future__ import annotations

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def check_digit(first17: str) -> str:
    """The 18th character for the first 17 digits."""
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def normalize_resident_id(value: str) -> str:
    """Upper-case and validate an 18-character resident identity number.

    Raises:
        ValueError: wrong length, non-digits or a check digit that does not match.
    """
    value = value.strip().upper()
    if len(value) != 18 or not value[:17].isdigit():
        raise ValueError("must be an 18-character resident identity number")
    if check_digit(value[:17]) != value[17]:
        raise ValueError("check digit does not match")
    return value
