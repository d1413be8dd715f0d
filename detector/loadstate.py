"""A truck's load state, decided over the frames of its track.

City platforms tell a covered load, an uncovered load and an empty body apart (an uncovered empty truck is
no violation). One frame rarely settles it: the load is hidden from a frontal view, a tarpaulin flaps, the
detector flips between ``truck`` and ``uncovered_truck`` as the truck turns. So each frame contributes a
probability over the four states, weighted by the detection's confidence, and the track's state is the
state whose mean probability is highest, once enough frames have voted and that mean is clear enough.

Per-frame evidence comes from the detector: the scene stage's share of the uncovered score
(``data["uncovered"]``, see :mod:`detector.scene`) gives ``P(uncovered) = p`` and ``P(covered) = 1 - p``. A
detector without an ``empty`` class cannot tell an empty body from a covered one, so with today's model a
track is uncovered, covered (meaning: not uncovered) or unknown; the votes take any four-state evidence, for a
second stage that can (a crop classifier was measured and not shipped: see the model card).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from detector.events import LoadState

#: The order of the probabilities in a load-evidence vector.
STATES: tuple[LoadState, ...] = (LoadState.COVERED, LoadState.UNCOVERED, LoadState.EMPTY, LoadState.UNKNOWN)

Evidence = npt.NDArray[np.float32]


def detector_evidence(p_uncovered: float) -> Evidence:
    """Evidence from the detector's classes: ``P(uncovered) = p``, the rest covered; a negative ``p``
    (no evidence) is all unknown."""
    if p_uncovered < 0:
        return np.asarray([0.0, 0.0, 0.0, 1.0], np.float32)
    p = float(min(p_uncovered, 1.0))
    return np.asarray([1.0 - p, p, 0.0, 0.0], np.float32)


@dataclass
class LoadVotes:
    """Confidence-weighted votes of a track's frames on its load state.

    Attributes:
        min_samples: Frames needed before the state is anything but unknown.
        min_share: Mean probability the leading state needs (below it: unknown).
    """

    min_samples: int = 3
    min_share: float = 0.5
    total: Evidence = field(default_factory=lambda: np.zeros(len(STATES), np.float32))
    weight: float = 0.0
    samples: int = 0

    def add(self, evidence: Evidence, weight: float = 1.0) -> None:
        """Add one frame's evidence (probabilities over :data:`STATES`, summing to 1)."""
        ev = np.asarray(evidence, np.float32).reshape(len(STATES))
        w = max(float(weight), 1e-6)
        self.total = self.total + w * ev
        self.weight += w
        self.samples += 1

    def probability(self) -> dict[str, float]:
        """Mean probability of each state so far."""
        if self.weight <= 0:
            return {s.value: (1.0 if s is LoadState.UNKNOWN else 0.0) for s in STATES}
        mean = self.total / self.weight
        return {s.value: round(float(p), 4) for s, p in zip(STATES, mean, strict=True)}

    def state(self) -> LoadState:
        """The decided state: unknown until ``min_samples`` frames and a leading mean of ``min_share``."""
        if self.samples < self.min_samples or self.weight <= 0:
            return LoadState.UNKNOWN
        mean = self.total / self.weight
        best = int(np.argmax(mean))
        return STATES[best] if mean[best] >= self.min_share else LoadState.UNKNOWN
