"""Running totals of the feedback loop: served lists and the answers to them, summed per time
bucket, model version and exploration share.

The monitoring figures of a window (`recsys.monitoring`) are sums over these cells, so they
cost what the window's buckets hold, not what its impressions hold: a day at hourly buckets
is about a hundred cells whether it served a thousand lists or ten million. The buckets are
as wide as the time series of the lists' span is charted (`width_for`): a fresh service's
lists fall in 10-second buckets, and as the span grows they are merged into minutes, then
hours, so the tally's size stops growing with traffic. (Finer buckets kept for the last
hours of a day held a catalog's worth of item counts each at ten million lists a day.)

A window starts at the start of the bucket its first moment falls in; that bucket is
counted whole (at most an hour more than asked for, in the hourly part of a long window).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys.store.events import POSITIVE_EVENTS

SPANS: tuple[tuple[float, int], ...] = ((600.0, 10), (3 * 3600.0, 60), (float("inf"), 3600))
"""(the longest span of lists, in seconds, the bucket width in seconds it is charted at)."""

FINEST = SPANS[0][1]


def width_for(span: float) -> int:
    """The bucket width that charts lists spread over `span` seconds in a readable number of
    points: 10 s up to 10 minutes, a minute up to 3 hours, an hour beyond."""
    for longest, width in SPANS:
        if span <= longest:
            return width
    return SPANS[-1][1]


def is_positive(kind: str, value: float | None, liked_threshold: float) -> bool:
    """A rating at or above the liked threshold, or a positive event (a click, a like)."""
    if kind == "rating":
        return value is not None and value >= liked_threshold
    return kind in POSITIVE_EVENTS


@dataclass(frozen=True)
class Served:
    """A served list, reduced to what the figures read."""

    at: float
    """When it was served (Unix seconds)."""
    version: str
    share: float
    """The exploration share it was served with (0: none)."""
    items: Sequence[str]


@dataclass(frozen=True)
class Reply:
    """One piece of feedback, with what it answers."""

    at: float
    """When it arrived (Unix seconds)."""
    kind: str
    value: float | None
    list_at: float | None = None
    """When the list it answers was served; None when it answers no list we logged."""
    version: str | None = None
    share: float | None = None
    shown_score: float | None = None
    """The rating we predicted when we showed the item (None: not in the list, or a list
    logged without predictions)."""


ListKey = tuple[int, int, str, float]
"""(bucket start, bucket width, model version, exploration share)."""
ReplyKey = tuple[int, int, int | None, str | None, float | None]
"""(bucket start, width, the bucket start of the list answered or None, its version, its
share): the answered list's bucket has the reply's width."""


@dataclass
class ListCell:
    lists: int = 0
    slots: int = 0
    first: float = float("inf")
    last: float = float("-inf")
    idx: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))
    cnt: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    """Exposure: times each item (by the tally's item index) was shown, compacted."""
    pending: list[int] = field(default_factory=list)

    def compact(self) -> None:
        if not self.pending:
            return
        pending = np.asarray(self.pending, dtype=np.int32)
        self._sum(np.concatenate([self.idx, pending]),
                  np.concatenate([self.cnt, np.ones(len(pending), dtype=np.int64)]))  # fmt: skip
        self.pending = []

    def merge(self, other: ListCell) -> None:
        other.compact()
        self.compact()
        self.lists += other.lists
        self.slots += other.slots
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)
        self._sum(np.concatenate([self.idx, other.idx]), np.concatenate([self.cnt, other.cnt]))

    def _sum(self, idx: np.ndarray, cnt: np.ndarray) -> None:
        """Counts of the same item added up: sorting the few entries of a young bucket, or
        counting densely up to the largest index for an old one's thousands."""
        if len(idx) > 64:
            dense = np.bincount(idx, weights=cnt)
            self.idx = np.flatnonzero(dense).astype(np.int32)
            self.cnt = dense[self.idx].astype(np.int64)
        else:
            self.idx, inverse = np.unique(idx, return_inverse=True)
            self.cnt = np.bincount(inverse, weights=cnt).astype(np.int64)


@dataclass
class ReplyCell:
    n: int = 0
    ratings: int = 0
    positives: int = 0
    clicks: int = 0
    gap_sum: float = 0.0
    """Shown score minus the rating given, summed over rated items that were in the list."""
    gap_n: int = 0

    def merge(self, other: ReplyCell) -> None:
        self.n += other.n
        self.ratings += other.ratings
        self.positives += other.positives
        self.clicks += other.clicks
        self.gap_sum += other.gap_sum
        self.gap_n += other.gap_n


def shown_score(
    items: Sequence[str], predicted: Sequence[float | None] | None, item: str
) -> float | None:
    """The rating predicted for `item` when its list was shown (None when it was not in the
    list, or the list was logged without predictions)."""
    if predicted is None or item not in items:
        return None
    return predicted[list(items).index(item)]


def _floor(at: float, width: int) -> int:
    return int(at // width * width)


class Tally:
    """Lists and replies summed per bucket; `window` selects the cells of a time window."""

    def __init__(self, liked_threshold: float, width: int = FINEST) -> None:
        self.liked_threshold = liked_threshold
        self.width = width
        """The width of the buckets new rows are counted in (`roll` sets it)."""
        self.item_ids: list[str] = []
        self._index: dict[str, int] = {}
        self.lists: dict[ListKey, ListCell] = {}
        self.replies: dict[ReplyKey, ReplyCell] = {}

    def add_list(self, s: Served) -> None:
        width = self.width
        key = (_floor(s.at, width), width, s.version, s.share)
        cell = self.lists.get(key)
        if cell is None:
            cell = self.lists[key] = ListCell()
        cell.lists += 1
        cell.slots += len(s.items)
        cell.first = min(cell.first, s.at)
        cell.last = max(cell.last, s.at)
        index = self._index
        for item in s.items:
            i = index.get(item)
            if i is None:
                i = index[item] = len(self.item_ids)
                self.item_ids.append(item)
            cell.pending.append(i)

    def add_reply(self, r: Reply) -> None:
        width = self.width
        answered = None if r.list_at is None else _floor(r.list_at, width)
        key = (_floor(r.at, width), width, answered, r.version, r.share)
        cell = self.replies.get(key)
        if cell is None:
            cell = self.replies[key] = ReplyCell()
        cell.n += 1
        cell.ratings += r.kind == "rating"
        cell.positives += is_positive(r.kind, r.value, self.liked_threshold)
        cell.clicks += r.kind == "click"
        if r.kind == "rating" and r.shown_score is not None and r.value is not None:
            cell.gap_sum += r.shown_score - r.value
            cell.gap_n += 1

    def compact(self) -> None:
        """Fold the lists added since into the cells' exposure arrays."""
        for cell in self.lists.values():
            cell.compact()

    def roll(self, now: float, keep_s: float) -> None:
        """Drop the buckets that ended more than `keep_s` before `now`, and merge the rest
        into the width that charts the span of the lists left (`width_for`)."""
        self.compact()
        horizon = now - keep_s
        kept = {k: c for k, c in self.lists.items() if k[0] + k[1] >= horizon}
        oldest = min((c.first for c in kept.values()), default=now)
        self.width = w = width_for(now - oldest)
        lists: dict[ListKey, ListCell] = {}
        for (start, width, version, share), cell in kept.items():
            key = (
                (_floor(start, w), w, version, share)
                if width < w
                else (start, width, version, share)
            )
            if key in lists:
                lists[key].merge(cell)
            else:
                lists[key] = cell
        replies: dict[ReplyKey, ReplyCell] = {}
        for (start, width, answered, who, share_of), reply in self.replies.items():
            if start + width < horizon:
                continue
            if width < w:
                answered = None if answered is None else _floor(answered, w)
                start, width = _floor(start, w), w
            rkey = (start, width, answered, who, share_of)
            if rkey in replies:
                replies[rkey].merge(reply)
            else:
                replies[rkey] = reply
        self.lists, self.replies = lists, replies

    def window(self, since: float) -> Window:
        """The cells of the buckets that end after `since`."""
        self.compact()
        lists = [(k, c) for k, c in self.lists.items() if k[0] + k[1] > since]
        replies = [(k, c) for k, c in self.replies.items() if k[0] + k[1] > since]
        return Window(since, lists, replies, len(self.item_ids), self.item_ids)

    def state(self) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        """The tally as plain values, for `from_state`: a JSON-able description of every
        cell, and the exposure indices and counts of the list cells one after another."""
        self.compact()
        lists = [
            [*key, c.lists, c.slots, c.first, c.last, len(c.idx)] for key, c in self.lists.items()
        ]
        replies = [
            [*key, c.n, c.ratings, c.positives, c.clicks, c.gap_sum, c.gap_n]
            for key, c in self.replies.items()
        ]
        meta = {"liked_threshold": self.liked_threshold, "width": self.width,
                "item_ids": self.item_ids, "lists": lists, "replies": replies}  # fmt: skip
        cells = list(self.lists.values())
        idx = np.concatenate([c.idx for c in cells]) if cells else np.empty(0, np.int32)
        cnt = np.concatenate([c.cnt for c in cells]) if cells else np.empty(0, np.int64)
        return meta, idx, cnt

    @classmethod
    def from_state(cls, meta: dict[str, Any], idx: np.ndarray, cnt: np.ndarray) -> Tally:
        tally = cls(float(meta["liked_threshold"]), int(meta["width"]))
        tally.item_ids = [str(i) for i in meta["item_ids"]]
        tally._index = {item: i for i, item in enumerate(tally.item_ids)}
        at = 0
        for start, width, version, share, n, slots, first, last, size in meta["lists"]:
            cell = ListCell(n, slots, first, last, idx[at : at + size], cnt[at : at + size])
            tally.lists[(start, width, version, share)] = cell
            at += size
        for start, width, answered, version, share, *sums in meta["replies"]:
            tally.replies[(start, width, answered, version, share)] = ReplyCell(*sums)
        return tally

    @classmethod
    def of(cls, lists: Iterable[Served], replies: Iterable[Reply], liked: float) -> Tally:
        tally = cls(liked)
        for s in lists:
            tally.add_list(s)
        for r in replies:
            tally.add_reply(r)
        tally.compact()
        return tally


@dataclass(frozen=True)
class Window:
    """The cells of one time window."""

    since: float
    lists: list[tuple[ListKey, ListCell]]
    replies: list[tuple[ReplyKey, ReplyCell]]
    n_index: int
    item_ids: Sequence[str]

    def answering(self) -> Iterator[tuple[ReplyKey, ReplyCell]]:
        """Replies to a list served in the window."""
        for key, cell in self.replies:
            answered = key[2]
            if answered is not None and answered + key[1] > self.since:
                yield key, cell

    @property
    def widest(self) -> int:
        """The widest bucket among the window's cells (0 when it has none)."""
        return max([k[1] for k, _ in self.lists] + [k[1] for k, _ in self.replies], default=0)

    def span(self) -> float | None:
        """Seconds between the first and the last list served in the window."""
        if not self.lists:
            return None
        return max(c.last for _, c in self.lists) - min(c.first for _, c in self.lists)

    def exposure(self, cells: Sequence[ListCell]) -> np.ndarray:
        """Times each item (by the tally's index) was shown over `cells`."""
        if not cells:
            return np.zeros(self.n_index, dtype=np.int64)
        idx = np.concatenate([c.idx for c in cells])
        cnt = np.concatenate([c.cnt for c in cells])
        return np.bincount(idx, weights=cnt, minlength=self.n_index).astype(np.int64)
