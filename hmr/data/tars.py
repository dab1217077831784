"""4D-Humans' training tars (webdataset): ``<key>.jpg``, ``<key>.data.pyd`` (a pickled list of per-person
dicts, read through the restricted unpickler) and optionally ``<key>.detection.npz`` (instance masks).

Shards are named with brace patterns as 4D-Humans writes them (``dataset_tars/coco-train-2014-pruned/
{000000..000017}.tar``), expanded with ``braceexpand`` and checked when the dataset is opened. Reading goes
through the ``webdataset`` package: shards split over nodes and DataLoader workers, shuffled per epoch.
"""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hmr.data.errors import BadSample, DatasetLayoutError, SkipCounter
from hmr.data.fields import FilterConfig, apply_filters, fitting_loss, person_annotation
from hmr.data.sample import Annotation
from hmr.data.workers import reader_index

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")  # 4D-Humans renames jpg;jpeg;png to jpg


def expand_shards(spec: str | os.PathLike | list, root: str | os.PathLike | None = None) -> list[str]:
    """Shard paths from brace patterns (``a/{000000..000312}.tar``), a folder of ``*.tar`` or a list of
    either; relative paths are under ``root``. Every shard must exist (DatasetLayoutError otherwise)."""
    from braceexpand import braceexpand

    specs = spec if isinstance(spec, (list, tuple)) else [spec]
    out: list[str] = []
    for s in specs:
        s = str(s)
        base = Path(root).expanduser() if root is not None else None
        if not os.path.isabs(os.path.expanduser(s)) and base is not None:
            s = str(base / s)
        s = os.path.expanduser(s)
        if os.path.isdir(s):
            found = sorted(str(p) for p in Path(s).glob("*.tar"))
            if not found:
                raise DatasetLayoutError(f"{s}: no .tar shards in this folder (expected 4D-Humans webdataset tars)")
            out += found
            continue
        paths = list(braceexpand(s))
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            more = f" and {len(missing) - 1} more of {len(paths)}" if len(missing) > 1 else ""
            raise DatasetLayoutError(f"{missing[0]}: shard not found{more} (from {s})")
        out += paths
    if not out:
        raise DatasetLayoutError(f"{spec}: no shards")
    return out


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Encoded image bytes -> (H, W, 3) uint8 RGB; BadSample('corrupt_image') when they do not decode whole."""
    import cv2

    # Some libjpeg builds decode a truncated JPEG into a grey-padded picture without failing: require its end.
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        raise BadSample("corrupt_image", f"{where}: JPEG is truncated (no end-of-image marker)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None or img.ndim != 3 or min(img.shape[:2]) < 1:
        raise BadSample("corrupt_image", f"{where}: image does not decode")
    return img[..., ::-1].copy()


def _has_end_marker(path: str) -> bool:
    """A complete tar ends with two zero 512-byte blocks; one cut at a member boundary reads as a shorter,
    valid-looking archive without them."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 1024))
            tail = f.read(1024)
    except OSError:
        return False
    return size % 512 == 0 and len(tail) == 1024 and not any(tail)


def _masks(data: bytes | None, where: str) -> np.ndarray | None:
    if data is None:
        return None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return np.asarray(npz["masks"])
    except Exception as err:  # a damaged member: the person keeps an all-ones mask
        raise BadSample("bad_value", f"{where}: detection.npz unreadable ({type(err).__name__})") from None


def records(raw: dict, dataset: str, filters: FilterConfig) -> Iterator[tuple[np.ndarray, Annotation] | BadSample]:
    """One webdataset sample (member name -> bytes) -> (image, annotation) per person, or the BadSample
    explaining why a person (or the whole image) is skipped."""
    from hmr.io.safe_pickle import loads_pickle

    key = raw.get("__key__", "?")
    where = f"{raw.get('__url__', dataset)}:{key}"
    try:
        data = next((raw[e] for e in IMAGE_EXTENSIONS if e in raw), None)
        if data is None or "data.pyd" not in raw:
            missing = "data.pyd" if data is not None else "jpg"
            raise BadSample("missing_key", f"{where}: no {missing} member")
        try:
            people = loads_pickle(raw["data.pyd"], f"{where}.data.pyd")
        except Exception as err:  # refused or damaged pickle: one image lost, not the epoch
            raise BadSample("bad_value", str(err)) from None
        if not isinstance(people, list):
            raise BadSample("bad_value", f"{where}.data.pyd: a {type(people).__name__}, not a list of people")
        image = decode_image(data, where)
        masks = _masks(raw.get("detection.npz"), where)
    except BadSample as skip:
        yield skip
        return
    for i, person in enumerate(people):
        try:
            ann = person_annotation(person, f"{where}[{i}]", dataset, f"{key}/{i}")
            ann = apply_filters(ann, filters, fitting_loss(person))
            info = person.get("extra_info") if isinstance(person.get("extra_info"), dict) else {}
            idx = info.get("detection_npz_idx")
            if masks is not None and idx is not None:
                idx = int(np.asarray(idx).reshape(-1)[0])
                if 0 <= idx < len(masks) and masks[idx].shape == image.shape[:2]:
                    ann.mask = masks[idx].astype(np.uint8)
            yield image, ann
        except BadSample as skip:
            yield skip


class TarReader:
    """The people of a set of 4D-Humans tars as (image, Annotation) pairs, with skips counted in ``skips``.

    ``shards``: see :func:`expand_shards`. Iterate with :meth:`iterate`; the webdataset pipeline splits the
    shards by node (DDP rank) and by DataLoader worker, and shuffles shard order per epoch when
    ``shuffle``. ``resampled``: draw shards with replacement forever (training with an epoch size)."""

    def __init__(self, shards, name: str | None = None, root=None, filters: FilterConfig | None = None,
                 skips: SkipCounter | None = None):  # fmt: skip
        self.shards = expand_shards(shards, root)
        self.name = name or Path(self.shards[0]).parent.name
        self.filters = filters if filters is not None else FilterConfig()
        self.skips = skips if skips is not None else SkipCounter()

    def _bad_shard(self, url: str, why: str) -> None:
        if url not in self._bad:  # webdataset reports one broken tar at several stages: count it once
            self._bad.add(url)
            self.skips.add(BadSample("unreadable_shard", f"{url}: {why}"))

    def _on_error(self, err: Exception) -> bool:
        text = " ".join(map(str, err.args))
        url = next((s for s in self.shards if s in text), self.name)
        self._bad_shard(url, f"{type(err).__name__}: {err.args[0] if err.args else err}")
        return True  # go on with the next shard

    def iterate(self, shuffle: bool = False, resampled: bool = False, seed: int = 0, epoch: int = 0,
                split_by_node: bool = True) -> Iterator[tuple[np.ndarray, Annotation]]:  # fmt: skip
        """The people of one pass over the shards (``resampled``: pass after pass, forever), each pass's shard
        order shuffled from ``(seed, epoch, pass)`` when ``shuffle`` (webdataset's own resampling draws from an
        unseeded generator, so repeated passes are used instead: the order stays reproducible)."""
        self._bad: set[str] = set()
        passes = itertools.count() if resampled else range(1)
        for p in passes:
            got = False
            for item in self._one_pass(shuffle, (seed * 1_000_003 + epoch) * 1_000_003 + p, split_by_node):
                got = True
                yield item
            if resampled and not got:  # passes forever over nothing would never yield
                raise DatasetLayoutError(
                    f"{self.name}: a reader (DDP rank x DataLoader worker) got no readable sample from its share "
                    f"of the {len(self.shards)} shards; use fewer workers or more data"
                )

    def _one_pass(self, shuffle: bool, seed: int, split_by_node: bool) -> Iterator[tuple[np.ndarray, Annotation]]:
        import webdataset as wds

        reader, readers = reader_index(split_by_node)
        by_shard = len(self.shards) >= readers  # else every reader reads all shards and keeps its share of samples
        ds = wds.WebDataset(
            self.shards, handler=self._on_error, shardshuffle=100 if shuffle else False, seed=seed,
            nodesplitter=wds.split_by_node if split_by_node and by_shard else None,
            workersplitter=wds.split_by_worker if by_shard else None, empty_check=False,
        )  # fmt: skip
        url = None
        for i, raw in enumerate(ds):
            if not by_shard and i % readers != reader:
                continue
            if raw.get("__url__") != url:
                url = raw.get("__url__")
                if url and not _has_end_marker(url):
                    self._bad_shard(url, "truncated (no end-of-archive blocks); reading what is there")
            for item in records(raw, self.name, self.filters):
                if isinstance(item, BadSample):
                    self.skips.add(item)
                else:
                    yield item
