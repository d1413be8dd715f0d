"""External labelled image sources: declared in ``datasets/sources.yaml``, rebuilt from git snapshots.

No image of a third party is committed to this project. Each source names a public repository, the commit
its data was taken from, the folder inside it, its license and the class renames onto the canonical labels;
:func:`materialize` extracts that folder from a local git snapshot (``git archive`` of the pinned commit: a
moved branch changes nothing) and writes a YOLO dataset with canonical class ids, a ``README.md`` carrying the
license and attribution, and ``manifest.json`` with counts, ready for ``datasets pack --extra``.

Repositories on the ``excluded_sha256`` deny-list (they hold the project's acceptance set) are refused outright.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from datasets.neardup import Features, features, same_scenes
from datasets.yolo import IMAGE_SUFFIXES, DatasetError, names_block
from detector.types import CANONICAL_LABELS

log = logging.getLogger(__name__)

SOURCES_FILE = Path(__file__).resolve().parent / "sources.yaml"


class ExternalSource(BaseModel):
    """One external source (see ``datasets/sources.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    commit: str = Field(pattern=r"^[0-9a-f]{40}$")
    path: str
    license: str
    license_file: str
    attribution: str
    view: str
    names: dict[str, str] = Field(description="source class name -> canonical label (unlisted classes dropped)")
    splits: dict[str, list[str]] = Field(description="train/val -> folders under path (each with images/, labels/)")
    one_per_original: bool = Field(default=False, description="keep one of Roboflow's augmented copies "
                                   "(<original>_<ext>.rf.<hash>) per original image")
    extends: str | None = Field(default=None, description="a folder of ../shared/data taken from the same source: "
                                "its images are skipped here, and leave-one-source-out treats both as one source")
    drop_same_scene_as: list[str] = Field(default=[], description="folders under path whose scenes the train split "
                                          "must not show (datasets/neardup.py), e.g. the source's own valid/")


class SourcesFile(BaseModel):
    """The whole ``sources.yaml``."""

    model_config = ConfigDict(extra="forbid")

    excluded_sha256: list[str]
    sources: list[ExternalSource]


def repo_digest(repo: str) -> str:
    """The deny-list's key of a repository: SHA-256 of its lower-case ``owner/name``."""
    return hashlib.sha256(repo.lower().encode()).hexdigest()


def load_sources(path: Path = SOURCES_FILE) -> SourcesFile:
    """Read and check ``sources.yaml``; a listed source from an excluded repository is an error."""
    try:
        spec = SourcesFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise DatasetError(f"{path}: {exc}") from exc
    banned = {h.lower() for h in spec.excluded_sha256}
    for src in spec.sources:
        if repo_digest(src.repo) in banned:
            raise DatasetError(f"{path}: source {src.name} comes from {src.repo}, which is excluded")
        unknown = sorted(set(src.names.values()) - set(CANONICAL_LABELS))
        if unknown:
            raise DatasetError(f"{path}: source {src.name} maps onto unknown labels {unknown}")
    return spec


def snapshot_dir(mirror: Path, repo: str) -> Path:
    """The git directory of a repository's snapshot under ``mirror``.

    Accepts the fetch tool's layout (``mirror/owner+name/repo``), a bare clone (``mirror/owner+name``) or a
    working clone (``mirror/owner/name/.git``).
    """
    owner, name = repo.split("/")
    for cand in (mirror / f"{owner}+{name}" / "repo", mirror / f"{owner}+{name}", mirror / owner / name / ".git",
                 mirror / name / ".git"):
        if (cand / "HEAD").is_file() and (cand / "objects").is_dir():
            return cand
    raise DatasetError(f"no git snapshot of {repo} under {mirror} (fetch it first)")


def _extract(git_dir: Path, commit: str, path: str, parts: list[str]) -> dict[str, bytes]:
    """Files of ``parts`` (files or folders under ``path``) at ``commit``: path relative to ``path`` -> bytes.

    Only the parts named are read: a snapshot may lack its large files (weights, archives) elsewhere.
    """
    specs = sorted({str(PurePosixPath(path) / part) for part in parts})
    try:
        raw = subprocess.run(["git", f"--git-dir={git_dir}", "archive", "--format=tar", commit, *specs],
                             check=True, capture_output=True).stdout
    except subprocess.CalledProcessError as exc:
        raise DatasetError(f"{git_dir}: cannot read {path} at {commit}: {exc.stderr.decode(errors='replace')}") from exc
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                f = tar.extractfile(member)
                if f is not None:
                    out[str(PurePosixPath(member.name).relative_to(path))] = f.read()
    return out


def _source_names(files: dict[str, bytes], where: str) -> list[str]:
    spec = yaml.safe_load(files.get("data.yaml", b"") or b"{}")
    raw = spec.get("names") if isinstance(spec, dict) else None
    if isinstance(raw, dict):
        return [str(raw[k]) for k in sorted(raw, key=int)]
    if isinstance(raw, list):
        return [str(n) for n in raw]
    raise DatasetError(f"{where}: data.yaml has no class names")


def yolo_box(values: list[str]) -> str | None:
    """A YOLO label line's box ``cx cy w h`` (normalised), as given or as the bounds of a YOLO segmentation polygon
    (``cls x1 y1 x2 y2 ...``, at least three points); None for anything else or an empty box."""
    if len(values) == 5:
        return " ".join(values[1:])
    if len(values) < 7 or len(values) % 2 == 0:
        return None
    try:
        xy = np.clip(np.asarray(values[1:], np.float64).reshape(-1, 2), 0.0, 1.0)
    except ValueError:
        return None
    (x1, y1), (x2, y2) = xy.min(axis=0), xy.max(axis=0)
    if x2 <= x1 or y2 <= y1:
        return None
    return f"{(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}"


def original_of(stem: str) -> str:
    """The original image a Roboflow export's file came from (``12_jpg.rf.<hash>`` -> ``12_jpg``)."""
    return stem.split(".rf.")[0]


@dataclass
class _Chosen:
    """A split's image files (paths inside the source folder) and how many were already in ../shared/data."""

    files: list[str]
    already: int


def _choose(src: ExternalSource, files: dict[str, bytes], folders: list[str], already: set[str]) -> _Chosen:
    """A split's images in file-name order: one per original where asked, none that ``already`` holds."""
    seen: set[str] = set()
    chosen = _Chosen([], 0)
    for folder in folders:
        for rel in sorted(f for f in files if f.startswith(f"{folder}/images/")):
            p = PurePosixPath(rel)
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            original = original_of(p.stem)
            if src.one_per_original:
                if original in seen:
                    continue
                seen.add(original)
            if original in already:
                chosen.already += 1
                continue
            chosen.files.append(rel)
    return chosen


def extended_originals(src: ExternalSource, data: Path | None) -> set[str]:
    """Originals already in the ``../shared/data`` folder that ``src`` extends (any split), from its manifest."""
    if src.extends is None:
        return set()
    if data is None:
        raise DatasetError(f"source {src.name} extends {src.extends}: pass the folder of ../shared/data")
    path = data / src.extends / "manifest.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return {str(r["original"]) for r in rows}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"source {src.name} extends {src.extends}, but {path} cannot be read: {exc}") from exc


def _scene_features(files: dict[str, bytes], rels: list[str]) -> dict[str, Features]:
    out: dict[str, Features] = {}
    for rel in rels:
        img = cv2.imdecode(np.frombuffer(files[rel], np.uint8), cv2.IMREAD_COLOR)
        if img is not None:
            out[rel] = features(PurePosixPath(rel).name, np.asarray(img, np.uint8))
    return out


def _same_scene(src: ExternalSource, files: dict[str, bytes], train: list[str]) -> dict[str, tuple[str, int]]:
    """Train files (relative paths) showing a scene of the folders in ``src.drop_same_scene_as``."""
    if not src.drop_same_scene_as:
        return {}
    refs = [f for f in files for folder in src.drop_same_scene_as
            if f.startswith(f"{folder}/images/") and PurePosixPath(f).suffix.lower() in IMAGE_SUFFIXES]
    return same_scenes(_scene_features(files, train), _scene_features(files, refs))


def materialize(src: ExternalSource, mirror: Path, out: Path, data: Path | None = None) -> dict[str, object]:
    """Write one source as a canonical YOLO dataset under ``out/<name>``; returns its manifest.

    ``data`` is the folder of ``../shared/data``, needed by a source that ``extends`` one of its folders.
    """
    where = f"{src.repo}@{src.commit[:10]}:{src.path}"
    folders = [f for fs in src.splits.values() for f in fs] + src.drop_same_scene_as
    # Images and labels only: a folder may also hold a large cache file that a snapshot lacks.
    files = _extract(snapshot_dir(mirror, src.repo), src.commit, src.path,
                     [src.license_file, "data.yaml", *(f"{f}/{k}" for f in folders for k in ("images", "labels"))])
    if src.license_file not in files:
        raise DatasetError(f"{where}: license file {src.license_file} is missing")
    already = extended_originals(src, data)
    names = _source_names(files, where)
    remap = {i: CANONICAL_LABELS.index(src.names[n]) for i, n in enumerate(names) if n in src.names}
    dest = out / src.name
    if dest.exists():
        shutil.rmtree(dest)
    counts: dict[str, dict[str, int]] = {}
    skipped: dict[str, dict[str, object]] = {}
    for split, folders in src.splits.items():
        chosen = _choose(src, files, folders, already)
        skipped[split] = {"already_in_" + str(src.extends): chosen.already} if src.extends else {}
        if split == "train" and src.drop_same_scene_as:
            dropped = _same_scene(src, files, chosen.files)
            # Each dropped image with the reference image it matched and the inliers that proved it.
            skipped[split]["same_scene"] = {PurePosixPath(k).name: [PurePosixPath(v[0]).name, v[1]]
                                            for k, v in sorted(dropped.items())}
            chosen.files = [f for f in chosen.files if f not in dropped]
        boxes: dict[str, int] = {}
        n_images = 0
        for rel in chosen.files:
            p = PurePosixPath(rel)
            folder = rel.split("/images/")[0]
            label = files.get(f"{folder}/labels/{p.stem}.txt", b"").decode()
            rows = []
            for line in label.splitlines():
                v = line.split()
                box = yolo_box(v)
                if box is not None and int(v[0]) in remap:
                    cls = remap[int(v[0])]
                    rows.append(f"{cls} {box}\n")
                    boxes[CANONICAL_LABELS[cls]] = boxes.get(CANONICAL_LABELS[cls], 0) + 1
            img_dir, lbl_dir = dest / "images" / split, dest / "labels" / split
            img_dir.mkdir(parents=True, exist_ok=True)
            lbl_dir.mkdir(parents=True, exist_ok=True)
            if (img_dir / p.name).exists():
                raise DatasetError(f"{where}: {p.name} is in more than one folder of the {split} split")
            (img_dir / p.name).write_bytes(files[rel])
            (lbl_dir / f"{p.stem}.txt").write_text("".join(rows))
            n_images += 1
        counts[split] = {"images": n_images, **dict(sorted(boxes.items()))}
    for split in ("train", "val"):  # a source may add train images only; both folders exist for the yaml
        (dest / "images" / split).mkdir(parents=True, exist_ok=True)
        (dest / "labels" / split).mkdir(parents=True, exist_ok=True)
    listed = names_block()
    (dest / "data.yaml").write_text(f"train: images/train\nval: images/val\nnames:\n{listed}")
    manifest: dict[str, object] = {"name": src.name, "repo": src.repo, "commit": src.commit, "path": src.path,
                                   "license": src.license, "attribution": src.attribution, "view": src.view,
                                   "classes": sorted(set(src.names.values())), "counts": counts,
                                   "extends": src.extends, "skipped": skipped}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    (dest / "README.md").write_text(
        f"# {src.name}\n\nFrom https://github.com/{src.repo} at commit {src.commit}, folder `{src.path}`.\n\n"
        f"License: {src.license} (stated in `{src.license_file}` of that folder).\n\n{src.attribution}\n\n"
        f"View: {src.view}.\n\nCounts: {json.dumps(counts)}\n", encoding="utf-8")
    (dest / "LICENSE.txt").write_bytes(files[src.license_file])
    log.info("%s: %s", src.name, counts)
    return manifest


def materialize_all(mirror: Path, out: Path, only: list[str] | None = None,
                    sources_file: Path = SOURCES_FILE, data: Path | None = None) -> list[dict[str, object]]:
    """Materialize every source of ``sources.yaml`` (or those named in ``only``); ``data``: ../shared/data."""
    spec = load_sources(sources_file)
    chosen = [s for s in spec.sources if not only or s.name in only]
    missing = sorted(set(only or []) - {s.name for s in chosen})
    if missing:
        raise DatasetError(f"unknown sources {missing}; known: {[s.name for s in spec.sources]}")
    return [materialize(s, mirror, out, data) for s in chosen]
