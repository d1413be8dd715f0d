"""The scene stage: from the detector's boxes to the objects a case is about.

A detector scores classes box by box; a case is about one object. Between the detector and the tracker this
stage makes the detections mean that, in three pure steps on one frame's :class:`~detector.types.Detections`:

1. **Trucks** (:func:`merge_trucks`): a ``truck`` and an ``uncovered_truck`` box over the same vehicle (paired
   one to one, best overlap first) become one ``truck`` row, with the evidence of its load in
   ``data["uncovered"]`` (the share of the uncovered score, ``u / (u + t)``; -1 on rows that are not trucks).
   Whether a truck is a violation is decided over its track's frames by the rules (:mod:`detector.loadstate`),
   not by one box.
2. **Piles** (:func:`group_piles`): ``garbage`` boxes that touch or overlap are one pile: a heap labelled
   bag by bag opens one case, not one per bag. The runner applies this step after the tracker, to what the
   rules see. Scored as boxes (:func:`pile_boxes`, the evaluator's product view), each pile is a box of its
   own and its items stay as its parts at a lower score: labels that count heaps find the pile, labels that
   count bags still find the bags (garbage_bags val AP50, model 0.4.0, 320 px: items only 0.74 on its bag
   labels and 0.09 on the same images labelled by heap; piles only 0.19 and 0.85; piles with their parts
   0.56 and 0.85).
3. **One class per object** (:func:`resolve_classes`): overlapping boxes of different violation classes
   (a pile also taken for an overflowing bin, a stall also taken for a barbecue) are one object with the most
   likely class; the runner-up is kept in ``data["alt_class_id"]`` / ``data["alt_confidence"]``. A pile is
   an overflowing bin only where a bin is there (half of a ``garbage_bin`` box lies inside the
   ``overflowing_bin`` box, or the latter's score is at least ``bin_confidence``): otherwise ``garbage`` wins,
   and an "overflowing bin" that merely touches a pile is part of the pile (a wall beside a heap taken for a
   bin). A sure bin beside its spill stays two objects, as they are labelled.

Boxes scored below ``min_confidence`` take no part in steps 2 and 3 (an evaluator that keeps every box down to
0.001 must not let noise merge or push out what the product, at its 0.25, sees). Context classes (people,
cars, furniture) pass through untouched. Applied again to its own output, the stage keeps
its trucks and classes (a grouped pile may still touch another pile and grow).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detector.backends.base import DetectorBackend, Image
from detector.postprocess import box_gap, box_iou, greedy_pairs
from detector.types import Detections

PILE_CLASSES = frozenset({"garbage"})
#: Violation classes of which one object has exactly one (trucks are handled by :func:`merge_trucks`).
EXCLUSIVE_CLASSES = frozenset({"street_stall", "garbage", "overflowing_bin", "barbecue"})
TRUCK, UNCOVERED = "truck", "uncovered_truck"


@dataclass(frozen=True)
class SceneSettings:
    """Settings of the scene stage.

    Attributes:
        piles: Group touching garbage boxes into piles.
        part_weight: In the scored product view (:func:`pile_boxes`), a pile's items keep this share of their
            score, so that the pile ranks before its parts.
        min_confidence: Boxes below this score are never grouped or resolved (low-score noise stays apart).
        pile_touch: Boxes closer than this share of the smaller box's side count as touching.
        overlap_iou: Boxes of different violation classes with at least this IoU are one object (a small
            pile in front of a stall, inside its box, is two objects).
        bin_confidence: An ``overflowing_bin`` box this sure is a bin by itself (see the module docstring).
        truck_iou: A ``truck`` and an ``uncovered_truck`` box with this IoU are one vehicle.
    """

    piles: bool = True
    part_weight: float = 0.5
    min_confidence: float = 0.2
    pile_touch: float = 0.1
    overlap_iou: float = 0.45
    bin_confidence: float = 0.5
    truck_iou: float = 0.45


def _ids(names: list[str], wanted: frozenset[str] | set[str]) -> npt.NDArray[np.int64]:
    return np.asarray([i for i, n in enumerate(names) if n in wanted], np.int64)


def _with_data(det: Detections) -> Detections:
    """The same rows with every scene data key present (defaults: -1)."""
    n = len(det)
    data = dict(det.data)
    data.setdefault("uncovered", np.full(n, -1.0, np.float32))
    data.setdefault("alt_class_id", np.full(n, -1, np.int64))
    data.setdefault("alt_confidence", np.zeros(n, np.float32))
    return Detections(det.xyxy, det.confidence, det.class_id, det.tracker_id, data)


def _components(adjacent: npt.NDArray[np.bool_]) -> list[list[int]]:
    """Connected components of a symmetric adjacency matrix (each a sorted list of indices)."""
    n = len(adjacent)
    seen = np.zeros(n, bool)
    out = []
    for start in range(n):
        if seen[start]:
            continue
        stack, comp = [start], []
        seen[start] = True
        while stack:
            i = stack.pop()
            comp.append(i)
            for j in np.flatnonzero(adjacent[i] & ~seen):
                seen[j] = True
                stack.append(int(j))
        out.append(sorted(comp))
    return out


def _touching(a: npt.NDArray[np.float32], touch: float) -> npt.NDArray[np.bool_]:
    """Pairs of boxes that overlap or are closer than ``touch`` times the smaller box's shorter side."""
    side = np.minimum(a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]).clip(0)
    return np.asarray(box_gap(a, a) <= touch * np.minimum(side[:, None], side[None, :]), bool)


def merge_trucks(det: Detections, names: list[str], s: SceneSettings) -> Detections:
    """One ``truck`` row per vehicle with its load evidence in ``data["uncovered"]`` (see module docstring)."""
    det = _with_data(det)
    if TRUCK not in names:  # a model without a plain truck class: its uncovered_truck boxes are the evidence
        if UNCOVERED in names:
            current = np.asarray(det.data["uncovered"], np.float32)
            det.data["uncovered"] = np.where((det.class_id == names.index(UNCOVERED)) & (current < 0), 1.0,
                                             current).astype(np.float32)
        return det
    truck_id = names.index(TRUCK)
    unc_id = names.index(UNCOVERED) if UNCOVERED in names else -1
    t_idx, u_idx = np.flatnonzero(det.class_id == truck_id), np.flatnonzero(det.class_id == unc_id)
    if not len(t_idx) and not len(u_idx):
        return det
    # One to one, best overlap first: two vehicles never merge through a box between them.
    iou = box_iou(det.xyxy[u_idx], det.xyxy[t_idx]) if len(u_idx) and len(t_idx) else np.zeros((len(u_idx), 0))
    pairs = greedy_pairs(iou, s.truck_iou)
    uncovered = det.data["uncovered"].copy()
    conf = det.confidence.copy()
    drop = np.zeros(len(det), bool)
    for k, i in enumerate(u_idx):
        partner = t_idx[pairs[k]] if k in pairs else -1
        u, t = float(det.confidence[i]), float(det.confidence[partner]) if partner >= 0 else 0.0
        keep = i if partner < 0 or u >= t else partner
        uncovered[keep], conf[keep] = u / max(u + t, 1e-9), max(u, t)
        if partner >= 0:
            drop[partner if keep == i else i] = True
    paired = set(pairs.values())
    for j, i in enumerate(t_idx):
        if j not in paired and uncovered[i] < 0:  # a truck box alone: covered evidence (kept if already set)
            uncovered[i] = 0.0
    cls = np.where(np.isin(np.arange(len(det)), u_idx), truck_id, det.class_id)
    merged = Detections(det.xyxy, conf, cls, det.tracker_id, {**det.data, "uncovered": uncovered})
    return merged[np.flatnonzero(~drop)]


def _piles(det: Detections, names: list[str], s: SceneSettings) -> list[tuple[npt.NDArray[np.int64], int]]:
    """Each pile, two or more touching ``garbage`` boxes scored at least ``min_confidence``: its rows and its
    surest row."""
    idx = np.flatnonzero(np.isin(det.class_id, _ids(names, PILE_CLASSES)) & (det.confidence >= s.min_confidence))
    if len(idx) < 2 or not s.piles:
        return []
    piles = [idx[comp] for comp in _components(_touching(det.xyxy[idx], s.pile_touch)) if len(comp) > 1]
    return [(members, int(members[np.argmax(det.confidence[members])])) for members in piles]


def _union(det: Detections, members: npt.NDArray[np.int64]) -> list[float]:
    return [*det.xyxy[members, :2].min(axis=0), *det.xyxy[members, 2:].max(axis=0)]


def pile_extents(det: Detections, names: list[str], s: SceneSettings) -> list[tuple[list[float], int]]:
    """Each pile of touching ``garbage`` boxes as the rules see it: its union box and how many items it has."""
    return [(_union(det, members), len(members)) for members, _ in _piles(det, names, s)]


def group_piles(det: Detections, names: list[str], s: SceneSettings) -> Detections:
    """Touching ``garbage`` boxes (score >= ``min_confidence``) become one box: their union, best score."""
    det = _with_data(det)
    piles = _piles(det, names, s)
    if not piles:
        return det
    xyxy = det.xyxy.copy()
    drop = np.zeros(len(det), bool)
    for members, best in piles:
        xyxy[best] = _union(det, members)
        drop[members] = True
        drop[best] = False
    grouped = Detections(xyxy, det.confidence, det.class_id, det.tracker_id, det.data)
    return grouped[np.flatnonzero(~drop)]


def pile_boxes(det: Detections, names: list[str], s: SceneSettings) -> Detections:
    """Garbage as boxes the way cases see it: each pile (two or more touching items) is a box of its own,
    the union of its items at the best item's score, and its items stay as its parts at ``part_weight`` times
    their score. A rank-based score (AP) then finds the pile first wherever labels mark heaps, and the items
    after it wherever labels count bags; a lone item is its own pile and passes unchanged."""
    det = _with_data(det)
    piles = _piles(det, names, s)
    if not piles:
        return det
    conf = det.confidence.copy()
    for members, _ in piles:
        conf[members] = det.confidence[members] * s.part_weight
    whole = det[np.asarray([best for _, best in piles], np.int64)]
    whole = Detections(np.asarray([_union(det, m) for m, _ in piles], np.float32), whole.confidence,
                       whole.class_id, whole.tracker_id, whole.data)
    return Detections.merge([Detections(det.xyxy, conf, det.class_id, det.tracker_id, det.data), whole])


def resolve_classes(det: Detections, names: list[str], s: SceneSettings) -> Detections:
    """One class per object among overlapping violation boxes; the runner-up kept as the alternative."""
    det = _with_data(det)
    idx = np.flatnonzero(np.isin(det.class_id, _ids(names, EXCLUSIVE_CLASSES)) & (det.confidence >= s.min_confidence))
    if len(idx) < 2:
        return det
    cls = det.class_id[idx]
    garbage = names.index("garbage") if "garbage" in names else -1
    overflowing = names.index("overflowing_bin") if "overflowing_bin" in names else -1
    bins = det.xyxy[(det.class_id == (names.index("garbage_bin") if "garbage_bin" in names else -1))
                    & (det.confidence >= s.min_confidence)]
    # A bin is there: half of a garbage_bin box lies inside it, or the detector is sure of the overflowing bin.
    has_bin = np.asarray([cls[k] == overflowing and (det.confidence[i] >= s.bin_confidence or bool(
        len(bins) and (_inside(det.xyxy[i], bins) >= 0.5).any())) for k, i in enumerate(idx)], bool)
    adjacent = box_iou(det.xyxy[idx], det.xyxy[idx]) >= s.overlap_iou
    # A pile touching an "overflowing bin" where no bin is there is one pile (a wall beside it taken for a bin).
    weak_bin = (cls == overflowing) & ~has_bin
    is_garbage = cls == garbage
    adjacent |= _touching(det.xyxy[idx], s.pile_touch) & (
        (is_garbage[:, None] & weak_bin[None, :]) | (weak_bin[:, None] & is_garbage[None, :]))
    adjacent &= cls[:, None] != cls[None, :]
    comps = [c for c in _components(adjacent) if len(c) > 1]
    if not comps:
        return det
    alt_cls, alt_conf = det.data["alt_class_id"].copy(), det.data["alt_confidence"].copy()
    drop = np.zeros(len(det), bool)
    for comp in comps:
        order = sorted(comp, key=lambda k: -float(det.confidence[idx[k]]))
        if weak_bin[order[0]]:  # the pile is not a bin: its surest member that is not a weak bin wins
            first = next((k for k in order if not weak_bin[k]), order[0])
            order = [first, *(k for k in order if k != first)]
        winner = idx[order[0]]
        runner = next((idx[k] for k in order[1:] if cls[k] != cls[order[0]]), None)
        if runner is not None:
            alt_cls[winner], alt_conf[winner] = det.class_id[runner], det.confidence[runner]
        drop[idx[comp]] = True
        drop[winner] = False
    data = {**det.data, "alt_class_id": alt_cls, "alt_confidence": alt_conf}
    return Detections(det.xyxy, det.confidence, det.class_id, det.tracker_id, data)[np.flatnonzero(~drop)]


def _inside(box: npt.NDArray[np.float32], others: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Share of each of ``others`` that lies inside ``box``."""
    lt = np.maximum(box[:2], others[:, :2])
    rb = np.minimum(box[2:], others[:, 2:])
    inter = np.prod((rb - lt).clip(0), axis=1)
    area = np.prod((others[:, 2:] - others[:, :2]).clip(0), axis=1)
    return np.asarray(inter / np.maximum(area, 1e-9), np.float32)


def scene(det: Detections, names: list[str], settings: SceneSettings | None = None) -> Detections:
    """The object steps: trucks, then one class per object. Piles are made after tracking (the tracker follows
    each item): :func:`group_piles` for the rules, :func:`pile_boxes` for the scored product view."""
    s = settings or SceneSettings()
    return resolve_classes(merge_trucks(det, names, s), names, s)


def product_boxes(det: Detections, names: list[str]) -> Detections:
    """The scene stage's objects as boxes of detector classes, for scoring what the product sees.

    Everything passes as it is, except trucks: each truck becomes a ``truck`` box scored
    ``score x (1 - P(uncovered))`` and an ``uncovered_truck`` box scored ``score x P(uncovered)``. Every truck
    is thus found as a truck, ranked by how sure the product is that its load is not exposed, and as an
    uncovered truck, ranked by how sure it is that it is: a rank-based score (AP) then reads the load decision
    without a threshold, whether the labels count an uncovered truck as a truck too or not.
    """
    if TRUCK not in names or UNCOVERED not in names or "uncovered" not in det.data:
        return det
    trucks = np.flatnonzero(det.class_id == names.index(TRUCK))
    if not len(trucks):
        return det
    p = det.data["uncovered"][trucks].astype(np.float32).clip(0, 1)
    rows = det[trucks]
    covered = Detections(rows.xyxy, rows.confidence * (1 - p), rows.class_id, rows.tracker_id, rows.data)
    uncovered = Detections(rows.xyxy, rows.confidence * p, np.full(len(trucks), names.index(UNCOVERED), np.int64),
                           rows.tracker_id, rows.data)
    others = det[np.flatnonzero(det.class_id != names.index(TRUCK))]
    return Detections.merge([others, covered, uncovered])


class ProductView(DetectorBackend):
    """A detector seen through the scene stage: what the product sees, as boxes (for ``evaluate``).

    Args:
        inner: The detector.
        settings: Scene settings (the product's defaults when None).
    """

    def __init__(self, inner: DetectorBackend, settings: SceneSettings | None = None) -> None:
        self.inner = inner
        self.names = inner.names
        self.imgsz = inner.imgsz
        self.settings = settings or SceneSettings()

    def detect(self, frames: list[Image], sizes: Sequence[int] | None = None) -> list[Detections]:
        """The inner detector's output after the scene stage, trucks as truck and uncovered_truck boxes,
        garbage as piles with their parts (:func:`pile_boxes`)."""
        return [pile_boxes(product_boxes(scene(d, self.names, self.settings), self.names), self.names,
                           self.settings) for d in self.inner.detect(frames, sizes)]

    def close(self) -> None:
        """Close the inner detector."""
        self.inner.close()


class AlarmView(ProductView):
    """What the rules act on, as boxes: the scene stage's objects with each pile of touching garbage grouped
    into one box at its best item's score (:func:`group_piles`, no parts), trucks as one box each. A threshold
    chosen on these boxes (``evaluate thresholds``) is one the rules apply to the same scores."""

    def detect(self, frames: list[Image], sizes: Sequence[int] | None = None) -> list[Detections]:
        """The inner detector's output after the scene stage, piles grouped as the rules group them."""
        return [group_piles(scene(d, self.names, self.settings), self.names, self.settings)
                for d in self.inner.detect(frames, sizes)]

