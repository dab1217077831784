"""Bad data: what a reader skips, why, and how many (docs/data.md, "Bad data").

A dataset whose path or layout is wrong fails when it is opened (:class:`DatasetLayoutError`, one line
naming the path and what was expected there). A bad *sample* (corrupt image, missing key, NaN ground
truth, an unreadable shard) never stops an epoch: the reader raises :class:`BadSample` internally, the
dataset catches it, counts it under its reason in a :class:`SkipCounter` and goes on.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger("hmr.data")

REASONS = (
    "corrupt_image",  # undecodable or truncated image bytes
    "missing_key",  # a required field or tar member is absent
    "non_finite",  # NaN / Inf in the ground truth
    "bad_value",  # wrong shape, type or range
    "unreadable_shard",  # a tar shard that cannot be opened or read to its end
    "filtered",  # valid but removed by the dataset filters (too few keypoints, fitting loss too high)
)


class DatasetLayoutError(ValueError):
    """A dataset path that does not exist or does not hold the expected files (raised when opened)."""


class BadSample(Exception):  # noqa: N818 - a signal caught by the datasets, not an error shown to users
    """One sample to skip; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str):
        if reason not in REASONS:
            raise ValueError(f"unknown skip reason {reason!r}")
        super().__init__(message)
        self.reason = reason


class SkipCounter:
    """Counts skipped samples per reason, shared by a dataset's DataLoader worker processes (the counts
    live in shared memory, so the main process sees the workers' skips). The first skip of each reason in
    a process is logged as a warning with its message."""

    def __init__(self):
        self._counts = torch.zeros(len(REASONS), dtype=torch.int64).share_memory_()
        self._logged: set[str] = set()

    def add(self, skip: BadSample) -> None:
        i = REASONS.index(skip.reason)
        self._counts[i] += 1  # one int64 add; a rare lost update between workers only blurs a count
        if skip.reason not in self._logged:
            self._logged.add(skip.reason)
            log.warning("skipping bad sample (%s): %s", skip.reason, skip)

    def counts(self) -> dict[str, int]:
        return {r: int(n) for r, n in zip(REASONS, self._counts.tolist(), strict=True) if n}

    def total(self) -> int:
        return int(self._counts.sum())

    def reset(self) -> None:
        self._counts.zero_()

    def report(self) -> str:
        """One line, e.g. ``skipped 3 samples: corrupt_image 2, non_finite 1`` (empty when none)."""
        counts = self.counts()
        if not counts:
            return ""
        return f"skipped {sum(counts.values())} samples: " + ", ".join(f"{r} {n}" for r, n in counts.items())
