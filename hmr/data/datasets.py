"""Torch datasets over the readers: crops and augmentation in DataLoader workers, weighted mixing of several
datasets (4D-Humans' recipe), bad samples skipped and counted, deterministic for a seed and an epoch.

Every dataset here is an ``IterableDataset`` yielding :class:`~hmr.data.sample.Sample`; batch them with
``DataLoader(ds, batch_size, num_workers=..., collate_fn=hmr.data.collate)``. Work is split over DDP ranks
(``torch.distributed`` when initialised) and DataLoader workers. Call ``set_epoch(e)`` before each epoch
(with non-persistent workers) for a different, reproducible shuffle and augmentation per epoch.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from hmr.data.augment import AugmentConfig, make_sample
from hmr.data.errors import BadSample, DatasetLayoutError, SkipCounter
from hmr.data.fields import FilterConfig
from hmr.data.sample import Sample
from hmr.data.workers import rank_world, worker


@dataclass
class DatasetSpec:
    """One dataset of a mix."""

    path: str = ""  # tar shards (brace pattern or folder), an evaluation .npz, or a SMPLer TSV .yaml
    name: str = ""  # label in logs and reports (default: from the path)
    weight: float = 1.0  # mixing weight (normalised over the mix)
    image_root: str = ""  # .npz only: the folder its imgname entries are relative to (default: the npz's)
    filters: bool = True  # apply DataConfig.filters (4D-Humans' low1); evaluation readers ignore it


@dataclass
class DataConfig:
    """Data for training and evaluation; recipes set it in their ``data`` section."""

    root: str = ""  # relative dataset paths are under this folder
    train: tuple[DatasetSpec, ...] = ()
    val: tuple[DatasetSpec, ...] = ()
    mocap: str = ""  # the discriminator's mocap npz (cmu_mocap.npz)
    image_size: int = 256  # crop side: 256 for HMR 2.0, 224 for SMPL-Pose
    eval_bbox_shape: tuple[int, ...] = (192, 256)  # evaluation crops pad boxes to this aspect (w, h); () for none
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    batch_size: int = 48
    num_workers: int = 2
    epoch_size: int = 0  # training samples per epoch over all ranks (0: one pass over the mix's first dataset)
    dataset_shuffle: int = 100  # per-dataset shuffle buffer (samples), as 4D-Humans
    shuffle_buffer: int = 4000  # shuffle buffer after mixing
    seed: int = 0

    def __post_init__(self):
        # ``data.train=DIR`` on the command line, or a list of paths, name datasets by path alone.
        self.train, self.val = _specs(self.train), _specs(self.val)


def _specs(value) -> tuple[DatasetSpec, ...]:
    items = [value] if isinstance(value, (str, os.PathLike, DatasetSpec)) else list(value or ())
    return tuple(DatasetSpec(path=str(v)) if isinstance(v, (str, os.PathLike)) else v for v in items)


SYNTH_META = "synth.json"  # what marks a folder written by hmr data synth
SYNTH_SPLITS = {"train": "train", "val": os.path.join("eval", "synth_eval.npz")}


def resolve(path: str, root: str = "") -> str:
    """``path`` under ``root`` unless it is absolute (``~`` expanded)."""
    p = os.path.expanduser(path)
    return p if os.path.isabs(p) or not root else os.path.join(os.path.expanduser(root), p)


def open_reader(spec: DatasetSpec, root: str = "", filters: FilterConfig | None = None, skips: SkipCounter | None = None,
                split: str = "train"):  # fmt: skip
    """The reader for a dataset path, chosen by what is there: ``.npz`` -> NpzReader, ``.yaml`` ->
    TsvDataset, ``.tar`` / brace pattern / folder of tars -> TarReader; a folder written by ``hmr data
    synth`` gives its ``train/`` tars for ``split="train"`` and its ``eval/synth_eval.npz`` for ``"val"``."""
    path = resolve(spec.path, root)
    if os.path.isfile(os.path.join(path, SYNTH_META)):
        path = os.path.join(path, SYNTH_SPLITS[split])
    name = spec.name or None
    if path.endswith(".npz"):
        from hmr.data.npz import NpzReader

        return NpzReader(path, resolve(spec.image_root, root) if spec.image_root else None, name)
    if path.endswith((".yaml", ".yml")):
        from hmr.data.tsv import TsvDataset

        return TsvDataset(path, name)
    if path.endswith(".tar") or "{" in path or os.path.isdir(path):
        from hmr.data.tars import TarReader

        return TarReader(path, name, filters=filters if spec.filters else FilterConfig(enabled=False), skips=skips)
    what = "not found" if not os.path.exists(path) else "not a dataset"
    raise DatasetLayoutError(
        f"{path}: {what} (expected 4D-Humans .tar shards or a folder of them, a HMR 2.0 evaluation .npz, or a "
        "SMPLer TSV .yaml)"
    )


def stream_seed(*parts: int | str) -> int:
    """A 63-bit seed from ints and strings, stable across processes and Python runs (unlike ``hash``)."""
    return zlib.crc32(repr(parts).encode()) | (zlib.adler32(repr(parts[::-1]).encode()) << 32)


def shuffled(items: Iterator, size: int, rng: np.random.Generator) -> Iterator:
    """A shuffle buffer of ``size`` items (webdataset's): emit a random buffered item for each new one."""
    if size <= 1:
        yield from items
        return
    buf = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        i = rng.integers(size)
        yield buf[i]
        buf[i] = item
    rng.shuffle(buf)
    yield from buf


class SampleDataset(torch.utils.data.IterableDataset):
    """One reader's people as crops. ``augment`` None: plain crops (evaluation, in reading order split over
    workers); otherwise augmented crops, shuffled when ``shuffle``. ``repeat``: start over forever (for
    mixing). ``bbox_shape``: pad boxes to this aspect first (HMR 2.0's evaluation)."""

    def __init__(self, reader, image_size: int = 256, augment: AugmentConfig | None = None, shuffle: bool = False,
                 repeat: bool = False, bbox_shape: tuple[int, int] | None = None, seed: int = 0,
                 shuffle_buffer: int = 100, skips: SkipCounter | None = None):  # fmt: skip
        self.reader = reader
        self.name = reader.name
        self.image_size, self.augment, self.bbox_shape = image_size, augment, bbox_shape
        self.shuffle, self.repeat, self.seed, self.shuffle_buffer = shuffle, repeat, seed, shuffle_buffer
        self.skips = getattr(reader, "skips", None) or skips or SkipCounter()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:  # the people a pass reads (tars: unknown without reading them)
        return len(self.reader) if hasattr(self.reader, "__len__") else 0

    def _records(self, passes: int) -> Iterator:
        rank, world = rank_world()
        wid, nw = worker()
        if hasattr(self.reader, "iterate"):  # tar shards: webdataset splits them by rank and worker
            yield from self.reader.iterate(self.shuffle, resampled=self.repeat, seed=self.seed, epoch=self.epoch)
            return
        n = len(self.reader)
        for p in range(passes):
            order = np.random.default_rng(stream_seed(self.seed, self.epoch, p)).permutation(n) if self.shuffle else range(n)
            for j in list(order)[rank * nw + wid :: world * nw]:
                try:
                    yield self.reader.read(int(j))
                except BadSample as skip:
                    self.skips.add(skip)

    def __iter__(self) -> Iterator[Sample]:
        rank, _ = rank_world()
        wid, _ = worker()
        rng = np.random.default_rng(stream_seed(self.seed, self.epoch, rank, wid, self.name))
        records = self._records(passes=2**62 if self.repeat else 1)
        if self.shuffle:
            records = shuffled(records, self.shuffle_buffer, rng)
        for image, ann in records:
            try:
                yield make_sample(image, ann, self.image_size, self.augment, rng, self.bbox_shape)
            except (ValueError, IndexError) as err:  # e.g. a degenerate box
                self.skips.add(BadSample("bad_value", f"{ann.dataset}:{ann.key}: {err}"))


class MixedDataset(torch.utils.data.IterableDataset):
    """Weighted sampling over datasets (4D-Humans' training mix): each sample comes from dataset ``i`` with
    probability ``weights[i] / sum(weights)``; each dataset repeats forever and an epoch is ``epoch_size``
    samples over all ranks and workers; then a global shuffle buffer. It has no ``len()`` on purpose: the epoch
    ends when its samples do, so a loop that restores a batch counter (Lightning after a resume) cannot cut
    an epoch short."""

    def __init__(self, datasets: list[SampleDataset], weights: list[float], epoch_size: int, seed: int = 0,
                 shuffle_buffer: int = 4000):  # fmt: skip
        if not datasets or len(datasets) != len(weights):
            raise ValueError("MixedDataset needs one weight per dataset")
        w = np.asarray(weights, np.float64)
        if np.any(w < 0) or w.sum() <= 0 or not np.all(np.isfinite(w)):
            raise ValueError(f"mixing weights must be non-negative with a positive sum, got {list(weights)}")
        if epoch_size <= 0:
            raise ValueError(f"a mix needs a positive epoch_size, got {epoch_size}")
        self.datasets, self.probs = datasets, w / w.sum()
        self.epoch_size, self.seed, self.shuffle_buffer = epoch_size, seed, shuffle_buffer
        self.epoch = 0

    @property
    def skips(self) -> list[SkipCounter]:
        return [d.skips for d in self.datasets]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for d in self.datasets:
            d.set_epoch(epoch)

    def __iter__(self) -> Iterator[Sample]:
        rank, world = rank_world()
        wid, nw = worker()
        rng = np.random.default_rng(stream_seed(self.seed, self.epoch, rank, wid, "mix"))
        count = self.epoch_size // (world * nw) + (rank * nw + wid < self.epoch_size % (world * nw))
        streams = [iter(d) for d in self.datasets]

        def draws():
            for _ in range(count):
                i = int(rng.choice(len(streams), p=self.probs))
                try:
                    yield next(streams[i])
                except StopIteration:  # a dataset with nothing readable: its weight goes to the others
                    raise DatasetLayoutError(f"{self.datasets[i].name}: no readable samples") from None

        yield from shuffled(draws(), self.shuffle_buffer, rng)


def skip_report(dataset) -> dict[str, dict[str, int]]:
    """Skips per dataset name -> reason -> count, for a SampleDataset or MixedDataset (read after an epoch)."""
    parts = dataset.datasets if isinstance(dataset, MixedDataset) else [dataset]
    return {d.name: d.skips.counts() for d in parts if d.skips.counts()}


def training_dataset(cfg: DataConfig) -> torch.utils.data.IterableDataset:
    """The augmented training stream of ``cfg.train`` (one dataset, or a weighted mix)."""
    if not cfg.train:
        raise DatasetLayoutError("data.train lists no datasets")
    parts = [
        SampleDataset(open_reader(s, cfg.root, cfg.filters), cfg.image_size, cfg.augment, shuffle=True,
                      repeat=len(cfg.train) > 1 or cfg.epoch_size > 0, seed=cfg.seed,
                      shuffle_buffer=cfg.dataset_shuffle)  # fmt: skip
        for s in cfg.train
    ]
    if len(parts) == 1 and cfg.epoch_size <= 0:
        return parts[0]
    return MixedDataset(parts, [s.weight for s in cfg.train], cfg.epoch_size, cfg.seed, cfg.shuffle_buffer)


def evaluation_dataset(spec: DatasetSpec, cfg: DataConfig) -> SampleDataset:
    """Plain crops of one evaluation set, in reading order."""
    shape = tuple(cfg.eval_bbox_shape) if cfg.eval_bbox_shape else None
    return SampleDataset(open_reader(spec, cfg.root, FilterConfig(enabled=False), split="val"), cfg.image_size, None,
                         bbox_shape=shape, seed=cfg.seed)  # fmt: skip
