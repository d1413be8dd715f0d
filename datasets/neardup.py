"""Same-scene search: which training images show a place that a validation image also shows.

A source whose photographers shot one place several times leaks that place across its splits, and then its
validation score measures memory. Exact hashes do not find these pairs: Roboflow's augmented copies are sheared,
re-exposed and re-encoded. The search here is the one that built ``../shared/data/garbage_street_cn``:

1. candidates: the ``k`` nearest reference images by HSV colour histogram, plus reference images whose file
   number lies within ``window`` of the image's own (photos of one place are usually consecutive);
2. proof: ORB features matched with Lowe's ratio test, and an affine model fitted by RANSAC (an affine map
   covers the sources' shear and rescaling); ``min_inliers`` or more inliers make it the same scene.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Features:
    """What the search keeps of one image: colour histogram, ORB key points and descriptors, file number."""

    hist: npt.NDArray[np.float32]
    points: npt.NDArray[np.float32]
    desc: npt.NDArray[np.uint8] | None
    number: int | None


_NUMBER = re.compile(r"(\d+)")


def file_number(name: str) -> int | None:
    """The first run of digits in a file name (``000123_jpg.rf.ab`` -> 123), or None."""
    m = _NUMBER.search(name)
    return int(m.group(1)) if m else None


def features(name: str, image: Image, side: int = 480, n_features: int = 1000) -> Features:
    """Histogram and ORB features of ``image`` resized to ``side`` px on its longer side."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    counts = cv2.calcHist([hsv], [0, 1, 2], None, [8, 8, 8], [0, 180, 0, 256, 0, 256]).flatten()
    hist = np.asarray(counts / max(float(counts.sum()), 1.0), dtype=np.float32)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    kps, desc = cv2.ORB.create(nfeatures=n_features).detectAndCompute(gray, np.full(gray.shape, 255, np.uint8))
    points = np.array([k.pt for k in kps], dtype=np.float32).reshape(-1, 2)
    # OpenCV returns no descriptor array for an image without key points (a flat colour).
    return Features(hist, points, None if desc is None else np.asarray(desc, np.uint8), file_number(name))


def affine_inliers(a: Features, b: Features, ratio: float = 0.75) -> int:
    """Inliers of an affine map fitted by RANSAC to the ratio-tested ORB matches of ``a`` and ``b``."""
    if a.desc is None or b.desc is None or len(a.desc) < 3 or len(b.desc) < 3:
        return 0
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.desc, b.desc, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if len(good) < 3:
        return 0
    src = a.points[[m.queryIdx for m in good]]
    dst = b.points[[m.trainIdx for m in good]]
    _, mask = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=4.0)
    return 0 if mask is None else int(mask.sum())


def same_scenes(images: Mapping[str, Features], reference: Mapping[str, Features], k: int = 10, window: int = 5,
                min_inliers: int = 15) -> dict[str, tuple[str, int]]:
    """Images of ``images`` that show a scene of ``reference``: name -> (reference name, inliers)."""
    ref_names = list(reference)
    if not ref_names:
        return {}
    ref_hist = np.stack([reference[n].hist for n in ref_names])
    by_number: dict[int, list[str]] = {}
    for n in ref_names:
        num = reference[n].number
        if num is not None:
            by_number.setdefault(num, []).append(n)
    found: dict[str, tuple[str, int]] = {}
    for name, feat in images.items():
        # Histogram intersection: 1 for identical colour distributions.
        sim = np.minimum(ref_hist, feat.hist).sum(axis=1)
        cands = [ref_names[i] for i in np.argsort(-sim)[:k]]
        if feat.number is not None:
            for num in range(feat.number - window, feat.number + window + 1):
                cands.extend(by_number.get(num, []))
        best = ("", 0)
        for ref in dict.fromkeys(cands):
            inl = affine_inliers(feat, reference[ref])
            if inl > best[1]:
                best = (ref, inl)
        if best[1] >= min_inliers:
            found[name] = best
    log.info("%d of %d images show a reference scene", len(found), len(images))
    return found
