"""The project's corrections of the teacher's boxes (``datasets/teacher_fixes.csv``).

The COCO teacher (:mod:`datasets.pseudo`) calls most vans, some SUVs and cars, cargo tricycles and even wheeled
bins ``truck`` on street photos: 58 of the 132 trucks it put on the garbage sources were not trucks (checked by
eye, stop 32); its 39 umbrellas on ``vehicles_atl_cctv`` are one street lamp of one camera; 8 of its 47 other
umbrellas and 3 of its 28 chairs are rubbish bags, bins, a tarpaulin, a hat, a wheel. Each row names one
teacher box by source, image file name, the teacher's COCO class and the normalised centre of its box, and says
what it is: a canonical label (``car``, ``bus``, ...) or ``none`` (no object of a class the model learns: the box
is dropped). ``datasets pack`` applies them to the teacher's boxes before merging
(:func:`datasets.pseudo.correct_teacher`).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from datasets import commented_csv
from datasets.pseudo import COCO_TO_CANONICAL, DROP

TEACHER_FIXES = Path(__file__).resolve().parent / "teacher_fixes.csv"
"""The corrections shipped with the project."""


class TeacherFix(NamedTuple):
    """One corrected teacher box."""

    source: str
    image: str
    teacher: str  # the teacher's COCO class name
    cx: float  # normalised centre of the teacher's box
    cy: float
    label: str  # a canonical context label, or DROP


def read_teacher_fixes(path: Path = TEACHER_FIXES) -> list[TeacherFix]:
    """The rows of a corrections file (lines starting with ``#`` are comments).

    Raises:
        ValueError: A row without the file's columns, a centre that is not a number in 0..1, or a label that is
            neither a context class the teacher gives nor ``none``.
    """
    allowed = set(COCO_TO_CANONICAL.values()) | {DROP}
    rows: list[TeacherFix] = []
    for n, row in commented_csv.rows(path):
        try:
            fix = TeacherFix(row["source"], row["image"], row["teacher"], float(row["cx"]), float(row["cy"]),
                             row["label"])
            if not (0 <= fix.cx <= 1 and 0 <= fix.cy <= 1) or fix.label not in allowed:
                raise ValueError(f"centre outside 0..1 or label not one of {sorted(allowed)}")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: row {n}: expected source,image,teacher,cx,cy,label ({exc})") from exc
        rows.append(fix)
    return rows


def fixes_by_image(path: Path = TEACHER_FIXES) -> dict[str, dict[str, tuple[TeacherFix, ...]]]:
    """The corrections by source, then image file name."""
    out: dict[str, dict[str, list[TeacherFix]]] = {}
    for fix in read_teacher_fixes(path):
        out.setdefault(fix.source, {}).setdefault(fix.image, []).append(fix)
    return {s: {i: tuple(f) for i, f in images.items()} for s, images in out.items()}
