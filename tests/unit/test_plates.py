"""Chinese plate formats, OCR readings constrained to valid plates, and the vote over a track's frames."""

from __future__ import annotations

import numpy as np
import pytest

from detector.plate_reader import ConstrainedDecoder
from detector.plates import PlateVotes, format_plate, plate_kind, read_plate


@pytest.mark.parametrize(("plate", "kind"), [
    ("晋HA6021", "standard"), ("京A1234挂", "standard"), ("粤B12345", "standard"),
    ("京AD12345", "new_energy"), ("京A12345D", "new_energy"), ("沪AF0123", "standard"),
    ("京AI2345", None),  # no I
    ("京O12345", None),  # no O
    ("A123456", None),  # no province
    ("京A1234", None), ("京A12345DD", None), ("京A12345Q", None),
])
def test_formats(plate: str, kind: str | None) -> None:
    assert plate_kind(plate) == kind


@pytest.mark.parametrize(("ocr", "plate"), [
    ("晋H·A6021", "晋HA6021"),  # separators
    ("晋ha602I", "晋HA6021"),  # lower case, I read for 1
    ("京0B1234", "京DB1234"),  # a digit where the city letter must be
    ("粤BD0123O", "粤BD01230"),  # a green plate's last digit read as O
    ("浙A12345D", "浙A12345D"),
    ("xx 苏E·12345 yy", "苏E12345"),  # text around the plate
    ("12345", None), ("京A12", None), ("", None),
])
def test_readings_become_valid_plates_or_nothing(ocr: str, plate: str | None) -> None:
    assert read_plate(ocr) == plate


def test_votes_fix_single_frame_errors_and_weigh_confidence() -> None:
    votes = PlateVotes()
    for text, conf in [("晋HA6021", 0.9), ("晋HA6O21", 0.8), ("晋HA8021", 0.5), ("not a plate", 0.99),
                       ("晋HA6021", 0.7), ("京HA6021", 0.3)]:
        votes.add(text, conf)
    plate, conf = votes.result() or ("", 0.0)
    assert plate == "晋HA6021" and 0.5 < conf < 0.9
    assert PlateVotes().result() is None
    green = PlateVotes()
    for text, conf in [("京AD12345", 0.9), ("京AD1234", 0.4), ("京AD12345", 0.8)]:
        green.add(text, conf)
    assert green.result()[0] == "京AD12345"  # type: ignore[index]
    assert format_plate("晋HA6021") == "晋H·A6021"


def _probs(frames: list[dict[str, float]], chars: list[str]) -> np.ndarray:
    """Per-frame class probabilities: the given ones, the rest of the mass on the blank."""
    out = np.full((len(frames), len(chars)), 1e-6, np.float32)
    for t, frame in enumerate(frames):
        for ch, p in frame.items():
            out[t, chars.index(ch)] = p
        out[t, 0] = max(1e-6, 1.0 - sum(frame.values()))
    return out


def test_constrained_decoding_fits_look_alikes_and_refuses_unseen_characters() -> None:
    chars = ["<blank>", *dict.fromkeys("晋京HAO0B8612345CDEFGJKLMNPQRSTUVWXYZ79")]
    decoder = ConstrainedDecoder(chars)
    blank: dict[str, float] = {}
    plate = [{"晋": 0.9}, blank, {"H": 0.95}, blank, {"A": 0.9}, blank, {"6": 0.9}, blank,
             {"O": 0.6, "0": 0.35}, blank, {"2": 0.9}, blank, {"1": 0.9}, blank]
    assert decoder.decode(_probs(plate, chars))[0] == "晋HA6021"  # type: ignore[index]
    # The province glyph read as a Latin letter: no province was seen, so no plate (never a guessed one).
    unseen = [{"H": 0.9, "晋": 0.01}, blank, *plate[2:]]
    assert decoder.decode(_probs(unseen, chars)) is None
    assert decoder.decode(_probs([{"1": 0.9}, blank] * 3, chars)) is None  # too short for any plate
