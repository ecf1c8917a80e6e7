"""The bucket store on its own: what a poll asks for, what a merge replaces, what is dropped."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta

import pytest

from exporter import store as store_module
from exporter.admin_api import Bucket
from exporter.store import BucketStore, FetchPlan, LabelTable, store_bucket

MINUTE = timedelta(minutes=1)
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def minute_bucket(table: LabelTable, offset: int, *rows: tuple[str, int]) -> Bucket:
    start = T0 + offset * MINUTE
    bucket = Bucket(start, start + MINUTE, tuple(rows))
    return store_bucket(bucket, table, lambda row: (row[0],), lambda row: (row[1],), 1, integer=True)


def test_rows_with_the_same_labels_are_summed_and_labels_interned_once():
    table = LabelTable()
    stored = minute_bucket(table, 0, ("a", 1), ("b", 2), ("a", 3))
    assert list(stored.label_ids) == [0, 1] and list(stored.values) == [4, 2]
    minute_bucket(table, 1, ("b", 5))
    assert table.labels == [("a",), ("b",)]


def test_the_first_plan_is_the_whole_needed_range():
    store = BucketStore("1m", 1)
    needed = (T0 - 60 * MINUTE, T0 + MINUTE)
    assert store.plan(needed, 900, 6 * 3600, T0) == FetchPlan(*needed, True)


def test_merge_replaces_the_range_read_keeps_the_rest_and_drops_what_no_window_needs():
    table = LabelTable()
    store = BucketStore("1m", 1).merged(FetchPlan(T0, T0 + 10 * MINUTE, True),
                                        [minute_bucket(table, i, ("a", 1)) for i in range(10)],
                                        keep_from=T0, now=T0)
    assert store.covered == (T0, T0 + 10 * MINUTE) and store.full_at == T0
    now = T0 + 9 * MINUTE
    plan = store.plan((T0 + 2 * MINUTE, T0 + 11 * MINUTE), horizon=300, full_refresh=3600, now=now)
    assert plan == FetchPlan(T0 + 5 * MINUTE, T0 + 11 * MINUTE, False)  # newest held end minus 5 minutes
    # the API now says minute 6 had 7, minute 7 nothing (an empty bucket), and minute 10 has begun
    fetched = [minute_bucket(table, 5, ("a", 1)), minute_bucket(table, 6, ("a", 7)), minute_bucket(table, 7),
               minute_bucket(table, 8, ("a", 1)), minute_bucket(table, 9, ("a", 1)), minute_bucket(table, 10, ("b", 2))]
    merged = store.merged(plan, fetched, keep_from=T0 + 2 * MINUTE, now=now)
    assert [b.start for b in merged.buckets] == [T0 + i * MINUTE for i in (2, 3, 4, 5, 6, 8, 9, 10)]
    assert merged.covered == (T0 + 2 * MINUTE, T0 + 11 * MINUTE)
    assert merged.full_at == T0  # an incremental read is no full refresh
    assert merged.sums(T0, T0 + 11 * MINUTE) == {0: [3 + 1 + 7 + 1 + 1], 1: [2]}
    assert store.sums(T0, T0 + 11 * MINUTE) == {0: [10]}  # the old store is untouched


def test_a_gap_is_read_from_the_newest_held_bucket_and_a_due_refresh_reads_everything():
    store = BucketStore("1m", 1, covered=(T0, T0 + 10 * MINUTE), full_at=T0)
    later = T0 + 50 * MINUTE
    needed = (T0, later + MINUTE)
    assert store.plan(needed, 300, 3600, later) == FetchPlan(T0 + 5 * MINUTE, later + MINUTE, False)
    assert store.plan(needed, 300, 3600, T0 + 60 * MINUTE).full
    assert store.plan((T0 - MINUTE, later), 300, 3600, later).full  # the windows reach further back


def test_an_answer_without_the_bucket_in_progress_covers_only_what_came():
    table = LabelTable()
    plan = FetchPlan(T0, T0 + 3 * MINUTE, True)
    store = BucketStore("1m", 1).merged(plan, [minute_bucket(table, 0, ("a", 1)), minute_bucket(table, 1)],
                                        keep_from=T0, now=T0)
    assert store.covered == (T0, T0 + 2 * MINUTE)
    assert store.newest_data_end() == T0 + MINUTE


# --- window sums kept between calls -------------------------------------------------------------

def test_window_sums_kept_between_polls_equal_sums_of_the_truth(monkeypatch):
    """Polls over 10 simulated hours, with late data revising recent minutes, labels that come
    and go, and full re-reads: every window's sums equal a plain sum of what the API says."""
    rng = random.Random(11)
    labels = [f"k{i}" for i in range(12)]
    truth: dict[int, list[tuple[str, int]]] = {}  # minute -> rows (label, tokens)

    def rows_of(minute: int) -> list[tuple[str, int]]:
        if minute not in truth:
            active = rng.sample(labels, rng.randint(0, 4)) if minute % 50 < 40 else []  # quiet spells
            if minute % 97 == 5:
                active.append("rare")  # leaves the 1h window an hour later: its labels must go too
            truth[minute] = [(k, rng.randint(0, 999)) for k in active]
        return truth[minute]

    table = LabelTable()
    store = BucketStore("1m", 2)
    windows = {"1h": 60, "4h": 240, "since 00": None}  # None: from minute 0 on, growing
    fresh = 0
    real_summed = store_module._summed

    def counting(*args):
        nonlocal fresh
        fresh += 1
        return real_summed(*args)

    monkeypatch.setattr(store_module, "_summed", counting)
    kept: list[tuple[dict, dict]] = []  # earlier results, with a deep copy to show they never change
    for now_minute in range(1, 600):
        now = T0 + now_minute * MINUTE
        recent = range(max(0, now_minute - 10), now_minute)
        for minute in rng.sample(recent, min(2, len(recent))):  # late data lands in recent minutes
            rows_of(minute).append((rng.choice(labels), 1))
        plan = store.plan((T0, now + MINUTE), horizon=900, full_refresh=3 * 3600, now=now)
        fetched = []
        for minute in range(int((plan.start - T0) / MINUTE), min(int((plan.end - T0) / MINUTE), now_minute + 1)):
            bucket = Bucket(T0 + minute * MINUTE, T0 + (minute + 1) * MINUTE, tuple(rows_of(minute)))
            fetched.append(store_bucket(bucket, table, lambda row: (row[0],), lambda row: (row[1], 2 * row[1]),
                                        2, integer=True))
        store = store.merged(plan, fetched, keep_from=T0, now=now)
        for name, span in windows.items():
            start_minute = 0 if span is None else max(0, now_minute + 1 - span)
            want: dict[int, list[int]] = {}
            for minute in range(start_minute, now_minute + 1):
                for label, tokens in rows_of(minute):
                    pair = want.setdefault(table.id((label,)), [0, 0])
                    pair[0] += tokens
                    pair[1] += 2 * tokens
            got = store.sums(T0 + start_minute * MINUTE, now + MINUTE, memo_key=name)
            assert got == want, (name, now_minute)
            if now_minute % 37 == 0:
                kept.append((got, copy.deepcopy(got)))
    assert all(result == copy_made for result, copy_made in kept)
    # Kept sums, not summed afresh: only at first, at the full re-reads, and where the window holds
    # fewer rows than changed.
    calls = 599 * len(windows)
    assert 0 < fresh < calls / 10, (fresh, calls)


def test_each_window_keeps_its_own_sums(monkeypatch):
    table = LabelTable()
    store = BucketStore("1m", 1).merged(FetchPlan(T0, T0 + 10 * MINUTE, True),
                                        [minute_bucket(table, i, ("a", i)) for i in range(10)],
                                        keep_from=T0, now=T0)
    assert store.sums(T0, T0 + 10 * MINUTE, memo_key="all") == {0: [45]}
    assert store.sums(T0 + 5 * MINUTE, T0 + 10 * MINUTE, memo_key="half") == {0: [35]}
    assert store.sums(T0, T0 + 2 * MINUTE) == {0: [1]}  # no key: summed, not kept
    assert set(store.memo.entries) == {"all", "half"}
    monkeypatch.setattr(store_module, "_summed", lambda *args: pytest.fail("summed afresh"))
    assert store.sums(T0, T0 + 10 * MINUTE, memo_key="all") == {0: [45]}  # nothing changed for "all"
    assert store.sums(T0 + 4 * MINUTE, T0 + 10 * MINUTE, memo_key="half") == {0: [39]}  # one bucket entered
