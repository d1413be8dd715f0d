"""A site's own labelled images mixed with a replay sample of a model's training pack, for fine-tuning.

A bureau whose streets the shipped model reads poorly labels frames of its own cameras (or reviews cases:
``datasets from-reviews``), packs them with the teacher's context labels (``datasets pack --data EMPTY --extra
SITE --synth 0 --teacher``) and fine-tunes the shipped weights on them. Fine-tuning on the site alone forgets
what the site does not show (smoke, trucks, stalls), so the site's images are mixed with a sample of the
model's own training pack (``make data``): ``datasets mix`` writes that folder, ``train --model
models/default/model.pt --data FOLDER`` fine-tunes, and the site's validation images score it. Measured in
:mod:`pipelines.evaluation.adapt`.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from datasets.yolo import IMAGE_SUFFIXES, DatasetError, YoloDataset, label_path, names_block


def pack_names(pack: Path) -> list[str]:
    """The class names of a pack's ``data.yaml``, in class-id order."""
    names = YoloDataset.load(pack / "data.yaml").names
    return [names[i] for i in sorted(names)]


def common_names(site: Path, replay: Path) -> list[str]:
    """The class names the site pack and the replay pack share (both must name every class alike)."""
    names = pack_names(site)
    if pack_names(replay) != names:
        raise DatasetError(f"{site} and {replay} name their classes differently")
    return names


def pack_images(pack: Path, role: str, sources: list[str] | None = None) -> list[Path]:
    """The images of a pack's ``images/<role>_<source>`` folders (every source, or those named), sorted."""
    folders = sorted(d for d in (pack / "images").glob(f"{role}_*") if d.is_dir())
    if sources is not None:
        wanted = {f"{role}_{s}" for s in sources}
        missing = wanted - {d.name for d in folders}
        if missing:
            raise DatasetError(f"{pack}: no image folder {sorted(missing)}")
        folders = [d for d in folders if d.name in wanted]
    return sorted(p for d in folders for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def first_k(images: list[Path], k: int, seed: int) -> list[Path]:
    """The first ``k`` of ``images`` in one shuffle fixed by ``seed`` (so a smaller set is part of a larger)."""
    if k > len(images):
        raise DatasetError(f"asked for {k} images, there are {len(images)}")
    order = sorted(images)
    random.Random(seed).shuffle(order)
    return order[:k]


def role_dirs(out: Path, role: str) -> tuple[Path, Path]:
    """Make and return a YOLO folder's ``images/<role>`` and ``labels/<role>``."""
    img_dir, lbl_dir = out / "images" / role, out / "labels" / role
    img_dir.mkdir(parents=True, exist_ok=True)
    lbl_dir.mkdir(parents=True, exist_ok=True)
    return img_dir, lbl_dir


def link_image(image: Path, img_dir: Path, prefix: str) -> Path:
    """Link ``image`` into ``img_dir`` as ``<prefix>__<name>`` (kept if there already) and return the link."""
    link = img_dir / f"{prefix}__{image.name}"
    if not link.exists():
        os.symlink(image.resolve(), link)
    return link


def _link(images: list[Path], out: Path, role: str) -> None:
    """Link images and copy their label files into ``out/images/<role>`` and ``out/labels/<role>``, replacing
    what an earlier mix wrote there (links and label copies only: the images they point at stay)."""
    for old in (out / "images" / role, out / "labels" / role):
        shutil.rmtree(old, ignore_errors=True)
    img_dir, lbl_dir = role_dirs(out, role)
    for img in images:
        link = link_image(img, img_dir, img.parent.name)
        label = label_path(img)
        (lbl_dir / f"{link.stem}.txt").write_text(label.read_text() if label.is_file() else "")


def write_mix(site_train: list[Path], site_val: list[Path], replay: list[Path], names: list[str],
              out: Path, site_repeat: int = 1) -> tuple[Path, Path]:
    """Write the fine-tuning folder: site and replay images for training, the site's held-out images for
    Ultralytics' per-epoch validation. Returns ``(data.yaml, site.yaml)``; the second lists the held-out
    site images alone, for scoring. Images are linked, not copied (the folder is read where the packs are);
    label files are copied (an image without one is a background image). ``site_repeat``: the site's folder
    is listed this many times, so an epoch shows each site image as often (a few site images among many
    replay images would otherwise barely move the weights)."""
    if site_repeat < 1:
        raise DatasetError(f"site_repeat must be at least 1, not {site_repeat}")
    _link(site_train, out, "site")
    _link(replay, out, "replay")
    _link(site_val, out, "site_val")
    header = names_block(names)
    train = ", ".join([*(["images/site"] * site_repeat if site_train else []), *(["images/replay"] if replay else [])])
    (out / "data.yaml").write_text(f"train: [{train}]\nval: images/site_val\nnames:\n{header}")
    (out / "site.yaml").write_text(f"train: images/site_val\nval: images/site_val\nnames:\n{header}")
    return out / "data.yaml", out / "site.yaml"


def mix(site: Path, replay: Path, out: Path, site_images: int = 0, replay_images: int = 800,
        replay_sources: list[str] | None = None, seed: int = 0, site_repeat: int = 1) -> tuple[Path, Path]:
    """``datasets mix``: the first ``site_images`` training images of the ``site`` pack (0: all) and
    ``replay_images`` of ``replay``'s training images (of ``replay_sources``, or every source), with the
    site's validation images to score on; the site listed ``site_repeat`` times. Returns :func:`write_mix`'s
    paths.

    Raises:
        DatasetError: The packs name their classes differently, the site has no training or no validation
            images, or a pack holds fewer images than asked for.
    """
    names = common_names(site, replay)
    train = pack_images(site, "train")
    if not train:
        raise DatasetError(f"{site}: no training images (images/train_*)")
    val = pack_images(site, "val")
    if not val:
        raise DatasetError(f"{site}: no validation images (images/val_*) to score the fine-tune on")
    kept = first_k(train, site_images or len(train), seed)
    sample = first_k(pack_images(replay, "train", replay_sources), replay_images, seed)
    return write_mix(kept, val, sample, names, out, site_repeat)
