"""Privacy masks of shared evidence: which regions, the subject's exemption, and that detail is really gone."""

from __future__ import annotations

import errno
import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from detector.privacy import (
    MaskRegion,
    PrivacySettings,
    apply_mask,
    head_box,
    mask_regions,
    masked,
    plate_band_box,
    region_mask,
)
from detector.types import CANONICAL_LABELS
from pipelines.privacy import EvidenceMasker, MaskedNotStored, MaskerSettings, MaskingError, shared_path, subject_of
from tests.helpers.detections import FakeBackend, make_detections

NAMES = list(CANONICAL_LABELS)


def checkerboard(h: int = 240, w: int = 320, cell: int = 2) -> np.ndarray:
    """A high-detail image: any masking shows as lost contrast."""
    yy, xx = np.mgrid[0:h, 0:w]
    board = (((yy // cell) + (xx // cell)) % 2 * 255).astype(np.uint8)
    return np.ascontiguousarray(np.dstack([board] * 3))


def detail(img: np.ndarray, box: tuple[int, int, int, int]) -> float:
    x1, y1, x2, y2 = box
    return float(img[y1:y2, x1:x2].astype(np.float32).std())


def test_head_and_plate_band_geometry() -> None:
    s = PrivacySettings(head_share=0.3, head_widen=0.1, plate_band=0.5)
    assert head_box((100, 100, 140, 200), s) == pytest.approx((96, 100, 144, 130))
    assert plate_band_box((0, 0, 200, 100), s) == pytest.approx((0, 50, 200, 100))


def test_faces_always_plates_of_other_vehicles_only() -> None:
    det = make_detections([(10, 10, 30, 80, 0.9, "person"), (100, 50, 200, 120, 0.8, "car"),
                           (220, 40, 310, 130, 0.9, "truck"), (0, 0, 5, 5, 0.9, "garbage")])
    subject = (221.0, 41.0, 309.0, 131.0)  # the truck is the case
    regions = mask_regions(det, NAMES, subject)
    assert [r.kind for r in regions] == ["face", "plate"]
    assert regions[1].box == pytest.approx((100, 85, 200, 120))
    # Without a subject every vehicle's plate is masked; switched off, none.
    assert [r.kind for r in mask_regions(det, NAMES, None)] == ["face", "plate", "plate"]
    assert mask_regions(det, NAMES, None, PrivacySettings(faces=False, plates=False)) == []


def test_confidence_thresholds_differ_for_people_and_vehicles() -> None:
    det = make_detections([(10, 10, 30, 80, 0.06, "person"), (100, 50, 200, 120, 0.1, "car")])
    kinds = [r.kind for r in mask_regions(det, NAMES, None)]
    assert kinds == ["face"]  # a faint person is masked, a faint car's band is not (it is a large patch)
    assert mask_regions(det, NAMES, None, PrivacySettings(person_confidence=0.1)) == []


def test_plate_masks_leave_the_subject_alone_but_faces_do_not() -> None:
    subject = (50.0, 50.0, 100.0, 100.0)
    regions = [MaskRegion((0, 60, 80, 100), "plate"), MaskRegion((60, 50, 70, 60), "face")]
    m = region_mask((120, 160), regions, subject)
    assert m[70, 10] and not m[70, 60]  # plate band stops at the subject's box
    assert m[55, 65]  # the face inside it is masked


def test_masked_regions_lose_their_detail_and_nothing_else_changes() -> None:
    img = checkerboard()
    det = make_detections([(40, 40, 80, 200, 0.9, "person"), (150, 100, 300, 220, 0.9, "car")])
    out, regions = masked(img, det, NAMES, None)
    assert len(regions) == 2
    head = (40, 40, 80, 88)
    band = (150, 160, 300, 220)
    assert detail(img, head) > 100 and detail(out, head) < 0.25 * detail(img, head)
    assert detail(out, band) < 0.25 * detail(img, band)
    assert np.array_equal(out[10:90, 200:300], img[10:90, 200:300])  # away from the masks nothing changes
    assert np.array_equal(apply_mask(img, [], None), img)


def write_clip(path: Path, frames: int = 12) -> None:
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=4)
        st.width, st.height, st.pix_fmt = 320, 240, "yuv420p"
        st.time_base = st.codec_context.time_base = Fraction(1, 1000)
        for k in range(frames):
            vf = av.VideoFrame.from_ndarray(checkerboard(), format="bgr24")
            vf.pts, vf.time_base = [0, 1000, 2000, 2250, 2375, 2500][k % 6] + 3000 * (k // 6), Fraction(1, 1000)
            for p in st.encode(vf):
                out.mux(p)
        for p in st.encode():
            out.mux(p)


def test_masker_writes_masked_copies_once_and_keeps_originals(tmp_path: Path) -> None:
    person = make_detections([(40, 40, 80, 200, 0.9, "person")])
    backend = FakeBackend(fixed=person)
    masker = EvidenceMasker(None, MaskerSettings(clip_fps=8), backend=backend)  # the clip's frames are 1/8 s apart
    snap = tmp_path / "c1.jpg"
    cv2.imwrite(str(snap), checkerboard(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    (tmp_path / "c1_frame.json").write_text(json.dumps({"box": [150, 100, 300, 220]}))
    original = snap.read_bytes()
    out = masker.shared(snap)
    assert out == shared_path(snap) == tmp_path / "c1.shared.jpg" and snap.read_bytes() == original
    assert subject_of(snap) == (150, 100, 300, 220)
    shared = cv2.imread(str(out))
    assert detail(shared, (40, 40, 80, 88)) < 0.25 * detail(checkerboard(), (40, 40, 80, 88))
    calls = backend.calls
    assert masker.shared(snap) == out and backend.calls == calls  # made once

    clip = tmp_path / "c1.mp4"
    write_clip(clip)
    out_clip = masker.shared(clip, "garbage")
    with av.open(str(clip)) as a, av.open(str(out_clip)) as b:
        times_a = [round(f.time, 3) for f in a.decode(video=0)]
        frames_b = list(b.decode(video=0))
        assert [round(f.time, 3) for f in frames_b] == times_a  # the time-lapse's uneven timing is kept
        for f in frames_b:
            img = f.to_ndarray(format="bgr24")
            assert detail(img, (40, 40, 80, 88)) < 0.35 * detail(checkerboard(), (40, 40, 80, 88))
            assert detail(img, (200, 10, 300, 90)) > 60  # outside the masks the detail stays


def test_a_live_frame_is_masked_without_a_subject() -> None:
    car = make_detections([(150, 100, 300, 220, 0.9, "car")])
    masker = EvidenceMasker(None, backend=FakeBackend(fixed=car))
    ok, jpg = cv2.imencode(".jpg", checkerboard(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    out = cv2.imdecode(np.frombuffer(masker.mask_jpeg(bytes(jpg)), np.uint8), cv2.IMREAD_COLOR)
    assert detail(out, (150, 160, 300, 220)) < 0.25 * detail(checkerboard(), (150, 160, 300, 220))
    with pytest.raises(MaskingError):
        masker.mask_jpeg(b"not a jpeg")


def test_unreadable_evidence_is_a_clear_error_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    masker = EvidenceMasker(None, backend=FakeBackend())
    bad = tmp_path / "c2.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(MaskingError, match=r"c2\.mp4"):
        masker.shared(bad)
    bad_jpg = tmp_path / "c3.jpg"
    bad_jpg.write_bytes(b"\xff\xd8 broken")
    with pytest.raises(MaskingError, match=r"c3\.jpg"):
        masker.shared(bad_jpg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c2.mp4", "c3.jpg"]


def test_a_full_disk_leaves_no_part_file_and_the_masked_image_is_still_given(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    snap = tmp_path / "c4.jpg"
    cv2.imwrite(str(snap), checkerboard())
    real_write = Path.write_bytes

    def full(path: Path, data: bytes) -> int:
        if path.name.endswith(".part.jpg"):
            real_write(path, data[:100])  # what a disk running out midway leaves
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    car = make_detections([(150, 100, 300, 220, 0.9, "car")])
    with pytest.raises(MaskedNotStored, match=r"cannot write c4\.shared\.jpg") as caught:
        EvidenceMasker(None, backend=FakeBackend(fixed=car)).shared(snap)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c4.jpg"]
    served = cv2.imdecode(np.frombuffer(caught.value.content, np.uint8), cv2.IMREAD_COLOR)
    assert served.shape == checkerboard().shape  # the whole image, masked: the car's plate band lost its detail
    assert detail(served, (150, 160, 300, 220)) < 0.25 * detail(checkerboard(), (150, 160, 300, 220))


def test_time_lapse_frames_are_each_looked_at(tmp_path: Path) -> None:
    # Frames a second apart: a person who moved is masked where they are now, not where they were.
    clip = tmp_path / "c5.mp4"
    with av.open(str(clip), "w") as out:
        st = out.add_stream("libx264", rate=1)
        st.width, st.height, st.pix_fmt = 320, 240, "yuv420p"
        st.time_base = st.codec_context.time_base = Fraction(1, 1000)
        for k in range(4):
            vf = av.VideoFrame.from_ndarray(checkerboard(), format="bgr24")
            vf.pts, vf.time_base = 1000 * k, Fraction(1, 1000)
            for p in st.encode(vf):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    left = make_detections([(20, 40, 60, 200, 0.9, "person")])
    right = make_detections([(240, 40, 280, 200, 0.9, "person")])
    sizes = len(EvidenceMasker(None, backend=FakeBackend()).settings.sizes)
    masker = EvidenceMasker(None, backend=FakeBackend(script=[left] * sizes + [right] * 100))
    with av.open(str(masker.shared(clip, "garbage"))) as b:
        frames = [f.to_ndarray(format="bgr24") for f in b.decode(video=0)]
    head_right = (244, 40, 276, 100)
    assert detail(frames[0], head_right) > 60  # nobody there yet
    for img in frames[1:]:
        assert detail(img, head_right) < 0.35 * detail(checkerboard(), head_right)


def test_a_model_without_people_or_cars_is_refused() -> None:
    backend = FakeBackend()
    backend.names = ["garbage", "truck"]
    with pytest.raises(MaskingError, match="person"):
        EvidenceMasker(None, backend=backend)


def test_a_stream_copied_clip_is_shared_thinned_smaller_and_with_the_subject_scaled(tmp_path: Path) -> None:
    # A camera's own 25 fps 1280x720 clip; the case's box was recorded on a 480x270 frame.
    clip = tmp_path / "c6.mp4"
    board = checkerboard(720, 1280, cell=8)
    with av.open(str(clip), "w") as out:
        st = out.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = 1280, 720, "yuv420p"
        for k in range(50):
            vf = av.VideoFrame.from_ndarray(board, format="bgr24")
            vf.pts = k
            for p in st.encode(vf):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    (tmp_path / "c6_frame.json").write_text(json.dumps({"box": [225, 150, 450, 250], "width": 480, "height": 270}))
    # On the masked copy's 960x540 frames: the subject's car (the case's box, scaled) and another car.
    cars = make_detections([(450, 300, 900, 500, 0.9, "car"), (20, 300, 300, 500, 0.9, "car")])
    masker = EvidenceMasker(None, backend=FakeBackend(fixed=cars))
    with av.open(str(masker.shared(clip, "garbage"))) as b:
        st = b.streams.video[0]
        assert (st.codec_context.width, st.codec_context.height) == (960, 540)
        frames = [(float(f.time or 0), f.to_ndarray(format="bgr24")) for f in b.decode(st)]
    assert 3 <= len(frames) <= 5 and frames[-1][0] >= 1.4  # 2 a second (the default) over the clip's 2 s
    for _, img in frames:
        assert detail(img, (470, 420, 880, 495)) > 60  # the subject keeps its plate
        assert detail(img, (40, 420, 280, 495)) < 0.35 * detail(board, (40, 420, 280, 495))  # the other does not


def test_a_snapshot_and_its_clean_frame_are_detected_once(tmp_path: Path) -> None:
    person = make_detections([(40, 40, 80, 200, 0.9, "person")])
    backend = FakeBackend(fixed=person)
    masker = EvidenceMasker(None, backend=backend)
    for name in ("c7.jpg", "c7_frame.jpg"):
        cv2.imwrite(str(tmp_path / name), checkerboard(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    (tmp_path / "c7_frame.json").write_text(json.dumps({"box": [150, 100, 300, 220], "width": 320, "height": 240}))
    masker.shared(tmp_path / "c7.jpg")
    calls = backend.calls
    assert calls == len(masker.settings.sizes)  # on the clean frame, at each size
    frame = cv2.imread(str(masker.shared(tmp_path / "c7_frame.jpg")))
    assert backend.calls == calls  # the clean frame's masks were already known
    assert detail(frame, (40, 40, 80, 88)) < 0.25 * detail(checkerboard(), (40, 40, 80, 88))
