"""Config parsing: defaults, the bad-config table with the exact messages, redaction."""

from __future__ import annotations

import textwrap

import pytest

from exporter.config import (
    DEFAULT_WINDOWS,
    ConfigError,
    Window,
    format_duration,
    load_config,
    parse_duration,
    redacted_dump,
)

KEY = "sk-ant-admin01-SECRETSECRETSECRET"
ENV = {"ANTHROPIC_ADMIN_API_KEY": KEY}


def write(tmp_path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def problems_of(tmp_path, text: str, environ=ENV) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ)
    return info.value.problems


def test_no_file_means_one_default_organization_keyed_from_the_environment():
    config = load_config(None, ENV)
    assert [o.name for o in config.organizations] == ["default"]
    org = config.organizations[0]
    assert org.api_key.reveal() == KEY
    assert org.base_url == "https://api.anthropic.com"
    assert config.windows == DEFAULT_WINDOWS
    assert config.group_by == ("workspace_id", "api_key_id", "model", "service_tier", "context_window")
    assert (config.poll_intervals.usage, config.poll_intervals.cost) == (60, 300)


def test_no_file_and_no_key_is_one_clear_problem():
    with pytest.raises(ConfigError) as info:
        load_config(None, {})
    assert info.value.problems == [
        "organizations[0].api_key_env: environment variable ANTHROPIC_ADMIN_API_KEY is not set or empty"]


def test_the_example_config_is_valid(tmp_path):
    config = load_config("config.example.yaml", ENV)
    assert config.organizations[0].name == "acme"
    assert [w.name for w in config.windows] == ["1h", "24h", "7d", "30d", "today", "month"]


def test_full_config(tmp_path):
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY + "\n")
    config = load_config(write(tmp_path, f"""
        organizations:
          - name: acme
          - name: beta
            api_key_file: {keyfile}
            base_url: http://127.0.0.1:8080/
        poll_intervals: {{usage: 90s, cost: 10m, api_keys: 1h30m, workspaces: 2h}}
        usage:
          group_by: [model, inference_geo]
        windows:
          - {{name: 2h, span: 2h}}
          - {{name: 14d, span: 2w}}
          - {{name: today, calendar: day}}
        http: {{request_timeout: 5s, poll_timeout: 1m, max_requests_per_minute: 10}}
        stale_after: {{usage: never, cost: 1h}}
        refetch: {{1m: 20m, 1h: 6h, 1d: 2d}}
        full_refresh: 12h
        """), ENV)
    assert config.organizations[1].api_key.reveal() == KEY
    assert config.organizations[1].base_url == "http://127.0.0.1:8080"
    assert config.poll_intervals.api_keys == 5400
    assert config.group_by == ("model", "inference_geo")
    assert config.windows == (Window("2h", span=7200), Window("14d", span=14 * 86400),
                              Window("today", calendar="day"))
    assert (config.http.request_timeout, config.http.poll_timeout) == (5, 60)
    assert (config.stale_after.usage, config.stale_after.cost) == (None, 3600)
    assert config.refetch == {"1m": 1200, "1h": 6 * 3600, "1d": 2 * 86400}
    assert config.full_refresh == 12 * 3600


def test_defaults_of_the_new_keys():
    config = load_config(None, ENV)
    assert (config.stale_after.usage, config.stale_after.cost) == (900, 900)
    assert config.refetch == {"1m": 900, "1h": 3 * 3600, "1d": 3 * 86400}
    assert config.full_refresh == 6 * 3600


def test_stale_after_defaults_to_three_poll_intervals_when_longer_than_15m(tmp_path):
    config = load_config(write(tmp_path, "poll_intervals: {usage: 10m, cost: 2m}\n"), ENV)
    assert (config.stale_after.usage, config.stale_after.cost) == (1800, 900)


def test_the_older_window_form_still_works_as_a_span(tmp_path):
    config = load_config(write(tmp_path, """
        windows:
          - {name: 2h, bucket_width: 1m, buckets: 120}
          - {name: 7d, bucket_width: 1d, buckets: 7}
          - {name: today, bucket_width: 1d, calendar: day}
        """), ENV)
    assert config.windows == (Window("2h", span=7200), Window("7d", span=7 * 86400), Window("today", calendar="day"))


BAD_CONFIGS = [
    ("unknown top-level key", "organisations: []\n",
     ["organisations: unknown key (allowed: organizations, poll_intervals, usage, windows, http, stale_after,"
      " refetch, full_refresh, rate_limits, claude_code, pricing)"]),
    ("not a mapping", "- a\n- b\n", [": must be a mapping, got a list"]),
    ("bad base_url", "organizations: [{name: a, base_url: 'ftp://x'}]\n",
     ["organizations[0].base_url: 'ftp://x' is not an http(s) URL with a host"]),
    ("url with credentials", "organizations: [{name: a, base_url: 'https://u:p@h'}]\n",
     ["organizations[0].base_url: 'https://u:p@h' must not carry credentials, a query or a fragment"]),
    ("plain http to another host", "organizations: [{name: a, base_url: 'http://api.example.com'}]\n",
     ["organizations[0].base_url: 'http://api.example.com' must use https (plain http is allowed only for localhost)"]),
    ("unknown org key", "organizations: [{name: a, key: x}]\n",
     ["organizations[0].key: unknown key (allowed: name, api_key_env, api_key_file, base_url)"]),
    ("missing name", "organizations: [{base_url: 'https://h'}]\n",
     ["organizations[0].name: must be a non-empty string, got nothing"]),
    ("duplicate org", "organizations: [{name: a}, {name: a}]\n",
     ["organizations[1].name: duplicate organization name 'a'"]),
    ("missing env var", "organizations: [{name: a, api_key_env: NOPE}]\n",
     ["organizations[0].api_key_env: environment variable NOPE is not set or empty"]),
    ("unreadable key file", "organizations: [{name: a, api_key_file: /nonexistent/key}]\n",
     ["organizations[0].api_key_file: cannot read /nonexistent/key: No such file or directory"]),
    ("both key sources", "organizations: [{name: a, api_key_env: X, api_key_file: /k}]\n",
     ["organizations[0]: set api_key_env or api_key_file, not both"]),
    ("bad duration", "poll_intervals: {usage: 1 minute}\n",
     ["poll_intervals.usage: invalid duration '1 minute' (expected e.g. 30s, 5m, 1h30m)"]),
    ("duration of wrong type", "poll_intervals: {cost: [1]}\n",
     ["poll_intervals.cost: must be a duration such as 60s or 5m, got a list"]),
    ("unknown group_by", "usage: {group_by: [model, user]}\n",
     ["usage.group_by[1]: unknown dimension 'user' (allowed: workspace_id, api_key_id, model, "
      "service_tier, context_window, inference_geo, speed, account_id, service_account_id)"]),
    ("span too long", "windows: [{name: w, span: 32d}]\n",
     ["windows[0].span: 32d cannot be served: the longest span is 31d (summed from 1h buckets); use calendar:"
      " month for a month"]),
    ("span not whole minutes", "windows: [{name: w, span: 90s}]\n",
     ["windows[0].span: 1m30s is summed from 1m buckets, so it must be a whole number of minutes"]),
    ("span over a day not whole hours", "windows: [{name: w, span: 25h30m}]\n",
     ["windows[0].span: 1d1h30m is summed from 1h buckets, so it must be a whole number of hours"]),
    ("bad span", "windows: [{name: w, span: a week}]\n",
     ["windows[0].span: invalid duration 'a week' (expected e.g. 30s, 5m, 1h30m)"]),
    ("neither span nor calendar", "windows: [{name: w}]\n",
     ["windows[0]: set exactly one of span or calendar"]),
    ("both span and calendar", "windows: [{name: w, span: 1h, calendar: day}]\n",
     ["windows[0]: set exactly one of span or calendar"]),
    ("old form: width of the wrong type", "windows: [{name: w, bucket_width: [1d], buckets: 2}]\n",
     ["windows[0].bucket_width: must be one of 1m, 1h, 1d, got ['1d'] (bucket_width and buckets are deprecated:"
      " write span, e.g. {name: 7d, span: 7d})"]),
    ("old form: bad width", "windows: [{name: w, bucket_width: 5m, buckets: 2}]\n",
     ["windows[0].bucket_width: must be one of 1m, 1h, 1d, got '5m' (bucket_width and buckets are deprecated:"
      " write span, e.g. {name: 7d, span: 7d})"]),
    ("old form: too long", "windows: [{name: w, bucket_width: 1d, buckets: 40}]\n",
     ["windows[0].span: 40d cannot be served: the longest span is 31d (summed from 1h buckets); use calendar:"
      " month for a month"]),
    ("old form mixed with span", "windows: [{name: w, bucket_width: 1h, buckets: 2, span: 2h}]\n",
     ["windows[0]: set span or calendar, not the deprecated bucket_width and buckets as well"]),
    ("bad stale_after", "stale_after: {usage: always, traffic: 5m}\n",
     ["stale_after.traffic: unknown key (allowed: usage, cost, claude_code)",
      "stale_after.usage: invalid duration 'always' (expected e.g. 30s, 5m, 1h30m)"]),
    ("refetch below one bucket", "refetch: {1h: 30m, 1w: 1d}\n",
     ["refetch.1w: unknown key (allowed: 1m, 1h, 1d)",
      "refetch.1h: must be at least one bucket (1h), got '30m'"]),
    ("bad pricing", "pricing: {discount: 1.5, models: {claude-x: {input: a lot}}}\n",
     ["pricing.discount: must be a number from 0 up to (not including) 1, got 1.5",
      "pricing.models.claude-x.input: must be a non-negative number, got 'a lot'",
      "pricing.models.claude-x.output: must be a non-negative number, got nothing"]),
    ("bad full_refresh", "full_refresh: [6h]\n",
     ["full_refresh: must be a duration such as 60s or 5m, got a list"]),
    ("unknown calendar", "windows: [{name: w, calendar: week}]\n",
     ["windows[0].calendar: must be day or month, got 'week'"]),
    ("duplicate window", "windows: [{name: w, calendar: day}, {name: w, calendar: month}]\n",
     ["windows[1].name: duplicate window name 'w'"]),
    ("bad rate", "http: {max_requests_per_minute: 500}\n",
     ["http.max_requests_per_minute: must be an integer from 1 to 100, got 500"]),
]


@pytest.mark.parametrize("text,expected", [(t, e) for _, t, e in BAD_CONFIGS],
                         ids=[name for name, _, _ in BAD_CONFIGS])
def test_bad_config(tmp_path, text, expected):
    assert problems_of(tmp_path, text) == expected


def test_pricing_overrides_apply_and_round_trip(tmp_path):
    config = load_config(write(tmp_path, """
        pricing:
          discount: 0.25
          models: {claude-in-house-1: {input: 4, output: 8}}
        """), ENV)
    from datetime import UTC, datetime
    at = datetime(2026, 12, 1, tzinfo=UTC)
    assert config.pricing.price("claude-in-house-1", at=at, input=1_000_000, output=1_000_000) == 9  # (4 + 8) x 0.75
    assert config.pricing.price("claude-sonnet-5", at=at, input=1_000_000) == 1.5  # 2 x 0.75
    assert load_config(write(tmp_path, redacted_dump(config)), ENV) == config


def test_a_key_that_cannot_go_in_a_header_is_refused_without_showing_it(tmp_path):
    keyfile = tmp_path / "key"
    keyfile.write_text("sk-ant-admin01-first\nsecond-line\n")
    problems = problems_of(tmp_path, f"organizations: [{{name: a, api_key_file: {keyfile}}}]\n")
    assert problems == [f"organizations[0].api_key_file: the key in {keyfile} holds whitespace or non-ASCII characters"]


def test_a_config_that_is_not_utf8(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"organizations: [{name: \xff}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), ENV)
    assert info.value.problems == [f"{path}: config file is not UTF-8 text"]


def test_every_problem_is_reported_at_once(tmp_path):
    problems = problems_of(tmp_path, """
        organizations:
          - {name: a, base_url: nope, api_key_env: MISSING}
        poll_intervals: {usage: soon}
        windows: [{name: w, span: 45d}]
        extra: 1
        """)
    assert problems == [
        "extra: unknown key (allowed: organizations, poll_intervals, usage, windows, http, stale_after, refetch,"
        " full_refresh, rate_limits, claude_code, pricing)",
        "organizations[0].base_url: 'nope' is not an http(s) URL with a host",
        "organizations[0].api_key_env: environment variable MISSING is not set or empty",
        "poll_intervals.usage: invalid duration 'soon' (expected e.g. 30s, 5m, 1h30m)",
        "windows[0].span: 45d cannot be served: the longest span is 31d (summed from 1h buckets); use calendar:"
        " month for a month",
    ]


def test_invalid_yaml_names_the_place(tmp_path):
    problems = problems_of(tmp_path, "organizations: [\n")
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path / 'config.yaml'}: invalid YAML (line 2, column 1)")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "absent.yaml"), ENV)
    assert info.value.problems == [f"{tmp_path / 'absent.yaml'}: cannot read config file: No such file or directory"]


def test_secret_never_in_repr_or_dump():
    config = load_config(None, ENV)
    assert KEY not in repr(config)
    assert KEY not in str(config.organizations[0].api_key)
    dump = redacted_dump(config)
    assert KEY not in dump
    assert "api_key_env: ANTHROPIC_ADMIN_API_KEY" in dump


def test_dump_round_trips(tmp_path):
    config = load_config(None, ENV)
    again = load_config(write(tmp_path, redacted_dump(config)), ENV)
    assert again == config


def test_a_dump_with_every_duration_form_loads_again_unchanged(tmp_path):
    config = load_config(write(tmp_path, """
        poll_intervals: {usage: 90s, cost: 1h30m, api_keys: 1500ms, workspaces: 2w}
        http: {request_timeout: 2s250ms, poll_timeout: 3601}
        windows: [{name: a, span: 23h59m}, {name: b, span: 31d}, {name: c, calendar: month}]
        stale_after: {usage: never, cost: 1d1s}
        full_refresh: 25h
        """), ENV)
    dumped = redacted_dump(config)
    assert "api_keys: 1s500ms" in dumped and "1.5s" not in dumped
    assert load_config(write(tmp_path, dumped), ENV) == config


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("5m", 300), ("1h30m", 5400), ("1d", 86400),
                                          ("1w", 604800), ("250ms", 0.25)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m", "1.5h", "5 m", "-1s", "1s1h"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration():
    assert [format_duration(s) for s in (30, 60, 300, 3600, 5400, 86400, 1.5, 0.25, 90061.001)] == [
        "30s", "1m", "5m", "1h", "1h30m", "1d", "1s500ms", "250ms", "1d1h1m1s1ms"]


@pytest.mark.parametrize("text", ["1ms", "999ms", "1s", "1s500ms", "59s", "1m", "1m1s", "90m", "1h", "1h30m",
                                  "23h59m59s999ms", "1d", "1d1h", "7d", "1w", "2w3d", "31d"])
def test_every_duration_form_round_trips(text):
    seconds = parse_duration(text)
    assert parse_duration(format_duration(seconds)) == seconds
