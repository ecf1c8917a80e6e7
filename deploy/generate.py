#!/usr/bin/env python3
"""Generate the files of deploy/ that are derived from others: the Grafana dashboards and the
Kubernetes PrometheusRule (from the rule files in deploy/prometheus/rules/).

    python deploy/generate.py            # rewrite the generated files
    python deploy/generate.py --check    # exit 1 if a generated file is out of date

Edit this script (dashboards) or the rule files, never the generated files: the tests fail
when a generated file differs from what this script writes. Needs only PyYAML.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent
RULE_FILES = (
    DEPLOY / "prometheus" / "rules" / "anthropic-recording.rules.yml",
    DEPLOY / "prometheus" / "rules" / "anthropic-budget.rules.yml",
    DEPLOY / "prometheus" / "rules" / "anthropic-alerts.rules.yml",
)
PROMETHEUS_RULE = DEPLOY / "kubernetes" / "prometheusrule.yaml"
DASHBOARDS_DIR = DEPLOY / "grafana" / "dashboards"

# Every panel and variable queries the data source picked in the ${datasource} variable.
DS = {"type": "prometheus", "uid": "${datasource}"}


# --------------------------------------------------------------------------------------------
# Dashboard building blocks
# --------------------------------------------------------------------------------------------

def target(expr: str, legend: str = "__auto", *, instant: bool = False, exemplar: bool = False,
           fmt: str | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {"datasource": DS, "editorMode": "code", "expr": expr, "legendFormat": legend,
                         "range": not instant, "instant": instant}
    if exemplar:
        t["exemplar"] = True
    if fmt:
        t["format"] = fmt
    return t


class Layout:
    """Places panels left to right on Grafana's 24-column grid and numbers them."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                            "id": self._id(), "panels": [], "title": title, "type": "row"})
        self.y += 1

    def add(self, panel: dict[str, Any], w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        for i, t in enumerate(panel.get("targets", [])):
            t["refId"] = chr(ord("A") + i)
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_height
        self.x = 0
        self.row_height = 0

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def timeseries(title: str, description: str, targets: list[dict[str, Any]], unit: str = "short", *,
               stack: bool = False, min_zero: bool = True, max_one: bool = False,
               threshold: float | None = None) -> dict[str, Any]:
    custom: dict[str, Any] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if not stack else 40,
                              "showPoints": "never", "spanNulls": False,
                              "stacking": {"group": "A", "mode": "normal" if stack else "none"}}
    defaults: dict[str, Any] = {"unit": unit, "custom": custom}
    if min_zero:
        defaults["min"] = 0
    if max_one:
        defaults["max"] = 1
    if threshold is not None:
        # A dashed red line at the threshold (an alert's), nothing coloured below it.
        custom["thresholdsStyle"] = {"mode": "dashed"}
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "transparent", "value": None},
                                                                {"color": "red", "value": threshold}]}
    return {"type": "timeseries", "title": title, "description": description, "datasource": DS,
            "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                                   "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title: str, description: str, targets: list[dict[str, Any]], unit: str = "short",
         thresholds: list[dict[str, Any]] | None = None, mappings: list[dict[str, Any]] | None = None,
         ) -> dict[str, Any]:
    steps = thresholds or [{"color": "green", "value": None}]
    defaults: dict[str, Any] = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps},
                                "color": {"mode": "thresholds"}}
    if mappings:
        defaults["mappings"] = mappings
    return {"type": "stat", "title": title, "description": description, "datasource": DS,
            "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "justifyMode": "auto",
                        "orientation": "auto", "textMode": "auto"}}


def bargauge(title: str, description: str, targets: list[dict[str, Any]], unit: str = "short", *,
             max_one: bool = False) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit, "min": 0, "color": {"mode": "continuous-BlPu"},
                                "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]}}
    if max_one:
        defaults["max"] = 1
    return {"type": "bargauge", "title": title, "description": description, "datasource": DS,
            "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
                        "valueMode": "color", "namePlacement": "left", "sizing": "auto",
                        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}}


def table(title: str, description: str, targets: list[dict[str, Any]], unit: str = "short",
          hide: tuple[str, ...] = ("Time",), rename: dict[str, str] | None = None,
          thresholds: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit, "custom": {"align": "auto"}}
    if thresholds:
        # Colour the value cells by the thresholds.
        defaults["custom"]["cellOptions"] = {"type": "color-background", "mode": "basic"}
        defaults["thresholds"] = {"mode": "absolute", "steps": thresholds}
        defaults["color"] = {"mode": "thresholds"}
    organize: dict[str, Any] = {"excludeByName": {n: True for n in hide}}
    if rename:
        organize["renameByName"] = rename
    return {"type": "table", "title": title, "description": description, "datasource": DS,
            "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
            "transformations": [{"id": "organize", "options": organize}]}


def heatmap(title: str, description: str, targets: list[dict[str, Any]], unit: str = "s") -> dict[str, Any]:
    return {"type": "heatmap", "title": title, "description": description, "datasource": DS,
            "targets": targets, "fieldConfig": {"defaults": {}, "overrides": []},
            "options": {"calculate": False, "cellGap": 1, "color": {"mode": "scheme", "scheme": "Oranges",
                                                                    "exponent": 0.5, "fill": "dark-orange",
                                                                    "reverse": False, "steps": 64},
                        "yAxis": {"axisPlacement": "left", "unit": unit}, "exemplars": {"color": "rgba(255,0,255,0.7)"},
                        "filterValues": {"le": 1e-9}, "legend": {"show": True},
                        "rowsFrame": {"layout": "auto"}, "tooltip": {"mode": "single", "yHistogram": False},
                        "cellValues": {"unit": "reqps"}}}


def datasource_variable() -> dict[str, Any]:
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1,
            "regex": "", "skipUrlSync": False}


def query_variable(name: str, label: str, query: str, *, regex: str = "", multi: bool = True) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DS, "definition": query,
            "query": query, "regex": regex, "refresh": 2, "sort": 1, "hide": 0,
            "includeAll": True, "allValue": ".*", "multi": multi,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [], "skipUrlSync": False}


def custom_variable(name: str, label: str, values: list[str], default: str, description: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "custom", "description": description,
            "query": ",".join(values), "current": {"selected": True, "text": default, "value": default},
            "options": [{"selected": v == default, "text": v, "value": v} for v in values],
            "hide": 0, "includeAll": False, "multi": False, "skipUrlSync": False}


def dashboard(uid: str, title: str, description: str, tags: list[str], variables: list[dict[str, Any]],
              layout: Layout, time_from: str = "now-24h", refresh: str = "1m") -> dict[str, Any]:
    return {
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [{"asDropdown": False, "icon": "external link", "includeVars": True, "keepTime": True,
                   "tags": ["anthropic"], "targetBlank": False, "title": "Anthropic dashboards",
                   "type": "dashboards"}],
        "panels": layout.panels,
        "refresh": refresh,
        "schemaVersion": 39,
        "tags": tags,
        "templating": {"list": variables},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# --------------------------------------------------------------------------------------------
# Spend and usage (Admin API reports, polled by the exporter)
# --------------------------------------------------------------------------------------------

# The usage and cost figures are gauges holding the sum over a window (label `window`): they
# are summed across labels, never rate()d.
F = 'organization=~"$organization", workspace_id=~"$workspace", model=~"$model"'
TOKEN_METRICS = ("anthropic_usage_uncached_input_tokens", "anthropic_usage_cache_read_input_tokens",
                 "anthropic_usage_cache_creation_input_tokens", "anthropic_usage_output_tokens")


def all_tokens(by: str, window: str = "$window") -> str:
    """Every token kind of the usage report, summed by the given labels."""
    return "\n+ ".join(f'sum by ({by}) ({m}{{window="{window}", {F}}})' for m in TOKEN_METRICS)


def no_model_label(expr: str) -> str:
    # Costs that belong to no model (web search, ...) have model="": give them a name.
    return f'label_replace({expr}, "model", "(no model: web search, ...)", "model", "")'


def month_days_covered() -> str:
    """Days of the current month the cost data covers, per organization: from the 1st, 00:00 UTC,
    to the end of the newest daily bucket holding cost (as in AnthropicMonthlyBudgetForecastExceeded)."""
    return ("(\n    max by (organization) (anthropic_exporter_data_timestamp_seconds{report=\"cost\", "
            'organization=~"$organization"})\n'
            "    - (time() - time() % 86400 - (scalar(day_of_month()) - 1) * 86400)\n  ) / 86400")


def named(expr: str, kind: str) -> str:
    """expr (summed by organization and <kind>_id) with <kind>_name joined from anthropic_<kind>_info.

    A workspace or key created since the exporter's last list poll (hourly), or every one of
    them while the list polls fail, has no _info series: the join alone would drop its figures.
    Those are kept, with their id as their name.
    """
    key = f"{kind}_id"
    inner = "  " + expr.replace("\n", "\n  ")
    # "$1" is label_replace's capture group; Grafana leaves a $name that is no variable alone.
    return (f"(\n{inner}\n) * on (organization, {key}) group_left ({kind}_name) anthropic_{kind}_info\n"
            f"or on (organization, {key})\n"
            f'label_replace(\n{inner},\n  "{kind}_name", "$1", "{key}", "(.+)"\n)')


def workspace_names(expr: str) -> str:
    return named(expr, "workspace")


def key_names(expr: str) -> str:
    return named(expr, "api_key")


def spend_and_usage() -> dict[str, Any]:
    lay = Layout()
    lay.row("Spend (cost report, USD; refreshed every few minutes, Anthropic reports cost up to a day late)")
    lay.add(stat("Spend today (UTC)", "Sum of anthropic_cost_usd{window=\"today\"}: the cost report's "
                 "bucket for the current UTC day so far.",
                 [target(f'sum(anthropic_cost_usd{{window="today", {F}}})', "today")], "currencyUSD"), 6, 4)
    lay.add(stat("Spend this month", "Sum of anthropic_cost_usd{window=\"month\"}: from the first day of the "
                 "current UTC month, today included.",
                 [target(f'sum(anthropic_cost_usd{{window="month", {F}}})', "month")], "currencyUSD"), 6, 4)
    lay.add(stat("Spend last 7 days", "Sum of anthropic_cost_usd{window=\"7d\"}: the 7 newest daily buckets "
                 "(UTC days), today included.",
                 [target(f'sum(anthropic_cost_usd{{window="7d", {F}}})', "7d")], "currencyUSD"), 6, 4)
    lay.add(stat("Month-end forecast", "This month's spend extrapolated to the month's end at this month's "
                 "pace so far: the spend over the days of the month the cost data covers (to "
                 "anthropic_exporter_data_timestamp_seconds{report=\"cost\"}, as cost arrives up to a day late), "
                 "as in the AnthropicMonthlyBudgetForecastExceeded alert.",
                 [target(f'sum(\n  sum by (organization) (anthropic_cost_usd{{window="month", {F}}})\n'
                         f'  / on (organization) ({month_days_covered()} > 0)\n)\n* days_in_month()',
                         "forecast")],
                 "currencyUSD"), 6, 4)
    lay.add(timeseries("Spend today by workspace", "anthropic_cost_usd{window=\"today\"} by workspace, "
                       "names joined from anthropic_workspace_info (the id until the exporter has listed a new "
                       "workspace). Each day starts again from 0 at 00:00 UTC.",
                       [target(workspace_names(f'sum by (organization, workspace_id) '
                                               f'(anthropic_cost_usd{{window="today", {F}}})'),
                               "{{workspace_name}} ({{organization}})")],
                       "currencyUSD", stack=True), 12, 8)
    lay.add(timeseries("Spend today by model", "anthropic_cost_usd{window=\"today\"} by model.",
                       [target(no_model_label(f'sum by (model) (anthropic_cost_usd{{window="today", {F}}})'),
                               "{{model}}")], "currencyUSD", stack=True), 12, 8)
    lay.add(bargauge("Spend this month by workspace", "anthropic_cost_usd{window=\"month\"} by workspace, "
                     "names joined from anthropic_workspace_info (the id until the exporter has listed a new "
                     "workspace).",
                     [target(workspace_names(f'sum by (organization, workspace_id) '
                                             f'(anthropic_cost_usd{{window="month", {F}}})'),
                             "{{workspace_name}} ({{organization}})", instant=True)],
                     "currencyUSD"), 8, 8)
    lay.add(bargauge("Spend this month by model", "anthropic_cost_usd{window=\"month\"} by model.",
                     [target(no_model_label(f'sum by (model) (anthropic_cost_usd{{window="month", {F}}})'),
                             "{{model}}", instant=True)], "currencyUSD"), 8, 8)
    lay.add(bargauge("Spend this month by cost and token type",
                     "anthropic_cost_usd{window=\"month\"} by cost_type and token_type, as the cost report "
                     "parses them out of its descriptions.",
                     [target(f'sum by (cost_type, token_type) (anthropic_cost_usd{{window="month", {F}}})',
                             "{{cost_type}} {{token_type}}", instant=True)], "currencyUSD"), 8, 8)

    estimated_spend(lay)

    lay.row("Usage (usage report, summed over the window picked above; usage is about 5 minutes behind)")
    kinds = [
        ("anthropic_usage_uncached_input_tokens", "", "uncached input"),
        ("anthropic_usage_cache_read_input_tokens", "", "cache read"),
        ("anthropic_usage_cache_creation_input_tokens", ', cache_ttl="5m"', "cache write 5m"),
        ("anthropic_usage_cache_creation_input_tokens", ', cache_ttl="1h"', "cache write 1h"),
        ("anthropic_usage_output_tokens", "", "output"),
    ]
    lay.add(timeseries("Tokens by kind", "The usage report's token fields over the window: with window 1h "
                       "this is a rolling hourly rate.",
                       [target(f'sum({m}{{window="$window"{extra}, {F}}})', legend) for m, extra, legend in kinds],
                       "short", stack=True), 12, 8)
    lay.add(timeseries("Tokens by model", "All token kinds (input, cache reads and writes, output) by model.",
                       [target(all_tokens("model"), "{{model}}")], "short", stack=True), 12, 8)
    lay.add(bargauge("Tokens by API key", "All token kinds by API key, names joined from anthropic_api_key_info "
                     "(the id until the exporter has listed a new key; api_key_id=\"console\" is usage from "
                     "the Console, which has no key). The cost report "
                     "has no API key dimension, so spend cannot be split by key.",
                     [target(key_names(all_tokens("organization, api_key_id")),
                             "{{api_key_name}} ({{organization}})", instant=True)], "short"), 8, 9)
    lay.add(bargauge("Tokens by workspace", "All token kinds by workspace, names joined from "
                     "anthropic_workspace_info (the id until the exporter has listed a new workspace).",
                     [target(workspace_names(all_tokens("organization, workspace_id")),
                             "{{workspace_name}} ({{organization}})", instant=True)], "short"), 8, 9)
    lay.add(timeseries("Cache hit ratio by model", "Cache reads / (cache reads + uncached input + cache "
                       "writes): the share of input tokens served from the prompt cache.",
                       [target(f'sum by (model) (anthropic_usage_cache_read_input_tokens{{window="$window", {F}}})\n'
                               "/ (\n"
                               f'  sum by (model) (anthropic_usage_cache_read_input_tokens{{window="$window", {F}}})\n'
                               f'+ sum by (model) (anthropic_usage_uncached_input_tokens{{window="$window", {F}}})\n'
                               "+ sum by (model) "
                               f'(anthropic_usage_cache_creation_input_tokens{{window="$window", {F}}})\n'
                               "> 0)", "{{model}}")], "percentunit", max_one=True), 8, 9)
    lay.add(timeseries("Web searches by model", "server_tool_use.web_search_requests of the usage report "
                       "(billed at 10 USD per 1000 searches).",
                       [target(f'sum by (model) (anthropic_usage_web_search_requests{{window="$window", {F}}})',
                               "{{model}}")], "short", stack=True), 12, 8)
    lay.add(timeseries("Cost per million tokens by model (last 7 days)",
                       "Cost report divided by usage report over the 7d window, all token kinds blended "
                       "(the cost's 7d is 7 whole UTC days, today included; the usage's the 168 newest hours). "
                       "Cheaper when more input comes from the cache.",
                       [target(f'sum by (model) (anthropic_cost_usd{{window="7d", {F}}})\n'
                               "/ (\n" + all_tokens("model", "7d") + "\n> 0)\n* 1e6", "{{model}}")],
                       "currencyUSD"), 12, 8)

    rate_limits(lay)

    variables = [
        datasource_variable(),
        query_variable("organization", "Organization", "label_values(anthropic_exporter_up, organization)"),
        query_variable("workspace", "Workspace",
                       'query_result(max by (workspace_id, workspace_name) '
                       '(anthropic_workspace_info{organization=~"$organization"}))',
                       regex='/workspace_id="(?<value>[^"]*)".*workspace_name="(?<text>[^"]*)"/'),
        query_variable("model", "Model",
                       'label_values(anthropic_usage_output_tokens{organization=~"$organization", '
                       'workspace_id=~"$workspace"}, model)'),
        custom_variable("window", "Usage window", ["1h", "24h", "7d", "30d", "today", "month"], "24h",
                        "The usage report window the usage panels sum over (label window): 1h and 24h "
                        "slide by the minute, 7d and 30d by the hour, today and month are the UTC day "
                        "and month so far."),
    ]
    return dashboard("anthropic-spend-usage", "Anthropic: Spend and usage",
                     "Spend and token usage from Anthropic's Admin API usage and cost reports, polled by "
                     "anthropic-usage-exporter.", ["anthropic"], variables, lay)


# AnthropicPriceTableDrift fires when the estimate ÷ bill ratio leaves this band for a day.
DRIFT_BAND = (0.9, 1.1)


def estimated_spend(lay: Layout) -> None:
    """The usage report priced with the exporter's price table: minutes behind, where the cost
    report is up to a day behind; beside it the bill, and how far apart the two are."""
    lay.row("Estimated spend (the usage report priced with the price table: minutes behind, an estimate, "
            "not the bill)")
    lay.add(stat("Estimated spend, last hour", "Sum of anthropic_usage_estimated_cost_usd{window=\"1h\"}: the "
                 "usage of the last 60 minutes priced bucket by bucket with the exporter's price table "
                 "(anthropic-usage-exporter prices). About 5 minutes behind. An estimate, not the bill.",
                 [target(f'sum(anthropic_usage_estimated_cost_usd{{window="1h", {F}}})', "last hour")],
                 "currencyUSD"), 6, 4)
    lay.add(stat("Estimated spend today (UTC)", "Sum of anthropic_usage_estimated_cost_usd{window=\"today\"}: "
                 "the usage of the current UTC day so far, priced with the price table. The cost report's "
                 "figure for today (Spend today) lags by up to a day.",
                 [target(f'sum(anthropic_usage_estimated_cost_usd{{window="today", {F}}})', "today")],
                 "currencyUSD"), 6, 4)
    lay.add(stat("Month to date with today's estimate", "organization:anthropic_cost_with_estimate_usd:sum"
                 "{window=\"month\"}, what the budget alerts compare with the budget: the cost report's "
                 "days before today plus today's reported cost or its estimate, whichever is larger (never "
                 "both). Per organization: the workspace and model filters do not apply.",
                 [target('sum(organization:anthropic_cost_with_estimate_usd:sum{window="month", '
                         'organization=~"$organization"})', "month to date")],
                 "currencyUSD"), 6, 4)
    version = stat("Price table", "anthropic_pricing_info: the version of the price table the exporter "
                   "prices usage with (anthropic-usage-exporter prices prints its rates, the day they were "
                   "checked and the configured discount).",
                   [target('count by (table_version) (anthropic_pricing_info{organization=~"$organization"})',
                           "version {{table_version}}", instant=True)])
    version["options"]["textMode"] = "name"
    version["options"]["graphMode"] = "none"
    lay.add(version, 6, 4)
    lay.add(timeseries("Estimated spend per hour by workspace", "anthropic_usage_estimated_cost_usd"
                       "{window=\"1h\"} by workspace: the last 60 minutes priced with the price table, a rolling "
                       "hourly spend about 5 minutes behind. AnthropicEstimatedSpendSpike fires when a "
                       "workspace's last hour is over 5 USD and three times its hourly average over 7 days. "
                       "Names joined from anthropic_workspace_info (the id until the exporter has listed a new "
                       "workspace).",
                       [target(workspace_names(f'sum by (organization, workspace_id) '
                                               f'(anthropic_usage_estimated_cost_usd{{window="1h", {F}}})'),
                               "{{workspace_name}} ({{organization}})")],
                       "currencyUSD", stack=True), 12, 8)
    lay.add(timeseries("Spend per day: reported and estimated",
                       "The current UTC day so far: the cost report's figure (anthropic_cost_usd{window=\"today\"}"
                       ", up to a day late, so low for most of the day) beside the usage report priced with the "
                       "price table (anthropic_usage_estimated_cost_usd{window=\"today\"}). Both start again "
                       "from 0 at 00:00 UTC. Once the cost report has caught up with a day, the two should end it "
                       "close together (the ratio panel).",
                       [target(f'sum(anthropic_cost_usd{{window="today", {F}}})', "reported (cost report)"),
                        target(f'sum(anthropic_usage_estimated_cost_usd{{window="today", {F}}})',
                               "estimated (usage report priced)")],
                       "currencyUSD"), 12, 8)
    low, high = DRIFT_BAND
    lay.add(table("Estimate ÷ bill by workspace and model (last 7 complete days)",
                  "anthropic_cost_estimate_ratio: the usage priced with the price table divided by the token "
                  "cost the cost report bills, over the last 7 complete UTC days. Near 1, the table matches "
                  f"the bill; AnthropicPriceTableDrift fires when it stays outside {low} to {high} for a day "
                  "(a stale table, a negotiated discount not configured, or usage the table cannot price). "
                  "Names joined from anthropic_workspace_info.",
                  [target(workspace_names('max by (organization, workspace_id, model) '
                                          f'(anthropic_cost_estimate_ratio{{{F}}})'),
                          "", instant=True, fmt="table")],
                  "short", hide=("Time",), rename={"Value": "estimate ÷ bill"},
                  thresholds=[{"color": "orange", "value": None}, {"color": "green", "value": low},
                              {"color": "orange", "value": high}]), 12, 8)
    lay.add(timeseries("Unpriced tokens by model", "anthropic_usage_unpriced_tokens over the usage window picked "
                       "above: tokens the price table cannot price (a model it does not list, a tier without a "
                       "published price such as flex), left out of the estimate. Anything here means the "
                       "estimate is low: upgrade the exporter or add the model under pricing.models. Per model "
                       "only: the workspace filter does not apply.",
                       [target('sum by (model) (anthropic_usage_unpriced_tokens{window="$window", '
                               'organization=~"$organization", model=~"$model"})', "{{model}}")],
                       "short", stack=True), 12, 8)


# The organization's rate limits (report rate_limits) and the busiest minute of the usage report.
R = 'organization=~"$organization"'
# AnthropicRateLimitPeakUtilizationHigh fires above this share of a limit.
PEAK_ALERT_THRESHOLD = 0.8


def group_names(expr: str, by: str) -> str:
    """expr (with organization and group_id among its labels `by`) with the rate-limit group's
    display name joined from anthropic_rate_limit_group_info; a group without one (or not
    listed) is named by its id."""
    inner = "  " + expr.replace("\n", "\n  ")
    names = (f'max by (organization, group_id, group_name) (anthropic_rate_limit_group_info{{group_name!="", {R}}})')
    return (f"(\n{inner}\n) * on (organization, group_id) group_left (group_name) {names}\n"
            f"or on ({by})\n"
            f'label_replace(\n{inner},\n  "group_name", "$1", "group_id", "(.+)"\n)')


def rate_limits(lay: Layout) -> None:
    lay.row("Rate limits (rate_limits report; the peak is the busiest minute of the usage report's 1m buckets)")
    peak = "organization, group_id, limit_type"
    lay.add(timeseries("Peak rate-limit utilization, busiest minute of the last hour",
                       "anthropic_rate_limit_peak_utilization{window=\"1h\"}: in the busiest minute of the last "
                       "hour, the tokens of the limiter's kind summed over the models of the rate-limit group, "
                       "divided by the organization's limit (1 = the limit was reached: 429 errors). Computed by "
                       "the exporter from the usage report's 1m buckets, so about 5 minutes behind; needs model "
                       "in the usage group_by. requests_per_minute has none (the usage report has no request "
                       "counts: see the client dashboard's headroom). The dashed line is where "
                       "AnthropicRateLimitPeakUtilizationHigh fires.",
                       [target(group_names(f'max by ({peak}) '
                                           f'(anthropic_rate_limit_peak_utilization{{window="1h", {R}}})', peak),
                               "{{group_name}} {{limit_type}} ({{organization}})")],
                       "percentunit", threshold=PEAK_ALERT_THRESHOLD), 12, 8)
    lay.add(bargauge("Peak rate-limit utilization, busiest minute of the last 24 hours",
                     "anthropic_rate_limit_peak_utilization{window=\"24h\"}: as on the left, over the last 24 "
                     "hours: how close each group and limiter came to its limit today.",
                     [target(group_names(f'max by ({peak}) '
                                         f'(anthropic_rate_limit_peak_utilization{{window="24h", {R}}})', peak),
                             "{{group_name}} {{limit_type}} ({{organization}})", instant=True)],
                     "percentunit", max_one=True), 12, 8)
    limits = "organization, group_id, group_type, limit_type"
    lay.add(table("Organization rate limits", "anthropic_rate_limit: the organization's configured limit per "
                  "rate-limit group and limiter (per minute for the *_per_minute types).",
                  [target(group_names(f"max by ({limits}) (anthropic_rate_limit{{{R}}})", limits), "",
                          instant=True, fmt="table")],
                  "short", hide=("Time",), rename={"Value": "limit"}), 12, 8)
    lay.add(table("Workspace rate limits", "anthropic_workspace_rate_limit: each workspace's effective limit; "
                  "source=workspace is an override set on the workspace, source=organization the "
                  "organization's limit it inherits. Archived workspaces are left out; the Default Workspace has "
                  "the organization's limits.",
                  [target("max by (organization, workspace_id, group_id, limit_type, source) "
                          f'(anthropic_workspace_rate_limit{{workspace_id=~"$workspace", {R}}})', "",
                          instant=True, fmt="table")],
                  "short", hide=("Time",), rename={"Value": "limit"}), 12, 8)


# --------------------------------------------------------------------------------------------
# Claude Code (the Claude Code analytics report, polled by the exporter)
# --------------------------------------------------------------------------------------------

# Daily records summed over whole UTC days: the windows today, 7d, 30d and month only.
CC = 'organization=~"$organization", customer_type=~"$customer_type", terminal_type=~"$terminal_type"'
CW = 'window="$code_window"'


def code(metric: str, by: str | None = None, extra: str = "") -> str:
    """sum [by (...)] (metric{window, filters})"""
    selector = f"{metric}{{{CW}{extra}, {CC}}}"
    return f"sum by ({by}) ({selector})" if by else f"sum({selector})"


def claude_code() -> dict[str, Any]:
    lay = Layout()
    lay.row("Activity (whole UTC days, today included, summed over the window picked above; about an hour behind)")
    lay.add(stat("Active users and keys", "anthropic_claude_code_active_actors: distinct actors (users, API keys) "
                 "with any Claude Code activity in the window. Counted per customer type and terminal, so "
                 "someone who used two terminals counts twice here.",
                 [target(code("anthropic_claude_code_active_actors"), "actors")], "none"), 4, 4)
    lay.add(stat("Sessions", "anthropic_claude_code_sessions: Claude Code sessions started.",
                 [target(code("anthropic_claude_code_sessions"), "sessions")], "none"), 4, 4)
    lay.add(stat("Lines added", "anthropic_claude_code_lines_of_code{change=\"added\"}.",
                 [target(code("anthropic_claude_code_lines_of_code", extra=', change="added"'), "added")],
                 "none"), 4, 4)
    lay.add(stat("Lines removed", "anthropic_claude_code_lines_of_code{change=\"removed\"}.",
                 [target(code("anthropic_claude_code_lines_of_code", extra=', change="removed"'), "removed")],
                 "none"), 4, 4)
    lay.add(stat("Commits", "anthropic_claude_code_commits: commits made by Claude Code.",
                 [target(code("anthropic_claude_code_commits"), "commits")], "none"), 4, 4)
    lay.add(stat("Pull requests", "anthropic_claude_code_pull_requests: pull requests opened by Claude Code.",
                 [target(code("anthropic_claude_code_pull_requests"), "pull requests")], "none"), 4, 4)
    lay.add(timeseries("Sessions by terminal", "anthropic_claude_code_sessions by terminal_type, over the window "
                       "(a window's figure changes as days are added and, for 7d and 30d, dropped).",
                       [target(code("anthropic_claude_code_sessions", "terminal_type"), "{{terminal_type}}")],
                       "short", stack=True), 12, 8)
    lay.add(timeseries("Lines of code added and removed", "anthropic_claude_code_lines_of_code by change.",
                       [target(code("anthropic_claude_code_lines_of_code", "change"), "{{change}}")], "short"), 12, 8)
    lay.add(timeseries("Commits and pull requests", "anthropic_claude_code_commits and "
                       "anthropic_claude_code_pull_requests: made by Claude Code.",
                       [target(code("anthropic_claude_code_commits"), "commits"),
                        target(code("anthropic_claude_code_pull_requests"), "pull requests")], "short"), 12, 8)
    lay.add(bargauge("Active users and keys by customer type and terminal",
                     "anthropic_claude_code_active_actors by customer_type (api, subscription) and terminal_type.",
                     [target(code("anthropic_claude_code_active_actors", "customer_type, terminal_type"),
                             "{{customer_type}} {{terminal_type}}", instant=True)], "none"), 12, 8)

    lay.row("Tools")
    tools = "anthropic_claude_code_tool_actions"
    accepted = code(tools, "tool", ', decision="accepted"')
    decided = code(tools, "tool", ', decision=~"accepted|rejected"')
    lay.add(bargauge("Tool acceptance rate by tool", "accepted / (accepted + rejected) of "
                     "anthropic_claude_code_tool_actions, per tool (edit_tool, write_tool, bash_tool, ...): how often "
                     "people accept what Claude Code proposes.",
                     [target(f"{accepted}\n/ ({decided} > 0)", "{{tool}}", instant=True)],
                     "percentunit", max_one=True), 12, 8)
    lay.add(timeseries("Tool actions by tool and decision", "anthropic_claude_code_tool_actions by tool and "
                       "decision (accepted, rejected).",
                       [target(code(tools, "tool, decision"), "{{tool}} {{decision}}")], "short"), 12, 8)

    lay.row("Models (tokens and the report's own estimated cost)")
    lay.add(stat("Estimated cost", "anthropic_claude_code_estimated_cost_usd: the report's estimate, summed over "
                 "models. An estimate at list prices, not the bill: the cost report has the billed figures.",
                 [target(code("anthropic_claude_code_estimated_cost_usd"), "estimated cost")], "currencyUSD"), 4, 8)
    lay.add(timeseries("Tokens by model and type", "anthropic_claude_code_tokens by model and token_type "
                       "(input, output, cache_read, cache_creation).",
                       [target(code("anthropic_claude_code_tokens", "model, token_type"),
                               "{{model}} {{token_type}}")], "short", stack=True), 10, 8)
    lay.add(bargauge("Estimated cost by model", "anthropic_claude_code_estimated_cost_usd by model.",
                     [target(code("anthropic_claude_code_estimated_cost_usd", "model"), "{{model}}", instant=True)],
                     "currencyUSD"), 10, 8)

    variables = [
        datasource_variable(),
        query_variable("organization", "Organization", "label_values(anthropic_claude_code_sessions, organization)"),
        query_variable("customer_type", "Customer type",
                       'label_values(anthropic_claude_code_sessions{organization=~"$organization"}, customer_type)'),
        query_variable("terminal_type", "Terminal",
                       'label_values(anthropic_claude_code_sessions{organization=~"$organization"}, terminal_type)'),
        custom_variable("code_window", "Window", ["today", "7d", "30d", "month"], "7d",
                        "The Claude Code report window the panels sum over (label window): whole UTC days, "
                        "today included; today and month are the UTC day and month so far."),
    ]
    return dashboard("anthropic-claude-code", "Anthropic: Claude Code",
                     "Claude Code usage from the Admin API's Claude Code analytics report, polled by "
                     "anthropic-usage-exporter: active users, sessions, lines of code, commits and pull "
                     "requests, tool acceptance, tokens and estimated cost by model.",
                     ["anthropic"], variables, lay, time_from="now-7d", refresh="5m")


# --------------------------------------------------------------------------------------------
# Client latency (the middleware's metrics, from the instrumented applications)
# --------------------------------------------------------------------------------------------

# The rate-limit and token metrics have no `operation` label.
CM = 'job=~"$job", model=~"$model"'
C = CM + ', operation=~"$operation"'
RI = "$__rate_interval"


def rated(metric: str, matchers: str, by: str | None = None) -> str:
    """sum [by (...)] (rate(metric{matchers}[$__rate_interval]))"""
    inner = f"rate({metric}{{{matchers}}}[{RI}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantiles(metric: str, exemplar: bool) -> list[dict[str, Any]]:
    return [target(f"histogram_quantile({q}, sum by (model, le) (rate({metric}_bucket{{{C}}}[{RI}])))",
                   f"p{int(q * 100)} {{{{model}}}}", exemplar=exemplar) for q in (0.5, 0.95, 0.99)]


def client_latency() -> dict[str, Any]:
    lay = Layout()
    lay.row("Requests (one observation per HTTP attempt; retries are attempts)")
    lay.add(timeseries("Requests by status code", "Attempts per second, from "
                       "anthropic_client_request_duration_seconds_count. status_code=\"none\": no response "
                       "(connection error or timeout).",
                       [target(rated("anthropic_client_request_duration_seconds_count", C, "status_code"),
                               "{{status_code}}")], "reqps", stack=True), 8, 8)
    lay.add(timeseries("Errors by type", "anthropic_client_errors_total by error_type (the API's error.type, "
                       "also for an error event inside a stream).",
                       [target(f"sum by (error_type) (rate(anthropic_client_errors_total{{{C}}}[{RI}]))",
                               "{{error_type}}")], "reqps", stack=True), 8, 8)
    lay.add(timeseries("429 and 529 share of attempts", "Rate-limit (429) and overloaded (529) errors as a "
                       "share of all attempts, per model (the AnthropicClientErrorRatioHigh alert).",
                       [target("sum by (model, error_type) (rate(anthropic_client_errors_total{"
                               f'error_type=~"rate_limit_error|overloaded_error", {C}}}[{RI}]))\n'
                               "/ ignoring (error_type) group_left ()\n"
                               f"sum by (model) (rate(anthropic_client_request_duration_seconds_count{{{C}}}[{RI}]))",
                               "{{model}} {{error_type}}")], "percentunit"), 8, 8)
    lay.add(timeseries("Retries", "Attempts whose x-stainless-retry-count header is above 0.",
                       [target(f"sum by (model) (rate(anthropic_client_retries_total{{{C}}}[{RI}]))", "{{model}}")],
                       "reqps"), 12, 7)
    lay.add(timeseries("In-flight requests", "anthropic_client_in_flight_requests by operation.",
                       [target('sum by (operation) (anthropic_client_in_flight_requests{job=~"$job", '
                               'operation=~"$operation"})', "{{operation}}")], "short"), 12, 7)

    lay.row("Latency")
    lay.add(timeseries("Request duration p50 / p95 / p99 by model",
                       "From sending the request to the end of the response body (for a stream, to its end). "
                       "Exemplars (dots) carry the request-id of a request in that bucket: quote it to "
                       "Anthropic support.",
                       quantiles("anthropic_client_request_duration_seconds", exemplar=True), "s"), 12, 9)
    lay.add(timeseries("Time to first token p50 / p95 / p99 by model",
                       "Streamed responses only: to the first content_block_delta event.",
                       quantiles("anthropic_client_time_to_first_token_seconds", exemplar=False), "s"), 12, 9)
    lay.add(heatmap("Request duration distribution", "Attempts per second in each duration bucket.",
                    [target(f"sum by (le) (rate(anthropic_client_request_duration_seconds_bucket{{{C}}}[{RI}]))",
                            "{{le}}", fmt="heatmap", exemplar=True)]), 24, 8)

    lay.row("Rate limits and tokens")
    lay.add(timeseries("Rate-limit headroom", "anthropic-ratelimit-<resource>-remaining / -limit from the "
                       "newest response: how much of each limit is left (the AnthropicRateLimitHeadroomLow "
                       "alert fires below 10%).",
                       [target(f"min by (model, resource) (\n  anthropic_client_ratelimit_remaining{{{CM}}}\n"
                               f"/ (anthropic_client_ratelimit_limit{{{CM}}} > 0)\n)",
                               "{{model}} {{resource}}")], "percentunit", max_one=True), 12, 8)
    lay.add(timeseries("Rate-limit reset in", "Seconds until each limit is fully replenished "
                       "(anthropic-ratelimit-<resource>-reset).",
                       [target(f"max by (model, resource) (anthropic_client_ratelimit_reset_timestamp_seconds"
                               f"{{{CM}}}) - time()", "{{model}} {{resource}}")], "s", min_zero=False), 12, 8)
    client_tokens = [
        ("anthropic_client_uncached_input_tokens_total", "", "uncached input"),
        ("anthropic_client_cache_read_input_tokens_total", "", "cache read"),
        ("anthropic_client_cache_creation_input_tokens_total", "", "cache write"),
        ("anthropic_client_output_tokens_total", "", "output"),
    ]
    lay.add(timeseries("Tokens per second by kind", "The responses' usage fields, as the application saw them.",
                       [target(f"sum(rate({m}{{{CM}}}[{RI}]))", legend) for m, _, legend in client_tokens],
                       "short", stack=True), 8, 8)
    lay.add(timeseries("Cache hit ratio by model", "Cache reads / all input tokens, from the responses.",
                       [target(rated("anthropic_client_cache_read_input_tokens_total", CM, "model") + "\n/ (\n  "
                               + rated("anthropic_client_cache_read_input_tokens_total", CM, "model") + "\n+ "
                               + rated("anthropic_client_uncached_input_tokens_total", CM, "model") + "\n+ "
                               + rated("anthropic_client_cache_creation_input_tokens_total", CM, "model")
                               + "\n> 0)", "{{model}}")], "percentunit", max_one=True), 8, 8)
    lay.add(timeseries("Web searches and instrumentation health",
                       "Web searches per second; and problems of the middleware itself: failed recordings by "
                       "stage and request-log rows dropped because the writer's queue was full (both should "
                       "stay at 0).",
                       [target(rated("anthropic_client_web_search_requests_total", CM, "model"),
                               "web searches {{model}}"),
                        target(rated("anthropic_client_instrumentation_errors_total", 'job=~"$job"', "stage"),
                               "instrumentation errors {{stage}}"),
                        target(rated("anthropic_client_request_log_dropped_total", 'job=~"$job"'),
                               "request log rows dropped")], "short"), 8, 8)

    variables = [
        datasource_variable(),
        query_variable("job", "Application (job)",
                       "label_values(anthropic_client_request_duration_seconds_count, job)"),
        query_variable("model", "Model",
                       'label_values(anthropic_client_request_duration_seconds_count{job=~"$job"}, model)'),
        query_variable("operation", "Operation",
                       'label_values(anthropic_client_request_duration_seconds_count{job=~"$job"}, operation)'),
    ]
    return dashboard("anthropic-client-latency", "Anthropic: Client latency",
                     "Latency, errors, retries and rate-limit headroom of the Messages API calls made by "
                     "applications instrumented with the anthropic-usage-exporter client middleware.",
                     ["anthropic"], variables, lay, time_from="now-3h", refresh="30s")


# --------------------------------------------------------------------------------------------
# Exporter health
# --------------------------------------------------------------------------------------------

E = 'organization=~"$organization"'


def exporter_health() -> dict[str, Any]:
    lay = Layout()
    lay.row("Exporter")
    lay.add(stat("Scrape up", "up of the exporter's scrape job: 1 when Prometheus scrapes it.",
                 [target('min(up{job=~"$job"})', "up")], "none",
                 thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
                 mappings=[{"type": "value", "options": {"0": {"text": "DOWN"}, "1": {"text": "UP"}}}]), 4, 4)
    lay.add(stat("Reports polled successfully", "How many of the (organization, report) pairs had their "
                 "newest poll succeed (anthropic_exporter_up), out of all.",
                 [target(f"sum(anthropic_exporter_up{{{E}}})", "ok"),
                  target(f"count(anthropic_exporter_up{{{E}}})", "all")], "none"), 4, 4)
    lay.add(stat("Known API keys", "Series of anthropic_api_key_info (all statuses).",
                 [target(f"count(anthropic_api_key_info{{{E}}})", "API keys")], "none"), 4, 4)
    lay.add(stat("Known workspaces", "Series of anthropic_workspace_info (archived included, plus Default).",
                 [target(f"count(anthropic_workspace_info{{{E}}})", "workspaces")], "none"), 4, 4)
    lay.add(table("Version", "anthropic_exporter_build_info.",
                  [target('anthropic_exporter_build_info{job=~"$job"}', "{{version}}", instant=True, fmt="table")],
                  hide=("Time", "Value", "__name__")), 8, 4)
    lay.add(table("Newest poll per report", "anthropic_exporter_up: 1 if the newest poll of the report "
                  "succeeded, 0 if it failed (the last good figures keep being served until they are older "
                  "than the report's stale_after).",
                  [target(f"anthropic_exporter_up{{{E}}}", "", instant=True, fmt="table")],
                  hide=("Time", "__name__", "job", "instance")), 8, 8)
    lay.add(table("Why usage or cost figures may be missing",
                  "Time since the newest successful poll of each organization's usage and cost report "
                  "(time() - anthropic_exporter_last_success_timestamp_seconds). Once it passes the report's "
                  "stale_after (by default 15 minutes, or three poll intervals if that is longer), the "
                  "exporter withholds the report's windowed series (anthropic_usage_*, anthropic_cost_usd): "
                  "they vanish from /metrics, so the spend and usage panels show no data and the spend "
                  "and budget alerts cannot fire, until a poll of the report succeeds again. Red: past "
                  "the default 15 minutes (AnthropicExporterPollStale); see Newest poll per report and "
                  "Poll errors by reason for why the polls fail. The names (_info) and these health "
                  "series are always served.",
                  [target(f'time() - anthropic_exporter_last_success_timestamp_seconds{{report=~"usage|cost", {E}}}',
                          "", instant=True, fmt="table")],
                  "s", hide=("Time", "__name__", "job", "instance"), rename={"Value": "since last success"},
                  thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 900}]), 8, 8)
    lay.add(timeseries("Rows skipped by reason", "anthropic_exporter_skipped_rows: rows of the data the "
                       "exporter now holds that it could not use, per report and reason: invalid_row (a row "
                       "it cannot read) or currency (a cost row not in USD, left out rather than mixed into "
                       "the dollar figures). The poll still succeeds and its figures lack those rows. "
                       "Normally 0.",
                       [target(f"sum by (organization, report, reason) (anthropic_exporter_skipped_rows{{{E}}})",
                               "{{organization}} {{report}} {{reason}}")], "short"), 8, 8)
    lay.add(timeseries("Time since the last successful poll", "time() - "
                       "anthropic_exporter_last_success_timestamp_seconds. Usage and cost figures are withheld "
                       "once it passes their stale_after (15m by default); AnthropicExporterPollStale fires "
                       "after 15m for usage and cost, 3h for the lists.",
                       [target(f"time() - anthropic_exporter_last_success_timestamp_seconds{{{E}}}",
                               "{{organization}} {{report}}")], "s"), 8, 8)
    lay.add(timeseries("Data age", "time() - anthropic_exporter_data_timestamp_seconds: how long ago the newest "
                       "bucket holding any data ended (at most the poll time).",
                       [target(f"time() - anthropic_exporter_data_timestamp_seconds{{{E}}}",
                               "{{organization}} {{report}}")], "s"), 8, 8)
    lay.add(timeseries("Poll duration", "anthropic_exporter_poll_duration_seconds: how long the newest poll "
                       "took, pages and retries included.",
                       [target(f"anthropic_exporter_poll_duration_seconds{{{E}}}", "{{organization}} {{report}}")],
                       "s"), 8, 8)

    lay.row("Admin API")
    lay.add(timeseries("Admin API requests by endpoint and code", "anthropic_exporter_api_requests_total: every "
                       "HTTP request to the Admin API, retries included (the API allows about 100 a minute).",
                       [target(rated("anthropic_exporter_api_requests_total", E, "endpoint, code") + " * 60",
                               "{{endpoint}} {{code}}")], "reqpm", stack=True), 12, 8)
    lay.add(timeseries("Poll errors by reason", "anthropic_exporter_poll_errors_total: failed polls per report "
                       "and reason, over the dashboard's time range (rows skipped within a successful poll "
                       "are counted apart, in Rows skipped by reason).",
                       [target("sum by (report, reason) "
                               f"(increase(anthropic_exporter_poll_errors_total{{{E}}}[$__range]))",
                               "{{report}} {{reason}}")], "short"), 12, 8)
    lay.add(timeseries("Scrape duration", "How long Prometheus's scrape of the exporter took (a scrape only "
                       "reads the latest snapshot: it never calls the Admin API).",
                       [target('scrape_duration_seconds{job=~"$job"}', "{{instance}}")], "s"), 12, 7)
    lay.add(timeseries("Samples per scrape", "Series in the exporter's exposition: grows with workspaces, "
                       "API keys, models and windows.",
                       [target('scrape_samples_scraped{job=~"$job"}', "{{instance}}")], "short"), 12, 7)

    variables = [
        datasource_variable(),
        query_variable("job", "Exporter job", "label_values(anthropic_exporter_build_info, job)"),
        query_variable("organization", "Organization", "label_values(anthropic_exporter_up, organization)"),
    ]
    return dashboard("anthropic-exporter-health", "Anthropic: Exporter health",
                     "Is anthropic-usage-exporter up, are its polls of the Admin API succeeding, and how "
                     "fresh are its figures.", ["anthropic"], variables, lay, time_from="now-6h")


def dashboards() -> dict[Path, str]:
    built = {"anthropic-spend-usage.json": spend_and_usage(),
             "anthropic-client-latency.json": client_latency(),
             "anthropic-exporter-health.json": exporter_health(),
             "anthropic-claude-code.json": claude_code()}
    return {DASHBOARDS_DIR / name: json.dumps(d, indent=2) + "\n" for name, d in built.items()}


# --------------------------------------------------------------------------------------------
# PrometheusRule: the same groups as the rule files
# --------------------------------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in RULE_FILES:
        groups.extend(yaml.safe_load(path.read_text(encoding="utf-8"))["groups"])
    return groups


def prometheus_rule() -> dict[Path, str]:
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "anthropic-usage-exporter",
                     "labels": {"app.kubernetes.io/name": "anthropic-usage-exporter",
                                "app.kubernetes.io/component": "alerting"}},
        "spec": {"groups": rule_groups()},
    }
    header = ("# GENERATED by deploy/generate.py from deploy/prometheus/rules/*.rules.yml: do not edit.\n"
              "# Edit the rule files (the budget lives in anthropic-budget.rules.yml), then run\n"
              "# python deploy/generate.py\n")
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)
    return {PROMETHEUS_RULE: header + body}


def generated() -> dict[Path, str]:
    return {**dashboards(), **prometheus_rule()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.relative_to(DEPLOY.parent))
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(DEPLOY.parent)}")
    if stale:
        print("out of date (run python deploy/generate.py): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
