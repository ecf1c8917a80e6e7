"""Claude Code analytics: records parsed tolerantly, summed per window of whole UTC days, with
per-actor labels only when asked for."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from test_admin_api import far, scripted_client

from exporter.admin_api import ClaudeCodeRecord
from exporter.claude_code import build_claude_code_snapshot, needed_days
from exporter.config import DEFAULT_WINDOWS

RECORD = {"date": "2026-03-10T00:00:00Z",
          "actor": {"type": "user_actor", "email_address": "ada@example.com"},
          "organization_id": "12345678-1234-5678-1234-567812345678",
          "customer_type": "api", "terminal_type": "iTerm.app", "is_remote": False,
          "core_metrics": {"num_sessions": 15, "lines_of_code": {"added": 342, "removed": 128},
                           "commits_by_claude_code": 8, "pull_requests_by_claude_code": 2},
          "tool_actions": {"edit_tool": {"accepted": 25, "rejected": 3}, "brand_new_tool": {"accepted": 1, "rejected": 0}},
          "model_breakdown": [{"model": "claude-opus-4-8",
                               "tokens": {"input": 45230, "output": 12450, "cache_read": 8790, "cache_creation": 2340},
                               "estimated_cost": {"amount": 186, "currency": "USD"}}],
          "subscription_type": "enterprise", "a_field_from_the_future": [1]}


def test_a_record_parses_and_unknown_tools_and_fields_pass(clock):
    api_actor = {**RECORD, "actor": {"type": "api_actor", "api_key_name": "ci-key"}, "terminal_type": None,
                 "tool_actions": None, "model_breakdown": None}
    client, fake = scripted_client([(200, {"data": [RECORD, {"actor": "nobody"}], "has_more": True, "next_page": "p2"}),
                                    (200, {"data": [api_actor], "has_more": False, "next_page": None})], clock)
    records = client.claude_code(date(2026, 3, 10), far())
    assert records == [
        ClaudeCodeRecord("ada@example.com", "user_actor", "api", "iTerm.app", 15, 342, 128, 8, 2,
                         (("edit_tool", 25, 3), ("brand_new_tool", 1, 0)),
                         (("claude-opus-4-8", 45230, 12450, 8790, 2340, 186),)),
        ClaudeCodeRecord("ci-key", "api_actor", "api", "unknown", 15, 342, 128, 8, 2, (), ()),
    ]
    assert "starting_at=2026-03-10" in fake.sent[0].url and "page=p2" in fake.sent[1].url


def record(actor, day_sessions, terminal="vscode", tools=(), models=()):
    return ClaudeCodeRecord(actor, "user_actor", "subscription", terminal, day_sessions, 10 * day_sessions,
                            day_sessions, 1, 0, tools, models)


NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAYS = {
    date(2026, 3, 10): (record("a@x", 1, tools=(("edit_tool", 2, 1),)), record("b@x", 2)),
    date(2026, 3, 5): (record("a@x", 4, models=(("claude-opus-5", 10, 20, 30, 40, 250),)),),
    date(2026, 2, 20): (record("c@x", 8, terminal="tmux"),),  # in 30d, not in 7d or the month
}


def test_sums_per_window_of_whole_days_and_distinct_actors():
    snapshot = build_claude_code_snapshot(DAYS, DEFAULT_WINDOWS, False, NOW, NOW)
    assert snapshot.label_names == ("customer_type", "terminal_type")
    # (sessions, lines added, lines removed, commits, pull requests, active actors)
    assert snapshot.core == {
        ("subscription", "vscode"): {"7d": (7, 70, 7, 3, 0, 2), "30d": (7, 70, 7, 3, 0, 2),
                                     "today": (3, 30, 3, 2, 0, 2), "month": (7, 70, 7, 3, 0, 2)},
        ("subscription", "tmux"): {"7d": (0, 0, 0, 0, 0, 0), "30d": (8, 80, 8, 1, 0, 1),
                                   "today": (0, 0, 0, 0, 0, 0), "month": (0, 0, 0, 0, 0, 0)},
    }
    assert snapshot.tools[(("subscription", "vscode"), "edit_tool")]["today"] == (2, 1)
    assert snapshot.models[(("subscription", "vscode"), "claude-opus-5")] == {
        "7d": (10, 20, 30, 40, 250), "30d": (10, 20, 30, 40, 250), "today": (0, 0, 0, 0, 0),
        "month": (10, 20, 30, 40, 250)}
    assert snapshot.data_timestamp == NOW.timestamp()  # today's day ends in the future: capped


def test_per_actor_labels_only_when_asked():
    snapshot = build_claude_code_snapshot(DAYS, DEFAULT_WINDOWS, True, NOW, NOW)
    assert snapshot.label_names == ("customer_type", "terminal_type", "actor", "actor_type")
    assert snapshot.core[("subscription", "vscode", "a@x", "user_actor")]["7d"] == (5, 50, 5, 2, 0, 1)


def test_the_days_the_windows_need():
    days = needed_days(DEFAULT_WINDOWS, NOW)
    assert days[0] == date(2026, 2, 9) and days[-1] == date(2026, 3, 10) and len(days) == 30
    assert needed_days(DEFAULT_WINDOWS, datetime(2026, 3, 31, tzinfo=UTC))[0] == date(2026, 3, 1)  # the month


# --- against the simulator -------------------------------------------------------------------

def _setup(simulator, admin_key, clock, per_actor=False):
    from dataclasses import replace

    from prometheus_client import CollectorRegistry

    from exporter.admin_api import ENDPOINTS
    from exporter.collector import AdminCollector
    from exporter.config import ClaudeCodeSettings, Config, Organization, Secret
    from exporter.poller import Poller
    from exporter.state import ExporterState

    config = replace(Config(organizations=(Organization("acme", Secret(admin_key), simulator.url),)),
                     claude_code=ClaudeCodeSettings(per_actor=per_actor))
    state = ExporterState(["acme"], ENDPOINTS)
    registry = CollectorRegistry()
    registry.register(AdminCollector(state))
    return Poller(config.organizations[0], config, state, clock=clock, sleep=lambda s: None), registry


def _windows(now):
    """Whole UTC days, today included (written out from the metric reference)."""
    from datetime import timedelta
    today = now.date()
    return {"today": (today, today), "7d": (today - timedelta(days=6), today),
            "30d": (today - timedelta(days=29), today), "month": (today.replace(day=1), today)}


def test_sums_per_window_equal_the_simulators_records(simulator, sim_org, admin_key, clock):
    from datetime import timedelta
    poller, registry = _setup(simulator, admin_key, clock)
    assert poller.poll("claude_code")
    checked = 0
    for window, (first, last) in _windows(clock()).items():
        sessions: dict[tuple[str, str], int] = {}
        actors: dict[tuple[str, str], set] = {}
        tools: dict[tuple[str, str, str], int] = {}
        cents: dict[tuple[str, str, str], int] = {}
        day = first
        while day <= last:
            for r in sim_org.claude_code_records(day):
                key = (r["customer_type"], r["terminal_type"])
                sessions[key] = sessions.get(key, 0) + r["core_metrics"]["num_sessions"]
                actors.setdefault(key, set()).add(str(r["actor"]))
                for tool, counts in r["tool_actions"].items():
                    tools[(*key, tool)] = tools.get((*key, tool), 0) + counts["accepted"]
                for m in r["model_breakdown"]:
                    cents[(*key, m["model"])] = cents.get((*key, m["model"]), 0) + m["estimated_cost"]["amount"]
            day += timedelta(days=1)
        base = {"organization": "acme", "window": window}
        for (customer, terminal), n in sessions.items():
            labels = {**base, "customer_type": customer, "terminal_type": terminal}
            assert registry.get_sample_value("anthropic_claude_code_sessions", labels) == n
            assert registry.get_sample_value("anthropic_claude_code_active_actors", labels) == len(
                actors[(customer, terminal)])
            checked += 1
        for (customer, terminal, tool), n in tools.items():
            assert registry.get_sample_value("anthropic_claude_code_tool_actions", {
                **base, "customer_type": customer, "terminal_type": terminal, "tool": tool,
                "decision": "accepted"}) == n
        for (customer, terminal, model), amount in cents.items():
            assert registry.get_sample_value("anthropic_claude_code_estimated_cost_usd", {
                **base, "customer_type": customer, "terminal_type": terminal, "model": model}) == pytest.approx(
                amount / 100)
    assert checked > 5


def test_actor_labels_appear_only_with_per_actor(simulator, admin_key, clock):
    poller, registry = _setup(simulator, admin_key, clock)
    assert poller.poll("claude_code")
    text = [s for m in registry.collect() if m.name.startswith("anthropic_claude_code") for s in m.samples]
    assert text and all("actor" not in s.labels and "actor_type" not in s.labels for s in text)
    poller, registry = _setup(simulator, admin_key, clock, per_actor=True)
    assert poller.poll("claude_code")
    text = [s for m in registry.collect() if m.name.startswith("anthropic_claude_code") for s in m.samples]
    assert text and all("actor" in s.labels and "actor_type" in s.labels for s in text)
    assert any("@" in s.labels["actor"] for s in text)


def test_after_the_backfill_only_yesterday_and_today_are_read(simulator, admin_key, clock):
    from datetime import timedelta
    poller, _ = _setup(simulator, admin_key, clock)
    assert poller.poll("claude_code")
    assert len(simulator.requests) == 30  # every day of 30d, one page each
    for hours in (1, 2, 13):  # 13 hours on: a new day, so a new "yesterday"
        simulator.reset_requests()
        clock.now += timedelta(hours=1 if hours < 13 else 11)
        assert poller.poll("claude_code")
        days = sorted(r.query["starting_at"][0] for r in simulator.requests)
        today = clock().date()
        assert days == [(today - timedelta(days=1)).isoformat(), today.isoformat()]
