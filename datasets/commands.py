"""The dataset layer's commands: ``synth`` and ``datasets import|export|check|merge|mix|paste|materialize``.

Registered into the ``streetwatch`` command line by :mod:`service.cli`; ``datasets pack`` (it needs the
COCO teacher) is registered by :mod:`models.commands`, ``datasets from-reviews`` (it reads the case store)
by :mod:`service.commands`.

Each command imports what it runs when it runs (why: :mod:`service.cli`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from datasets import SHARED_DATA
from datasets.formats import FORMATS, parse_renames

log = logging.getLogger("streetwatch")

if TYPE_CHECKING:
    #: The ``add_parser`` handle of a command group (argparse's own action type).
    Subcommands: TypeAlias = argparse._SubParsersAction[Any]
    #: Command groups shared between packages (``datasets``, ``evaluate``), by name.
    Groups: TypeAlias = dict[str, Subcommands]


def cmd_synth(args: argparse.Namespace) -> int:
    """Render synthetic images and/or clips."""
    from datasets.clips import write_clip_set, write_regression_set
    from datasets.synth import write_yolo_dataset

    if args.n:
        path = write_yolo_dataset(args.out, args.n, args.seed, width=args.width, height=args.height,
                                  renderer=args.renderer)
        sys.stdout.write(f"images: {path}\n")
    if args.regression_set:
        sys.stdout.write(f"clips: {write_regression_set(args.out)}\n")
    if args.clips:
        labels = write_clip_set(args.out / "clips", args.clips, args.clip_seconds, args.fps,
                                args.clip_width, args.clip_height, args.seed)
        sys.stdout.write(f"clips: {labels}\n")
    return 0


def cmd_materialize(args: argparse.Namespace) -> int:
    """Rebuild the external sources of datasets/sources.yaml from their git snapshots."""
    from datasets.external import materialize_all

    for m in materialize_all(args.mirror, args.out, args.only or None, data=args.data):
        sys.stdout.write(f"{args.out / str(m['name'])}: {m['license']}, {m['counts']}\n")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import a labelled dataset of any supported format into a canonical YOLO dataset."""
    from datasets.formats import assign_splits, canonical, read_any, write_yolo

    records = read_any(args.format, args.src, args.images, args.video, args.out / "_frames")
    records = canonical(records, parse_renames(args.names), args.drop_unknown)
    assign_splits(records, args.val_fraction, args.seed)
    data_yaml, _ = write_yolo(records, args.out)
    sys.stdout.write(f"dataset: {data_yaml} ({len(records)} images)\n")
    return 0


def cmd_export_dataset(args: argparse.Namespace) -> int:
    """Export a YOLO dataset as COCO JSON (one file per split) or as a copy in YOLO format."""
    from datasets.formats import read_yolo, write_coco, write_yolo

    records = read_yolo(args.data)
    if args.format == "coco":
        for split in sorted({r.split or "train" for r in records}):
            path = write_coco([r for r in records if r.split == split], args.out / f"{split}.json",
                              relative_to=args.data.parent)
            sys.stdout.write(f"coco: {path}\n")
    else:
        data_yaml, _ = write_yolo(records, args.out)
        sys.stdout.write(f"dataset: {data_yaml}\n")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Check a dataset and write its card."""
    from datasets.check import check_dataset, write_card

    report = check_dataset(args.data, args.near_bits)
    out = args.out or args.data.parent / "card"
    _, md = write_card(report, out)
    for p in report["problems"][:20]:
        log.warning("%s: %s", p["file"], p["problem"])
    d = report["duplicates"]
    log.info("%s: %s images, %d problems, %d exact duplicate groups, %d near-duplicate pairs (%d across splits)",
             args.data, {s: c["images"] for s, c in report["counts"].items()}, len(report["problems"]),
             len(d["exact_groups"]), len(d["near_pairs"]), d["near_across_splits"])
    sys.stdout.write(f"card: {md}\n")
    return 0 if report["ok"] else 4


def cmd_merge(args: argparse.Namespace) -> int:
    """Merge YOLO datasets with provenance and a near-duplicate-aware split."""
    from datasets.check import sources_and_licenses
    from datasets.formats import read_yolo
    from datasets.merge import MergeSource, merge

    sources = [MergeSource(p.parent.name, read_yolo(p), sources_and_licenses(p)[0]["license"]) for p in args.data]
    manifest = merge(sources, args.out, parse_renames(args.names), args.val_fraction, args.near_bits, args.seed,
                     args.drop_unknown)
    sys.stdout.write(f"dataset: {args.out / 'data.yaml'} ({len(manifest['files'])} images, "
                     f"{manifest['groups']} groups)\n")
    return 0


def _add_synth(sub: Subcommands) -> None:
    s = sub.add_parser("synth", help="render synthetic labelled street scenes and clips")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--n", type=int, default=0, help="number of images")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--width", type=int, default=640)
    s.add_argument("--height", type=int, default=384)
    s.add_argument("--renderer", choices=("auto", "gl", "cpu"), default="auto",
                   help="gl: OpenGL (Mesa llvmpipe or a GPU, via EGL); cpu: painter's algorithm; auto: gl if it works")
    s.add_argument("--clips", type=int, default=0, help="number of labelled clips")
    s.add_argument("--clip-seconds", type=float, default=30.0)
    s.add_argument("--fps", type=float, default=10.0)
    s.add_argument("--clip-width", type=int, default=1280)
    s.add_argument("--clip-height", type=int, default=720)
    s.add_argument("--regression-set", action="store_true",
                   help="write the committed regression clips (tests/data/clips) into --out")
    s.set_defaults(func=cmd_synth)


def _add_import_export(dsub: Subcommands) -> None:
    mt = dsub.add_parser("materialize", help="rebuild the external sources of datasets/sources.yaml from git snapshots")
    mt.add_argument("--mirror", type=Path, required=True, help="folder of git snapshots (owner+name/repo, or clones)")
    mt.add_argument("--out", type=Path, required=True)
    mt.add_argument("--only", nargs="*", default=[], help="source names (default: all)")
    mt.add_argument("--data", type=Path, default=SHARED_DATA,
                    help="../shared/data, whose folders a source may extend (default: beside the checkout)")
    mt.set_defaults(func=cmd_materialize)
    im = dsub.add_parser("import", help="import COCO, VOC, CVAT, Label Studio or YOLO labels as canonical YOLO")
    im.add_argument("--format", choices=FORMATS, required=True)
    im.add_argument("--src", type=Path, required=True, help="label file (or VOC folder, or YOLO data.yaml)")
    im.add_argument("--images", type=Path, help="image folder (default: beside the label file)")
    im.add_argument("--video", type=Path, help="the video of a CVAT for video export")
    im.add_argument("--out", type=Path, required=True)
    im.add_argument("--names", nargs="*", default=[], metavar="OLD=NEW")
    im.add_argument("--drop-unknown", action="store_true", help="drop labels that map to no canonical name")
    im.add_argument("--val-fraction", type=float, default=0.2)
    im.add_argument("--seed", type=int, default=0)
    im.set_defaults(func=cmd_import)
    ex = dsub.add_parser("export", help="export a YOLO dataset as COCO JSON or a YOLO copy")
    ex.add_argument("--data", type=Path, required=True)
    ex.add_argument("--format", choices=["coco", "yolo"], required=True)
    ex.add_argument("--out", type=Path, required=True)
    ex.set_defaults(func=cmd_export_dataset)


def _add_check_merge(dsub: Subcommands) -> None:
    ck = dsub.add_parser("check", help="check labels, images, duplicates and balance; write a dataset card")
    ck.add_argument("data", type=Path, help="data.yaml")
    ck.add_argument("--out", type=Path, help="card folder (default: beside data.yaml)")
    ck.add_argument("--near-bits", type=int, default=4, help="dHash distance of near-duplicates")
    ck.set_defaults(func=cmd_check)
    mg = dsub.add_parser("merge", help="merge YOLO datasets with provenance and a duplicate-aware split")
    mg.add_argument("data", type=Path, nargs="+", help="data.yaml of each source")
    mg.add_argument("--out", type=Path, required=True)
    mg.add_argument("--names", nargs="*", default=[], metavar="OLD=NEW")
    mg.add_argument("--drop-unknown", action="store_true")
    mg.add_argument("--val-fraction", type=float, default=0.2)
    mg.add_argument("--near-bits", type=int, default=4)
    mg.add_argument("--seed", type=int, default=0)
    mg.set_defaults(func=cmd_merge)
    mx = dsub.add_parser("mix", help="a site's pack mixed with a replay sample of a training pack, to fine-tune on")
    mx.add_argument("--site", type=Path, required=True, help="pack of the site's own labelled images")
    mx.add_argument("--replay", type=Path, required=True, help="the model's training pack (make data: data/pack)")
    mx.add_argument("--replay-sources", nargs="*", help="its sources to replay (default: every train_* folder)")
    mx.add_argument("--replay-images", type=int, default=800, help="replay images drawn from them")
    mx.add_argument("--site-images", type=int, default=0, help="site training images to use (0: all)")
    mx.add_argument("--site-repeat", type=int, default=1, help="list the site's images this many times")
    mx.add_argument("--seed", type=int, default=0)
    mx.add_argument("--out", type=Path, required=True)
    mx.set_defaults(func=cmd_mix)
    ps = dsub.add_parser("paste", help="real objects cut from labelled photos, pasted onto real street frames")
    ps.add_argument("--objects", type=Path, nargs="+", required=True,
                    help="data.yaml of the sources the objects are cut from (their train split)")
    ps.add_argument("--backgrounds", type=Path, nargs="+", required=True,
                    help="data.yaml of the sources whose train frames they are pasted onto (frames without them)")
    ps.add_argument("--classes", nargs="+", default=["garbage"], help="the classes cut and pasted")
    ps.add_argument("--n", type=int, default=700, help="training frames written (and a twentieth as many for val)")
    ps.add_argument("--seed", type=int, default=0)
    ps.add_argument("--out", type=Path, required=True)
    ps.set_defaults(func=cmd_paste)


def cmd_mix(args: argparse.Namespace) -> int:
    """Write a fine-tuning folder of a site's images and a replay sample."""
    from datasets.mix import mix

    data, site = mix(args.site, args.replay, args.out, args.site_images, args.replay_images, args.replay_sources,
                     args.seed, args.site_repeat)
    sys.stdout.write(f"train on: {data}\nscore on: {site}\n")
    return 0


def cmd_paste(args: argparse.Namespace) -> int:
    """Write a folder of street frames with real objects pasted in."""
    from datasets.paste import write_pasted

    data = write_pasted(args.out, args.objects, args.backgrounds, args.classes, args.n, args.seed)
    sys.stdout.write(f"dataset: {data}\n")
    return 0


def register(sub: Subcommands, groups: Groups) -> None:
    """Add ``synth`` and the ``datasets`` group (stored in ``groups``) to the command line."""
    _add_synth(sub)
    d = sub.add_parser("datasets", help="dataset tools")
    dsub = d.add_subparsers(dest="datasets_command", required=True)
    groups["datasets"] = dsub
    _add_import_export(dsub)
    _add_check_merge(dsub)
