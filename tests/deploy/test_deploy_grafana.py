"""The Grafana dashboards: schema, the ${datasource} variable, layout, and the panels the issues ask for."""

from __future__ import annotations

import re

import pytest
import yaml

from .support import alert_rules, dashboard_files, expand_grafana, load_dashboard, panels, run, selectors

DASHBOARDS = {path.stem: load_dashboard(path) for path in dashboard_files()}
SPEND = "anthropic-spend-usage"
CLIENT = "anthropic-client-latency"
HEALTH = "anthropic-exporter-health"
CLAUDE_CODE = "anthropic-claude-code"
DS = {"type": "prometheus", "uid": "${datasource}"}


def test_the_four_dashboards_exist_with_unique_uids():
    assert set(DASHBOARDS) == {SPEND, CLIENT, HEALTH, CLAUDE_CODE}
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == 4 and all(re.fullmatch(r"[a-z0-9-]{1,40}", u) for u in uids)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_schema_and_datasource_variable(name):
    dash = DASHBOARDS[name]
    assert dash["schemaVersion"] == 39
    assert dash["id"] is None, "an exported id would clash on import"
    assert dash["title"].startswith("Anthropic")
    variables = dash["templating"]["list"]
    assert variables[0]["name"] == "datasource" and variables[0]["type"] == "datasource"
    assert variables[0]["query"] == "prometheus"
    for var in variables[1:]:
        if var["type"] == "query":
            assert var["datasource"] == DS, var["name"]
    for panel in panels(dash):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DS, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DS, panel["title"]
            assert target["expr"].strip()


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_no_datasource_is_hard_coded(name):
    text = (dashboard_files()[0].parent / f"{name}.json").read_text(encoding="utf-8")
    uids = set(re.findall(r'"uid":\s*"([^"]*)"', text)) - {DASHBOARDS[name]["uid"]}
    assert uids <= {"${datasource}", "-- Grafana --"}, uids


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_layout_ids_are_unique_and_panels_do_not_overlap(name):
    seen_ids, cells = set(), set()
    for panel in panels(DASHBOARDS[name]):
        assert panel["id"] not in seen_ids
        seen_ids.add(panel["id"])
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


@pytest.mark.parametrize("name, required", [
    (SPEND, {"datasource", "organization", "workspace", "model", "window"}),
    (CLIENT, {"datasource", "job", "model", "operation"}),
    (HEALTH, {"datasource", "job", "organization"}),
    (CLAUDE_CODE, {"datasource", "organization", "customer_type", "terminal_type", "code_window"}),
])
def test_template_variables(name, required):
    variables = {v["name"]: v for v in DASHBOARDS[name]["templating"]["list"]}
    assert required <= set(variables)
    for var in variables.values():
        if var["type"] == "query":
            assert var["includeAll"] and var["allValue"] == ".*" and var["multi"], var["name"]
    used = " ".join(t["expr"] for p in panels(DASHBOARDS[name]) for t in p.get("targets", []))
    for var in required - {"datasource"}:
        assert f"${var}" in used, f"${var} is defined but no panel uses it"


def exprs(name: str, title_pattern: str) -> list[str]:
    found = [t["expr"] for p in panels(DASHBOARDS[name]) if re.search(title_pattern, p["title"], re.I)
             for t in p.get("targets", [])]
    assert found, f"{name}: no panel titled like {title_pattern!r}"
    return found


def test_spend_dashboard_panels():
    assert any('window="today"' in e and "anthropic_cost_usd" in e for e in exprs(SPEND, r"spend today \(UTC\)"))
    assert any('window="month"' in e for e in exprs(SPEND, r"spend this month$"))
    assert any("by (organization, workspace_id)" in e and "group_left (workspace_name) anthropic_workspace_info" in e
               for e in exprs(SPEND, r"spend .* by workspace"))
    assert any("by (model)" in e for e in exprs(SPEND, r"spend .* by model"))
    (by_key,) = exprs(SPEND, r"by API key")
    assert "* on (organization, api_key_id) group_left (api_key_name) anthropic_api_key_info" in by_key
    kinds = exprs(SPEND, r"tokens by kind")
    assert {"anthropic_usage_uncached_input_tokens", "anthropic_usage_cache_read_input_tokens",
            "anthropic_usage_cache_creation_input_tokens", "anthropic_usage_output_tokens"} <= \
        {m for e in kinds for m in re.findall(r"anthropic_usage_\w+", e)}
    assert any("anthropic_usage_cache_read_input_tokens" in e for e in exprs(SPEND, r"cache hit ratio"))
    assert any("anthropic_usage_web_search_requests" in e for e in exprs(SPEND, r"web searches"))


def test_client_dashboard_panels_and_exemplars():
    latency = [p for p in panels(DASHBOARDS[CLIENT]) if re.search(r"request duration p50", p["title"], re.I)]
    assert len(latency) == 1
    quantiles = {re.search(r"histogram_quantile\(([\d.]+)", t["expr"]).group(1) for t in latency[0]["targets"]}
    assert quantiles == {"0.5", "0.95", "0.99"}
    assert all(t.get("exemplar") is True for t in latency[0]["targets"]), "exemplars on the latency panel"
    assert all("by (model, le)" in t["expr"] for t in latency[0]["targets"])
    assert any("anthropic_client_time_to_first_token_seconds_bucket" in e for e in exprs(CLIENT, r"first token"))
    assert any("by (error_type)" in e for e in exprs(CLIENT, r"errors by type"))
    assert any("anthropic_client_retries_total" in e for e in exprs(CLIENT, r"retries"))
    assert any("anthropic_client_ratelimit_remaining" in e and "anthropic_client_ratelimit_limit" in e
               for e in exprs(CLIENT, r"headroom"))


def test_rate_limit_panels_of_the_spend_dashboard():
    """Peak utilization per group and limiter, the last hour (with the alert's threshold drawn)
    and the last 24 hours, named from anthropic_rate_limit_group_info; the limits themselves."""
    alert = next(r for r in alert_rules() if r["alert"] == "AnthropicRateLimitPeakUtilizationHigh")
    threshold = float(re.search(r"> ([\d.]+)\s*$", alert["expr"]).group(1))
    (hour,) = [p for p in panels(DASHBOARDS[SPEND]) if re.search(r"peak .*utilization.*last hour", p["title"], re.I)]
    (expr,) = [t["expr"] for t in hour["targets"]]
    peaks = [s for s in selectors(expr) if s.name == "anthropic_rate_limit_peak_utilization"]
    assert peaks and all(s.matchers["window"] == ("=", "1h") for s in peaks)
    assert "group_left (group_name)" in expr and "anthropic_rate_limit_group_info" in expr
    assert "by (organization, group_id, limit_type)" in expr
    steps = hour["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"color": "red", "value": threshold}
    assert hour["fieldConfig"]["defaults"]["unit"] == "percentunit"
    for word in ("group_by", "requests_per_minute", "AnthropicRateLimitPeakUtilizationHigh"):
        assert word in hour["description"], word
    (day,) = exprs(SPEND, r"peak .*utilization.*24 hours")
    assert {s.matchers["window"] for s in selectors(day) if s.name == "anthropic_rate_limit_peak_utilization"} == {
        ("=", "24h")}
    assert any("anthropic_rate_limit{" in e for e in exprs(SPEND, r"organization rate limits"))
    assert any("anthropic_workspace_rate_limit" in e for e in exprs(SPEND, r"workspace rate limits"))


def test_estimated_spend_panels_of_the_spend_dashboard():
    """The live estimate per hour beside the reported cost per day, the estimate-to-bill ratio
    per workspace and model, the unpriced tokens by model."""
    (hour,) = exprs(SPEND, r"^estimated spend per hour by workspace$")
    assert {(s.name, s.matchers["window"][1]) for s in selectors(hour) if s.name.startswith("anthropic_usage")} == {
        ("anthropic_usage_estimated_cost_usd", "1h")}
    assert "group_left (workspace_name) anthropic_workspace_info" in hour
    day = exprs(SPEND, r"^spend per day: reported and estimated$")
    assert {(s.name, s.matchers["window"][1]) for e in day for s in selectors(e)} == {
        ("anthropic_cost_usd", "today"), ("anthropic_usage_estimated_cost_usd", "today")}
    panel_titles = [p["title"] for p in panels(DASHBOARDS[SPEND])]
    assert panel_titles.index("Spend per day: reported and estimated") == \
        panel_titles.index("Estimated spend per hour by workspace") + 1, "side by side"
    (ratio,) = exprs(SPEND, r"^estimate ÷ bill by workspace and model")
    assert "by (organization, workspace_id, model) (anthropic_cost_estimate_ratio" in ratio
    (unpriced,) = exprs(SPEND, r"^unpriced tokens by model$")
    assert "sum by (model) (anthropic_usage_unpriced_tokens{window=\"$window\"" in unpriced
    (month,) = exprs(SPEND, r"^month to date with today's estimate$")
    assert 'organization:anthropic_cost_with_estimate_usd:sum{window="month"' in month
    assert any("anthropic_pricing_info" in e for e in exprs(SPEND, r"^price table$"))


def test_claude_code_dashboard_panels():
    dash = DASHBOARDS[CLAUDE_CODE]
    assert dash["title"] == "Anthropic: Claude Code"
    for title, metric in ((r"^active users and keys$", "anthropic_claude_code_active_actors"),
                          (r"^sessions$", "anthropic_claude_code_sessions"),
                          (r"^commits$", "anthropic_claude_code_commits"),
                          (r"^pull requests$", "anthropic_claude_code_pull_requests")):
        assert any(metric in e for e in exprs(CLAUDE_CODE, title)), title
    assert any('change="added"' in e for e in exprs(CLAUDE_CODE, r"^lines added$"))
    assert any('change="removed"' in e for e in exprs(CLAUDE_CODE, r"^lines removed$"))
    (rate,) = exprs(CLAUDE_CODE, r"tool acceptance rate")
    accepted, decided = selectors(rate)
    assert accepted.matchers["decision"] == ("=", "accepted")
    assert decided.matchers["decision"] == ("=~", "accepted|rejected")
    assert rate.count("sum by (tool)") == 2 and "> 0)" in rate
    assert any("by (model, token_type)" in e and "anthropic_claude_code_tokens" in e
               for e in exprs(CLAUDE_CODE, r"tokens by model"))
    assert any("by (model)" in e and "anthropic_claude_code_estimated_cost_usd" in e
               for e in exprs(CLAUDE_CODE, r"estimated cost by model"))
    # Every windowed figure is read at the picked window, which offers the report's windows only.
    window = next(v for v in dash["templating"]["list"] if v["name"] == "code_window")
    assert [o["value"] for o in window["options"]] == ["today", "7d", "30d", "month"]
    for panel in panels(dash):
        for t in panel.get("targets", []):
            for sel in selectors(t["expr"]):
                assert sel.matchers["window"] == ("=", "$code_window"), panel["title"]


def test_every_window_picked_is_one_the_metric_has():
    """A window the report does not serve gives an empty panel: cost and Claude Code figures have
    only the windows of whole days, the peak utilization only the windows of 1m buckets. A
    Grafana variable stands for each of its options."""
    windows = {"usage": {"1h", "24h", "7d", "30d", "today", "month"}, "days": {"7d", "30d", "today", "month"},
               "minutes": {"1h", "24h"}}
    kind = {"anthropic_cost_usd": "days", "anthropic_rate_limit_peak_utilization": "minutes"}
    for name, dash in DASHBOARDS.items():
        options = {f"${v['name']}": {o["value"] for o in v["options"]} for v in dash["templating"]["list"]
                   if v["type"] == "custom"}
        for panel in panels(dash):
            for t in panel.get("targets", []):
                for sel in selectors(t["expr"]):
                    if "window" not in sel.matchers:
                        continue
                    allowed = windows[kind.get(sel.name, "days" if sel.name.startswith("anthropic_claude_code_")
                                                else "usage")]
                    value = sel.matchers["window"][1]
                    picked = options.get(value, {value})
                    assert picked <= allowed, f"{name}: {panel['title']}: {sel.name} has no window {picked - allowed}"
    for rule in alert_rules():
        for sel in selectors(rule["expr"]):
            if sel.name == "anthropic_rate_limit_peak_utilization":
                assert sel.matchers["window"][1] in windows["minutes"], rule["alert"]


def test_health_dashboard_panels():
    text = " ".join(t["expr"] for p in panels(DASHBOARDS[HEALTH]) for t in p.get("targets", []))
    for metric in ("anthropic_exporter_up", "anthropic_exporter_last_success_timestamp_seconds",
                   "anthropic_exporter_data_timestamp_seconds", "anthropic_exporter_poll_duration_seconds",
                   "anthropic_exporter_api_requests_total", "anthropic_exporter_poll_errors_total",
                   "anthropic_exporter_skipped_rows", "anthropic_exporter_build_info"):
        assert metric in text, metric


def test_the_health_dashboard_says_why_usage_and_cost_figures_may_be_missing():
    """Windowed series vanish once a report's last success is older than its stale_after (15
    minutes by default): a panel shows that age per organization and report, red from 15 minutes,
    and its description explains it."""
    (panel,) = [p for p in panels(DASHBOARDS[HEALTH]) if p["type"] == "table"
                and any("anthropic_exporter_last_success_timestamp_seconds" in t["expr"] for t in p["targets"])]
    (target,) = panel["targets"]
    (sel,) = selectors(target["expr"])
    assert sel.name == "anthropic_exporter_last_success_timestamp_seconds"
    assert target["expr"].startswith("time() - ") and target["instant"]
    assert sel.matchers["report"] == ("=~", "usage|cost")
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 15 * 60] and steps[-1]["color"] == "red"
    assert panel["fieldConfig"]["defaults"]["unit"] == "s"
    for words in ("withholds", "15 minutes", "until a poll", "AnthropicExporterPollStale"):
        assert words in panel["description"], words


def test_skipped_rows_are_shown_as_a_gauge_by_reason():
    (expr,) = exprs(HEALTH, r"rows skipped")
    assert "by (organization, report, reason)" in expr and "anthropic_exporter_skipped_rows" in expr
    (errors,) = exprs(HEALTH, r"poll errors by reason")
    assert "anthropic_exporter_skipped_rows" not in errors


# ---- Name joins keep the figures of workspaces and keys the exporter has not listed yet ---------

NAMED_IDS = {"workspace": ("wrk_named", "Named workspace"), "api_key": ("key_named", "Named key")}
NEW_IDS = {"workspace": "wrk_new", "api_key": "key_new"}


def name_join_targets() -> list[tuple[str, str, str]]:
    """(where, kind, PromQL) of every Spend and usage target that joins names from an _info series."""
    found = []
    for panel in panels(DASHBOARDS[SPEND]):
        for target in panel.get("targets", []):
            match = re.search(r"group_left \((workspace|api_key)_name\) anthropic_\1_info", target["expr"])
            if match:
                found.append((f"{panel['title']} [{target['refId']}]", match.group(1), expand_grafana(target["expr"])))
    return found


NAME_JOINS = name_join_targets()


def test_the_name_joins_are_found():
    assert {w.split(" [")[0] for w, _, _ in NAME_JOINS} == {
        "Spend today by workspace", "Spend this month by workspace", "Tokens by API key", "Tokens by workspace",
        "Estimated spend per hour by workspace", "Estimate ÷ bill by workspace and model (last 7 complete days)"}


def name_join_case(kind: str, expr: str) -> tuple[list[dict], list[dict]]:
    """Input series for expr's metrics, a named and a not-yet-listed workspace (and key), and
    the samples expected: one per id, the unnamed one labelled with its id."""
    series, sums = [], {NAMED_IDS[kind][0]: 0, NEW_IDS[kind]: 0}
    metrics = {(s.name, tuple(sorted((k, v) for k, (op, v) in s.matchers.items() if op == "=")))
               for s in selectors(expr) if not s.name.endswith("_info")}
    value = 0
    for name, equal in sorted(metrics):
        keys = ("key_named", "key_new") if name.startswith("anthropic_usage_") else (None,)
        for workspace in ("wrk_named", "wrk_new"):
            for key in keys:
                value += 1
                labels = {"organization": "acme", "workspace_id": workspace, "model": "claude-sonnet-4-5",
                          **dict(equal)}
                if key:
                    labels["api_key_id"] = key
                series.append({"series": name + "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}",
                               "values": f"{value}x10"})
                sums[labels[f"{kind}_id"]] += value
    series += [
        {"series": 'anthropic_workspace_info{organization="acme", workspace_id="wrk_named", '
                   'workspace_name="Named workspace"}', "values": "1x10"},
        {"series": 'anthropic_api_key_info{organization="acme", api_key_id="key_named", api_key_name="Named key", '
                   'workspace_id="wrk_named", status="active"}', "values": "1x10"},
    ]
    names = {NAMED_IDS[kind][0]: NAMED_IDS[kind][1], NEW_IDS[kind]: NEW_IDS[kind]}
    # A join kept per model too (the estimate-to-bill ratio) keeps the model label.
    model = ', model="claude-sonnet-4-5"' if f"by (organization, {kind}_id, model)" in expr else ""
    expected = [{"labels": f'{{organization="acme", {kind}_id="{i}"{model}, {kind}_name="{names[i]}"}}',
                 "value": total} for i, total in sums.items()]
    return series, expected


def promtool_evaluates(promtool: str, tmp_path, expr: str, series: list[dict], expected: list[dict]):
    test = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [{"expr": expr, "eval_time": "5m", "exp_samples": expected}]}]}
    path = tmp_path / "name-join.test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    return run([promtool, "test", "rules", str(path)], cwd=tmp_path)


@pytest.mark.parametrize("where, kind, expr", NAME_JOINS, ids=[w for w, _, _ in NAME_JOINS])
def test_a_name_join_keeps_what_has_no_name_yet(promtool, tmp_path, where, kind, expr):
    """A workspace or API key created since the exporter's last list poll (or while list polls
    fail) has no _info series: its figures stay, named by their id. Evaluated by promtool."""
    series, expected = name_join_case(kind, expr)
    result = promtool_evaluates(promtool, tmp_path, expr, series, expected)
    assert result.returncode == 0, f"{where}:\n{expr}\n{result.stdout}{result.stderr}"


def test_the_name_join_check_catches_a_join_that_drops_series(promtool, tmp_path):
    _, kind, expr = NAME_JOINS[0]
    join_only = expr.split(f"\nor on (organization, {kind}_id)")[0]
    assert join_only != expr
    series, expected = name_join_case(kind, expr)
    result = promtool_evaluates(promtool, tmp_path, join_only, series, expected)
    output = result.stdout + result.stderr
    got = re.search(r"got: (.*)", output)
    assert result.returncode != 0 and got, output
    assert NAMED_IDS[kind][0] in got.group(1) and NEW_IDS[kind] not in got.group(1), output


def test_the_rate_limit_group_join_names_groups_without_a_display_name_by_their_id(promtool, tmp_path):
    """A group with no display name (or none listed) keeps its peak, named by its id; a group
    listed under several models appears once. Evaluated by promtool."""
    (expr,) = exprs(SPEND, r"peak .*utilization.*last hour")
    series = [
        {"series": 'anthropic_rate_limit_peak_utilization{organization="acme", group_id="grp_named", '
                   'limit_type="output_tokens_per_minute", window="1h"}', "values": "0.5x10"},
        {"series": 'anthropic_rate_limit_peak_utilization{organization="acme", group_id="grp_blank", '
                   'limit_type="output_tokens_per_minute", window="1h"}', "values": "0.25x10"},
        {"series": 'anthropic_rate_limit_peak_utilization{organization="acme", group_id="grp_named", '
                   'limit_type="output_tokens_per_minute", window="24h"}', "values": "0.75x10"},
    ]
    for model in ("claude-x", "claude-x-20250101"):
        series.append({"series": 'anthropic_rate_limit_group_info{organization="acme", group_id="grp_named", '
                                 f'group_type="model_group", group_name="Claude X", model="{model}"}}',
                       "values": "1x10"})
    series.append({"series": 'anthropic_rate_limit_group_info{organization="acme", group_id="grp_blank", '
                             'group_type="model_group", model="claude-y"}', "values": "1x10"})
    expected = [
        {"labels": '{organization="acme", group_id="grp_named", group_name="Claude X", '
                   'limit_type="output_tokens_per_minute"}', "value": 0.5},
        {"labels": '{organization="acme", group_id="grp_blank", group_name="grp_blank", '
                   'limit_type="output_tokens_per_minute"}', "value": 0.25},
    ]
    result = promtool_evaluates(promtool, tmp_path, expand_grafana(expr), series, expected)
    assert result.returncode == 0, f"{expr}\n{result.stdout}{result.stderr}"
