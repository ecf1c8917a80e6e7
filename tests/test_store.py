"""The bucket store on its own: what a poll asks for, what a merge replaces, what is dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
