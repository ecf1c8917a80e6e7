"""The Grafana dashboards: schema, the ${datasource} variable, layout, and the panels the issue asks for."""

from __future__ import annotations

import re

import pytest

from .support import dashboard_files, load_dashboard, panels

DASHBOARDS = {path.stem: load_dashboard(path) for path in dashboard_files()}
SPEND = "anthropic-spend-usage"
CLIENT = "anthropic-client-latency"
HEALTH = "anthropic-exporter-health"
DS = {"type": "prometheus", "uid": "${datasource}"}


def test_the_three_dashboards_exist_with_unique_uids():
    assert set(DASHBOARDS) == {SPEND, CLIENT, HEALTH}
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == 3 and all(re.fullmatch(r"[a-z0-9-]{1,40}", u) for u in uids)


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


def test_health_dashboard_panels():
    text = " ".join(t["expr"] for p in panels(DASHBOARDS[HEALTH]) for t in p.get("targets", []))
    for metric in ("anthropic_exporter_up", "anthropic_exporter_last_success_timestamp_seconds",
                   "anthropic_exporter_data_timestamp_seconds", "anthropic_exporter_poll_duration_seconds",
                   "anthropic_exporter_api_requests_total", "anthropic_exporter_poll_errors_total",
                   "anthropic_exporter_build_info"):
        assert metric in text, metric
