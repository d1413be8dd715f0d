"""Chinese number plates: the formats, constrained reading of OCR output, and a vote over a track's frames.

A plate is a province character, a letter for the issuing city, then:

- 5 characters (``standard``: blue plates of cars, yellow plates of heavy vehicles such as muck trucks; the last
  may be 挂 (trailer), 学 (coach), 警 (police), 港 or 澳), or
- 6 characters (``new_energy``, green plates): small vehicles ``[A-HJK]`` + a letter or digit + 4 digits (京AD12345),
  large vehicles 5 digits + ``[A-HJK]`` (京A12345D).

Letters never include I or O. OCR confuses look-alikes (0/O/D/Q, 1/I, 8/B, 2/Z, 5/S, 6/G): :func:`read_plate`
turns raw OCR text into the valid plate it most likely is, position by position, or nothing. :class:`PlateVotes`
chooses a track's plate from many frames' readings.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

#: Province (and municipality, autonomous region) abbreviations, first character of every civil plate.
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, no O
DIGITS = "0123456789"
SUFFIXES = "挂学警港澳"
NEV_KIND = "ABCDEFGHJK"  # new-energy: A-E pure electric (D the first), F-K hybrid (F the first)

PlateKind = Literal["standard", "new_energy"]

_ALNUM = LETTERS + DIGITS
_STANDARD = re.compile(f"^[{PROVINCES}][{LETTERS}][{_ALNUM}]{{4}}[{_ALNUM}{SUFFIXES}]$")
_NEV_SMALL = re.compile(f"^[{PROVINCES}][{LETTERS}][{NEV_KIND}][{_ALNUM}][{DIGITS}]{{4}}$")
_NEV_LARGE = re.compile(f"^[{PROVINCES}][{LETTERS}][{DIGITS}]{{5}}[{NEV_KIND}]$")

#: What OCR reads for a character that must be a digit, or a letter.
_AS_DIGIT = {"O": "0", "D": "0", "Q": "0", "U": "0", "I": "1", "L": "1", "T": "1", "Z": "2", "S": "5", "B": "8",
             "G": "6"}
_AS_LETTER = {"0": "D", "O": "D", "1": "J", "I": "J", "8": "B", "2": "Z", "5": "S", "6": "G"}
_SEPARATORS = re.compile(r"[\s·•.\-_:|]")


def plate_kind(plate: str) -> PlateKind | None:
    """Which format a plate has, or None when it is not a valid plate."""
    if _STANDARD.match(plate):
        return "standard"
    if _NEV_SMALL.match(plate) or _NEV_LARGE.match(plate):
        return "new_energy"
    return None


def _fit(chars: str, pattern: list[str]) -> tuple[str, int] | None:
    """Map each character onto its position's allowed set (look-alikes swapped): the plate and how many
    characters were swapped, or None."""
    out, swaps = [], 0
    for ch, allowed in zip(chars, pattern, strict=True):
        if ch in allowed:
            out.append(ch)
            continue
        swaps += 1
        if ch in _AS_DIGIT and _AS_DIGIT[ch] in allowed:
            out.append(_AS_DIGIT[ch])
        elif ch in _AS_LETTER and _AS_LETTER[ch] in allowed:
            out.append(_AS_LETTER[ch])
        else:
            return None
    return "".join(out), swaps


_PATTERNS: list[list[str]] = [
    [PROVINCES, LETTERS, _ALNUM, _ALNUM, _ALNUM, _ALNUM, _ALNUM + SUFFIXES],
    [PROVINCES, LETTERS, NEV_KIND, _ALNUM, DIGITS, DIGITS, DIGITS, DIGITS],
    [PROVINCES, LETTERS, DIGITS, DIGITS, DIGITS, DIGITS, DIGITS, NEV_KIND],
]


def read_plate(text: str) -> str | None:
    """The valid plate an OCR reading most likely is: separators dropped, upper-cased, look-alike characters
    swapped where a position needs a digit or a letter; None when no format fits.

    A reading with extra characters around the plate (a frame, a dealer's line) is searched for a plate of 7
    or 8 characters starting at a province character.
    """
    s = _SEPARATORS.sub("", text).upper()
    found: list[tuple[float, str]] = []
    for i, ch in enumerate(s):
        if ch not in PROVINCES:
            continue
        for pattern in _PATTERNS:
            chunk = s[i:i + len(pattern)]
            fitted = _fit(chunk, pattern) if len(chunk) == len(pattern) else None
            if fitted is not None and plate_kind(fitted[0]) is not None:
                # a plate character right after it: this is more likely a cut-off longer plate
                after = i + len(pattern) < len(s) and s[i + len(pattern)].isalnum()
                found.append((fitted[1] + 1.5 * after, fitted[0]))
    return min(found)[1] if found else None


def format_plate(plate: str) -> str:
    """A plate as printed: province and city letter, a dot, the rest (京A·12345)."""
    return f"{plate[:2]}·{plate[2:]}" if len(plate) > 2 else plate


@dataclass
class PlateVotes:
    """A track's plate readings, voted character by character (weights: the OCR's confidence).

    Readings of different lengths (a green plate misread as a blue one) are voted separately; the length with
    the larger total weight wins.
    """

    readings: list[tuple[str, float]] = field(default_factory=list)

    def add(self, text: str, confidence: float) -> str | None:
        """Add one frame's OCR reading; returns the valid plate it was read as (None: not a plate)."""
        plate = read_plate(text)
        if plate is not None and confidence > 0:
            self.readings.append((plate, float(confidence)))
        return plate

    def result(self) -> tuple[str, float] | None:
        """The voted plate and its confidence (the winning characters' mean share of the weight times the
        readings' mean confidence), or None without a valid reading."""
        if not self.readings:
            return None
        by_len: dict[int, list[tuple[str, float]]] = defaultdict(list)
        for plate, conf in self.readings:
            by_len[len(plate)].append((plate, conf))
        length, group = max(by_len.items(), key=lambda kv: sum(c for _, c in kv[1]))
        chars, shares = [], []
        for pos in range(length):
            weight: dict[str, float] = defaultdict(float)
            for plate, conf in group:
                weight[plate[pos]] += conf
            best = max(weight.items(), key=lambda kv: kv[1])
            chars.append(best[0])
            shares.append(best[1] / sum(weight.values()))
        voted = "".join(chars)
        if plate_kind(voted) is None:  # characters voted apart into no plate: take the strongest reading
            voted = max(group, key=lambda r: r[1])[0]
        mean_conf = sum(c for _, c in group) / len(group)
        share = sum(shares) / len(shares) * sum(c for _, c in group) / sum(c for _, c in self.readings)
        return voted, round(share * mean_conf, 4)
