"""``hmr data check PATH``: open any supported dataset, count what it holds and what is missing or corrupt,
and save a contact sheet of a few crops with their keypoints. ``hmr data synth``: write a synthetic set."""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="open a dataset, print its counts and problems, save a contact sheet",
                           description="Open a dataset (4D-Humans tars or a folder of them, a HMR 2.0 evaluation "
                           ".npz, a SMPLer TSV .yaml, or a folder written by hmr data synth), read every sample, "
                           "print counts and skips per reason, and save a contact sheet PNG. Exit code 1 when "
                           "samples were skipped as unreadable (filtered ones do not count).")  # fmt: skip
    check.add_argument("path", help="dataset path (shard pattern like 'dir/{000000..000009}.tar' in quotes)")
    check.add_argument("--image-root", default="", help=".npz only: the folder its imgname entries are relative to")
    check.add_argument("--out", type=Path, help="contact sheet PNG (default: <dataset>_check.png here)")
    check.add_argument("--num", type=int, default=16, help="crops on the contact sheet (default 16)")
    check.add_argument("--limit", type=int, default=0, help="read at most this many people per dataset (0: all)")
    check.add_argument("--no-filters", action="store_true", help="do not apply 4D-Humans' training filters to tars")
    check.set_defaults(run=run_check)
    synth = sub.add_parser("synth", help="render a synthetic dataset in 4D-Humans' tar format (+ an evaluation npz)",
                           description="Render people of the bundled body model (or SMPL) with complete ground "
                           "truth into OUT/train/NNNNNN.tar (4D-Humans' format) and OUT/eval/synth_eval.npz (HMR "
                           "2.0's evaluation layout); docs/data.md. Deterministic for a seed; an interrupted run "
                           "continues where it stopped.")  # fmt: skip
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--num", type=int, required=True, help="images to write (train + eval)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--body-model", help="an SMPL .pkl/.npz or a body model file (default: the bundled one)")
    synth.add_argument("--joint-regressor-extra", help="SMPL_to_J19.pkl for SMPL's 19 extra keypoints (else they are "
                       "written with confidence 0)")  # fmt: skip
    synth.add_argument("--backgrounds", type=Path, help="folder of .jpg/.png photos (default: procedural backgrounds)")
    synth.add_argument("--people-per-image", type=int, nargs="+", default=[1, 3], metavar="K",
                       help="people per image: K, or MIN MAX (default 1 3)")  # fmt: skip
    synth.add_argument("--image-size", nargs="+", default=None, metavar="WxH",
                       help="image sizes drawn from (default 640x480 480x640 512x512)")  # fmt: skip
    synth.add_argument("--shard-size", type=int, default=100, help="images per tar shard (default 100)")
    synth.add_argument("--eval-fraction", type=float, default=0.1, help="share of images in the eval split")
    synth.set_defaults(run=run_synth)


@dataclass
class CheckReport:
    """What ``hmr data check`` found in one dataset."""

    name: str
    path: str
    people: int = 0
    images: int = 0
    coverage: Counter = field(default_factory=Counter)  # field -> people that have it
    skipped: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"{self.name} ({self.path}): {self.people} people in {self.images} images"]
        if self.people:
            out.append("  " + ", ".join(f"{k} {v / self.people:.0%}" for k, v in sorted(self.coverage.items())))
        out.append("  skipped: " + (", ".join(f"{k} {v}" for k, v in self.skipped.items()) if self.skipped else "none"))
        return out


def dataset_specs(path: str, image_root: str = ""):
    """The datasets at ``path``: the path itself when it is one, else those one level inside a folder (the
    ``train/`` tars and ``eval/*.npz`` of a synthetic set)."""
    from hmr.data import DatasetSpec

    p = Path(path).expanduser()
    if not p.is_dir() or any(p.glob("*.tar")):
        return [DatasetSpec(path=path, image_root=image_root)]
    specs = [DatasetSpec(path=str(d)) for d in sorted(p.iterdir()) if d.is_dir() and any(d.glob("*.tar"))]
    specs += [DatasetSpec(path=str(f)) for f in sorted(p.glob("*/*.npz")) + sorted(p.glob("*.npz"))]
    specs += [DatasetSpec(path=str(f)) for f in sorted(p.glob("*.yaml")) + sorted(p.glob("*/*.yaml"))]
    if not specs:
        from hmr.data import DatasetLayoutError

        raise DatasetLayoutError(f"{p}: no dataset here (no .tar shards, evaluation .npz or TSV .yaml)")
    return specs


def check_dataset(spec, limit: int = 0, num: int = 16, filters: bool = True):
    """Read every person of one dataset: a CheckReport and up to ``num`` plain crops for the contact sheet."""
    from tqdm import tqdm

    from hmr.data import FilterConfig, SampleDataset, SkipCounter, open_reader

    skips = SkipCounter()
    reader = open_reader(spec, filters=FilterConfig(enabled=filters), skips=skips)
    ds = SampleDataset(reader, image_size=256, skips=skips)
    report = CheckReport(reader.name, spec.path)
    images, crops = set(), []
    total = len(ds) or None  # tars: unknown until read
    if limit:
        total = min(total, limit) if total else limit
    for s in tqdm(ds, desc=f"checking {reader.name}", total=total, unit="people", leave=False):
        report.people += 1
        images.add(s.key.rsplit("/", 1)[0])
        cov = report.coverage
        cov["2d keypoints"] += bool((s.keypoints_2d[:, 2] > 0).any())
        cov["3d keypoints"] += bool((s.keypoints_3d[:, 3] > 0).any())
        cov["smpl pose"] += bool(s.has_body_pose)
        cov["betas"] += bool(s.has_betas)
        cov["camera"] += bool(s.has_camera)
        cov["mask"] += bool(not s.mask.all())
        if len(crops) < num:
            crops.append(s)
        if limit and report.people >= limit:
            break
    report.images = len(images)
    report.skipped = ds.skips.counts()
    return report, crops


def contact_sheet(samples, columns: int = 4) -> np.ndarray:
    """Crops in a grid with their 2D keypoints (OpenPose 25 by side colours, the 19 extra joints in white)
    and each sample's key; RGB uint8."""
    import cv2

    from hmr.render import draw_keypoints

    tiles = []
    for s in samples:
        tile = draw_keypoints(s.image, s.keypoints_2d[:25], "openpose25")
        tile = draw_keypoints(tile, s.keypoints_2d[25:], "extra19", color=(255, 255, 255), radius=2, thickness=1)
        cv2.putText(tile, s.key[-30:], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    size = tiles[0].shape[0] if tiles else 256
    rows = max(1, -(-len(tiles) // columns))
    sheet = np.full((rows * size, min(columns, max(len(tiles), 1)) * size, 3), 40, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * size : (r + 1) * size, c * size : (c + 1) * size] = t
    return sheet


def run_check(args: argparse.Namespace) -> int:
    from hmr.io.exports import write_png

    reports, crops = [], []
    for spec in dataset_specs(args.path, args.image_root):
        report, some = check_dataset(spec, args.limit, args.num, filters=not args.no_filters)
        reports.append(report)
        crops += some[: max(1, args.num // 2) if len(crops) else args.num]
        print("\n".join(report.lines()))
    out = args.out or Path(f"{reports[0].name}_check.png")
    if crops:
        write_png(out, contact_sheet(crops[: args.num]))
        print(f"contact sheet: {out}")
    unreadable = sum(n for r in reports for k, n in r.skipped.items() if k != "filtered")
    return 1 if unreadable else 0


def _size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or int(w) < 16 or int(h) < 16:
        raise ValueError(f"--image-size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 640x480")
    return int(w), int(h)


def run_synth(args: argparse.Namespace) -> int:
    from hmr.data.synth import DEFAULT_IMAGE_SIZES, generate

    model = None
    if args.body_model:
        from hmr.body import load_body_model

        model = load_body_model(args.body_model, joint_regressor_extra=args.joint_regressor_extra)
    k = args.people_per_image
    if len(k) > 2 or min(k) < 1:
        raise ValueError(f"--people-per-image takes K or MIN MAX (at least 1), got {' '.join(map(str, k))}")
    sizes = [_size(t) for t in args.image_size] if args.image_size else DEFAULT_IMAGE_SIZES
    s = generate(args.out, args.num, body_model=model, seed=args.seed, backgrounds=args.backgrounds,
                 people_per_image=k[0] if len(k) == 1 else (k[0], k[1]), image_size=sizes,
                 shard_size=args.shard_size, eval_fraction=args.eval_fraction)  # fmt: skip
    print(f"{s.out_dir}: {s.train_images} train images ({s.train_people} people) in {s.shards} shards "
          f"({s.shards_skipped} already there), {s.eval_images} eval images ({s.eval_people} people), "
          f"{s.seconds:.1f} s")  # fmt: skip
    return 0
