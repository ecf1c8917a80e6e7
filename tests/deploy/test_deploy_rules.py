"""Static checks of deploy/: only contract metrics, gauges used as gauges, rules tested and documented."""

from __future__ import annotations

import importlib.util
import re

import pytest
import yaml

from .support import (
    DEPLOY,
    EXPORTER_JOB,
    PROMETHEUS_DIR,
    REPO,
    SYNTHETIC_SERIES,
    alert_rules,
    contract_labels,
    contract_metrics,
    dashboard_queries,
    expand_grafana,
    recording_rules,
    rule_files,
    rule_test_files,
    rules,
    run,
    selectors,
    windowed_metrics,
)

QUERIES = dashboard_queries()
RULES = rules()
# (where, PromQL) of everything shipped: dashboard panels and variables, recording and alert rules.
EXPRESSIONS = [(q.id, expand_grafana(q.expr)) for q in QUERIES] + [
    (f"{r['file']}: {r.get('alert') or r.get('record')}", r["expr"]) for r in RULES
]
# The same without the variables, which only look label values up.
VALUE_EXPRESSIONS = [(q.id, expand_grafana(q.expr)) for q in QUERIES if q.kind == "panel"] + EXPRESSIONS[len(QUERIES):]
RECORDED = {r["record"] for r in recording_rules()}


def produced_series() -> set[str]:
    names = set()
    for metric in contract_metrics().values():
        names |= metric.series_names()
    return names


def test_the_contract_parser_sees_every_kind_of_metric():
    metrics = contract_metrics()
    assert metrics["anthropic_client_request_duration_seconds"].type == "histogram"
    assert metrics["anthropic_client_time_to_first_token_seconds"].type == "histogram"
    assert metrics["anthropic_client_errors_total"].type == "counter"
    assert metrics["anthropic_exporter_poll_errors_total"].type == "counter"
    assert metrics["anthropic_cost_usd"].type == "gauge"
    assert metrics["anthropic_usage_cache_creation_input_tokens"].type == "gauge"
    assert metrics["anthropic_client_in_flight_requests"].type == "gauge"
    assert {"anthropic_api_key_info", "anthropic_workspace_info", "anthropic_exporter_build_info"} <= set(metrics)
    assert len(metrics) >= 30
    assert contract_labels()["anthropic_client_ratelimit_remaining"] == {"model", "resource"}


def test_the_scanner_finds_selectors_offsets_and_functions():
    found = selectors('sum by (a, window) (rate(x_total{a="1", b=~"p|q"}[5m])) / on (a) group_left (c) '
                      'y_info > 2 * sum(z{w="today"} offset 1d) and on () day_of_month() >= 3')
    assert [(s.name, s.function, s.range, s.offset) for s in found] == [
        ("x_total", "rate", "5m", None), ("y_info", None, None, None), ("z", "sum", None, "1d")]
    assert found[0].matchers == {"a": ("=", "1"), "b": ("=~", "p|q")}


@pytest.mark.parametrize("where, expr", EXPRESSIONS, ids=[w for w, _ in EXPRESSIONS])
def test_every_metric_named_is_one_the_exporter_produces(where, expr):
    allowed = produced_series() | RECORDED | SYNTHETIC_SERIES
    unknown = {s.name for s in selectors(expr)} - allowed
    assert not unknown, f"{where} names metrics outside docs/metrics.md and the recording rules: {sorted(unknown)}"


@pytest.mark.parametrize("where, expr", EXPRESSIONS, ids=[w for w, _ in EXPRESSIONS])
def test_every_label_matched_is_one_the_metric_has(where, expr):
    labels = contract_labels()
    for sel in selectors(expr):
        base = re.sub(r"_(bucket|count|sum)$", "", sel.name) if sel.name not in labels else sel.name
        if base not in labels:
            continue  # recording rules and Prometheus's own series
        allowed = labels[base] | {"job", "instance"} | ({"le"} if sel.name.endswith("_bucket") else set())
        assert set(sel.matchers) <= allowed, (
            f"{where}: {sel.name} has no label {sorted(set(sel.matchers) - allowed)} (docs/metrics.md: {sorted(allowed)})")


@pytest.mark.parametrize("where, expr", EXPRESSIONS, ids=[w for w, _ in EXPRESSIONS])
def test_windowed_gauges_are_never_rated(where, expr):
    """Usage and cost figures are gauges of windowed sums: rate() or increase() of them is wrong."""
    for sel in selectors(expr):
        if sel.name in windowed_metrics():
            assert sel.range is None, f"{where}: {sel.name}[{sel.range}] treats a windowed sum as a counter"


@pytest.mark.parametrize("where, expr", VALUE_EXPRESSIONS, ids=[w for w, _ in VALUE_EXPRESSIONS])
def test_counters_and_histograms_are_rated(where, expr):
    """A raw counter value (since the process started) means nothing on a dashboard or in an alert."""
    counters = {n for n, m in contract_metrics().items() if m.type == "counter"}
    counters |= {f"{n}_{s}" for n, m in contract_metrics().items() if m.type == "histogram"
                 for s in ("bucket", "count", "sum")}
    for sel in selectors(expr):
        if sel.name in counters:
            assert sel.function in ("rate", "irate", "increase"), f"{where}: {sel.name} is used without rate()"


def test_dashboards_and_alerts_pick_one_window_of_the_windowed_gauges():
    """Summing a windowed gauge across windows adds the same tokens up several times."""
    windowed = windowed_metrics() | {name for name in RECORDED if ":anthropic_usage_" in name or ":anthropic_cost_" in name}
    checked = [(q.id, expand_grafana(q.expr)) for q in QUERIES if q.kind == "panel"]
    checked += [(r["alert"], r["expr"]) for r in alert_rules()]
    for where, expr in checked:
        for sel in selectors(expr):
            if sel.name in windowed:
                assert sel.matchers.get("window", ("", ""))[0] == "=", f"{where}: {sel.name} without window=\"...\""


def test_recording_rules_keep_the_window_label():
    for rule in recording_rules():
        if any(s.name in windowed_metrics() for s in selectors(rule["expr"])):
            lists = re.findall(r"\bby \(([^)]*)\)", rule["expr"])
            assert lists and all("window" in lst for lst in lists), f"{rule['record']} drops window: {rule['expr']}"


def test_recording_rules_are_named_level_metric_operation():
    for rule in recording_rules():
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+(:[a-z0-9_]+)?", rule["record"]), rule["record"]


def test_alerts_carry_severity_summary_description_and_runbook():
    names = [r["alert"] for r in alert_rules()]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description", "runbook"}, rule["alert"]
        for text in rule["annotations"].values():
            assert len(text) > 20 and "\n" not in text, rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["alert"]


def test_the_alerts_the_issue_asks_for_exist():
    names = {r["alert"] for r in alert_rules()}
    assert {"AnthropicExporterDown", "AnthropicExporterPollsFailing", "AnthropicExporterPollStale",
            "AnthropicReportDataDelayed", "AnthropicSpendSpike", "AnthropicTokenUsageSpike",
            "AnthropicMonthlyBudgetWarning", "AnthropicMonthlyBudgetExceeded",
            "AnthropicMonthlyBudgetForecastExceeded", "AnthropicClientErrorRatioHigh",
            "AnthropicClientLatencyHigh", "AnthropicRateLimitHeadroomLow",
            "AnthropicRateLimitPeakUtilizationHigh", "AnthropicEstimatedSpendSpike",
            "AnthropicPriceTableDrift"} <= names
    by_name = {r["alert"]: r["expr"] for r in alert_rules()}
    assert "anthropic_exporter_data_timestamp_seconds" in by_name["AnthropicReportDataDelayed"]
    assert "anthropic_exporter_last_success_timestamp_seconds" in by_name["AnthropicExporterPollStale"]
    assert {"1h", "7d"} <= {s.matchers["window"][1] for s in selectors(by_name["AnthropicTokenUsageSpike"])}
    assert f'job="{EXPORTER_JOB}"' in by_name["AnthropicExporterDown"]


def test_every_alert_is_explained_in_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for rule in alert_rules():
        assert re.search(rf"^#+ .*`?{rule['alert']}`?", readme, re.MULTILINE), f"{rule['alert']} has no README section"


def readme_alert_section(alert: str) -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"^#+ `?{alert}`?\n(.*?)(?=^#)", readme, re.MULTILINE | re.DOTALL)
    assert match, f"{alert} has no README section"
    return " ".join(match.group(1).split())


def test_the_readme_gives_the_poll_stale_thresholds_of_the_rule():
    """Usage and cost figures are withheld after stale_after (15 minutes by default), Claude Code
    figures after 3 hours: the README says when the alert fires, and that the figures are then
    withheld. Every report the exporter polls is covered."""
    (rule,) = [r for r in alert_rules() if r["alert"] == "AnthropicExporterPollStale"]
    units = {"60": "minutes", "3600": "hours"}
    thresholds = re.findall(r'\{report=~"([a-z_|]+)"\} > (\d+) \* (60|3600)\b', rule["expr"])
    assert {reports for reports, _, _ in thresholds} == {"usage|cost", "api_keys|workspaces|rate_limits|claude_code"}, \
        rule["expr"]
    assert ("usage|cost", "15", "60") in thresholds, "usage and cost figures are withheld after 15 minutes"
    assert ("api_keys|workspaces|rate_limits|claude_code", "3", "3600") in thresholds, "Claude Code: after 3 hours"
    section = readme_alert_section("AnthropicExporterPollStale")
    for _, number, unit in thresholds:
        assert f"{number} {units[unit]}" in section, f"the README does not say {number} {units[unit]}"
    duration = re.fullmatch(r"(\d+)m", rule["for"])
    assert duration and f"for {duration.group(1)} minutes" in section
    assert "withheld" in section and "stale_after" in section


def test_the_peak_utilization_alert_reads_the_last_hour_and_the_readme_says_how_to_act():
    """The busiest minute of the last hour against the organization's limit, the group named in
    the description; the README gives the threshold, the wait, and what the figure cannot see."""
    (rule,) = [r for r in alert_rules() if r["alert"] == "AnthropicRateLimitPeakUtilizationHigh"]
    (sel,) = selectors(rule["expr"])
    assert sel.name == "anthropic_rate_limit_peak_utilization" and sel.matchers == {"window": ("=", "1h")}
    threshold = re.fullmatch(r"\S+ > (0\.\d+)", rule["expr"].strip())
    assert threshold, rule["expr"]
    assert "anthropic_rate_limit_group_info" in rule["annotations"]["description"]
    section = readme_alert_section("AnthropicRateLimitPeakUtilizationHigh")
    percent = f"{round(float(threshold.group(1)) * 100)}%"
    minutes = re.fullmatch(r"(\d+)m", rule["for"])
    assert minutes and f"{percent} " in section and f"{minutes.group(1)} minutes" in section
    for words in ("group_by", "requests_per_minute", "anthropic_rate_limit_group_info", "Rate limits",
                  "anthropic_workspace_rate_limit", "prompt caching"):
        assert words in section, words


def test_the_estimated_spend_spike_compares_the_exporters_windows_and_the_readme_gives_its_numbers():
    """The last hour's estimated spend against the 7d window's hourly average, per organization and
    workspace: no offset, so no Prometheus history needed. The README gives the factor, the floor
    and the wait of the rule."""
    (rule,) = [r for r in alert_rules() if r["alert"] == "AnthropicEstimatedSpendSpike"]
    found = selectors(rule["expr"])
    assert {s.name for s in found} == {"anthropic_usage_estimated_cost_usd"}
    assert {s.matchers["window"][1] for s in found} == {"1h", "7d"}
    assert all(s.offset is None and s.range is None for s in found)
    assert rule["expr"].count("sum by (organization, workspace_id)") == len(found)
    floor = re.search(r'\{window="1h"\}\) > (\d+)\n', rule["expr"])
    factor = re.search(r"> (\d+) \* sum by", rule["expr"])
    assert floor and factor, rule["expr"]
    assert "/ (167 + (time() % 3600) / 3600)" in rule["expr"]
    section = readme_alert_section("AnthropicEstimatedSpendSpike")
    minutes = re.fullmatch(r"(\d+)m", rule["for"])
    assert minutes and f"{minutes.group(1)} minutes" in section
    assert f"({factor.group(1)})" in section and f"({floor.group(1)} USD per hour)" in section
    assert f"more than {floor.group(1)} USD" in rule["annotations"]["description"]
    assert "no Prometheus history" in section


def test_the_budget_alerts_read_the_month_to_date_with_todays_estimate():
    """Warning and Exceeded compare the month to date with today's estimate (so they react within
    minutes); the forecast stays quiet once that is over the budget."""
    (record,) = [r for r in recording_rules() if r["record"] == "organization:anthropic_cost_with_estimate_usd:sum"]
    assert {(s.name, s.matchers.get("window", ("", ""))[1]) for s in selectors(record["expr"])} == {
        ("organization:anthropic_cost_usd:sum", "today|month"), ("organization:anthropic_cost_usd:sum", "today"),
        ("organization:anthropic_cost_usd:sum", "month"), ("anthropic_usage_estimated_cost_usd", "today")}
    assert "clamp_min(" in record["expr"], "today counts the larger of reported and estimated, never both"
    by_name = {r["alert"]: r["expr"] for r in alert_rules()}
    for name in ("AnthropicMonthlyBudgetWarning", "AnthropicMonthlyBudgetExceeded",
                 "AnthropicMonthlyBudgetForecastExceeded"):
        assert 'organization:anthropic_cost_with_estimate_usd:sum{window="month"}' in by_name[name], name
    for name in ("AnthropicMonthlyBudgetWarning", "AnthropicMonthlyBudgetExceeded"):
        assert "organization:anthropic_cost_usd:sum" not in by_name[name], name
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert "month to date = reported month - reported today + max(reported today, estimated today)" in readme


def test_the_price_table_drift_alert_and_its_runbook():
    """The estimate ÷ bill ratio outside a band for a day; the README gives the band and the day,
    and says what to check: the table (prices), a discount, a stale table."""
    (rule,) = [r for r in alert_rules() if r["alert"] == "AnthropicPriceTableDrift"]
    band = re.search(r"anthropic_cost_estimate_ratio < (0\.\d+) or anthropic_cost_estimate_ratio > (1\.\d+)",
                     rule["expr"])
    assert band, rule["expr"]
    assert rule["for"] == "1d"
    section = readme_alert_section("AnthropicPriceTableDrift")
    assert f"({band.group(1)}, {band.group(2)})" in section and f"outside {band.group(1)} to {band.group(2)}" in section
    for words in ("anthropic-usage-exporter prices", "pricing.discount", "stale", "pricing.models", "a whole day",
                  "speed"):
        assert words in section, words
    for words in ("anthropic-usage-exporter prices", "pricing.discount", "stale"):
        assert words in rule["annotations"]["runbook"], words


def test_every_rule_has_promtool_tests_that_fire_and_do_not_fire():
    fired, quiet, recorded = set(), set(), set()
    for path in rule_test_files():
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
            for check in case.get("promql_expr_test", []):
                recorded |= {s.name for s in selectors(check["expr"])}
    alerts = {r["alert"] for r in alert_rules()}
    assert alerts - fired == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested not firing"
    assert RECORDED - recorded == set(), "recording rules without a promql_expr_test"


def test_promtool_check_rules(promtool):
    result = run([promtool, "check", "rules", *map(str, rule_files())])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(rule_files())


def test_promtool_check_config(promtool):
    result = run([promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rule_files())} rule files found" in result.stdout


def test_the_shipped_prometheus_config_scrapes_the_exporter_and_loads_every_rule_file():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs[EXPORTER_JOB]["static_configs"][0]["targets"] == ["exporter:10711"]
    assert jobs[EXPORTER_JOB].get("metrics_path", "/metrics") == "/metrics"
    assert "anthropic-client-applications" in jobs
    loaded = {(PROMETHEUS_DIR / f).resolve() for f in config["rule_files"]}
    assert loaded == {p.resolve() for p in rule_files()}


def test_promtool_rule_unit_tests(promtool):
    files = rule_test_files()
    assert len(files) >= 4
    result = run([promtool, "test", "rules", *map(str, files)], cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files), result.stdout


def test_generated_files_are_up_to_date():
    spec = importlib.util.spec_from_file_location("deploy_generate", DEPLOY / "generate.py")
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for path, text in generate.generated().items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run python deploy/generate.py"
