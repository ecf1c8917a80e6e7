"""Helpers for the deploy tests: where things are, the metric contract, a PromQL scanner."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# The metric contract: the project's reference of every metric it exports.
METRICS_MD = REPO / "docs" / "metrics.md"
PROMETHEUS_DIR = DEPLOY / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
DASHBOARDS_DIR = DEPLOY / "grafana" / "dashboards"
KUBERNETES_DIR = DEPLOY / "kubernetes"
EXPORTER_JOB = "anthropic-usage-exporter"
EXPORTER_PORT = 10711

# Series Prometheus makes itself for every target; the only names outside the contract that
# a dashboard or rule may use.
SYNTHETIC_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def tool(name: str, install_hint: str) -> str:
    """The path of a command-line tool; fails the test (never skips) when it is missing.

    The scripts directory of the running Python comes first, then PATH: the tools that the
    `test` extra installs (kubectl, hadolint) sit next to the interpreter, and the README's
    test command may run the venv's python without activating the venv.
    """
    path = shutil.which(name, path=os.pathsep.join(tool_search_path()))
    assert path, f"{name} is not installed: {install_hint}"
    return path


def tool_search_path() -> list[str]:
    """Where tool() looks, in order: the running interpreter's directory and its scripts
    directory (where pip puts a package's executables), then PATH."""
    first = [str(Path(sys.executable).parent), sysconfig.get_path("scripts")]
    return [*dict.fromkeys(first), *os.environ.get("PATH", os.defpath).split(os.pathsep)]


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------
# The metric contract (docs/metrics.md)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ContractMetric:
    name: str
    type: str  # gauge, counter or histogram

    def series_names(self) -> set[str]:
        """The names Prometheus ingests for it."""
        if self.type == "histogram":
            return {f"{self.name}_bucket", f"{self.name}_count", f"{self.name}_sum"}
        return {self.name}


_NAME = r"anthropic_[a-z0-9_]*[a-z0-9]"


def contract_metrics(text: str | None = None) -> dict[str, ContractMetric]:
    """Every metric named in docs/metrics.md, with its type.

    Types come from the tables that have a type column; the rest of section 1 (usage, cost,
    _info) are gauges, and a name ending in _total is a counter.
    """
    if text is None:
        assert METRICS_MD.exists(), f"the metric contract is missing: {METRICS_MD}"
        text = METRICS_MD.read_text(encoding="utf-8")
    metrics: dict[str, ContractMetric] = {}
    for match in re.finditer(rf"`({_NAME})(?:\{{[^`]*\}})?`", text):
        name = match.group(1)
        metrics.setdefault(name, ContractMetric(name, "counter" if name.endswith("_total") else "gauge"))
    for match in re.finditer(rf"^\|\s*`({_NAME})(?:\{{[^`]*\}})?`\s*\|\s*(gauge|counter|histogram)\s*\|",
                             text, re.MULTILINE):
        metrics[match.group(1)] = ContractMetric(match.group(1), match.group(2))
    return metrics


def contract_labels(text: str | None = None) -> dict[str, set[str]]:
    """The labels of every contract metric (without job and instance, which Prometheus adds).

    From the braces after a name and the labels column of the client table; the usage, cost
    and Claude Code reports' labels are described in prose (docs/metrics.md, "Labels", "Cost"
    and "Claude Code"), so they are spelled out here: every dimension `group_by` may add, each
    present only if configured, and the per-actor labels, present only with `per_actor`.
    The estimated cost has the usage labels too; the unpriced tokens only those in their braces.
    """
    if text is None:
        text = METRICS_MD.read_text(encoding="utf-8")
    labels: dict[str, set[str]] = {name: set() for name in contract_metrics(text)}
    for match in re.finditer(rf"`({_NAME})\{{([^`]*)\}}`", text):
        labels[match.group(1)] |= {part.split("=")[0].strip() for part in match.group(2).split(",")}
    for match in re.finditer(rf"^\|\s*`({_NAME})`\s*\|\s*(?:gauge|counter|histogram)\s*\|([^|\n]*)\|",
                             text, re.MULTILINE):
        labels[match.group(1)] |= set(re.findall(r"`([a-z_]+)`", match.group(2)))
    usage = {"organization", "window", "workspace_id", "api_key_id", "model", "service_tier",
             "context_window", "inference_geo", "speed", "account_id", "service_account_id"}
    cost = {"organization", "window", "workspace_id", "cost_type", "model", "token_type", "service_tier",
            "context_window", "inference_geo"}
    claude_code = {"organization", "window", "customer_type", "terminal_type", "actor", "actor_type"}
    for name in labels:
        # The unpriced tokens are per model only (docs/metrics.md gives their labels in braces).
        if name.startswith("anthropic_usage_") and name != "anthropic_usage_unpriced_tokens":
            labels[name] |= usage
        if name == "anthropic_cost_usd":
            labels[name] |= cost
        if name.startswith("anthropic_claude_code_"):
            labels[name] |= claude_code
    return labels


def windowed_metrics() -> set[str]:
    """The gauges that hold a figure over a window (label `window`): never rate() them, and pick
    one window. Usage, cost and Claude Code sums, and the rate-limit peak utilization."""
    return {name for name, labels in contract_labels().items() if "window" in labels}


# --------------------------------------------------------------------------------------------
# Shipped rules and dashboards
# --------------------------------------------------------------------------------------------

def rule_files() -> list[Path]:
    files = sorted(RULES_DIR.glob("*.rules.yml"))
    assert files, f"no rule files in {RULES_DIR}"
    return files


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.test.yml"))


def rules() -> list[dict[str, Any]]:
    """Every rule of every shipped rule file, each with its `group` and `file` added."""
    result = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                result.append({**rule, "group": group["name"], "file": path.name})
    return result


def recording_rules() -> list[dict[str, Any]]:
    return [r for r in rules() if "record" in r]


def alert_rules() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def dashboard_files() -> list[Path]:
    files = sorted(DASHBOARDS_DIR.glob("*.json"))
    assert files, f"no dashboards in {DASHBOARDS_DIR}"
    return files


def load_dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


@dataclass(frozen=True)
class DashboardQuery:
    dashboard: str
    where: str  # panel title and refId, or the variable's name
    expr: str  # as written, with Grafana variables
    kind: str  # "panel" or "variable"

    @property
    def id(self) -> str:
        return f"{self.dashboard}: {self.where}"


def dashboard_queries() -> list[DashboardQuery]:
    """Every PromQL expression of every dashboard: panel targets and query variables."""
    result = []
    for path in dashboard_files():
        dash = load_dashboard(path)
        for panel in panels(dash):
            for t in panel.get("targets", []):
                result.append(DashboardQuery(path.stem, f"{panel['title']} [{t['refId']}]", t["expr"], "panel"))
        for var in dash["templating"]["list"]:
            if var["type"] == "query":
                query = var["query"] if isinstance(var["query"], str) else var["query"]["query"]
                result.append(DashboardQuery(path.stem, f"variable ${var['name']}", variable_promql(query),
                                             "variable"))
    return result


def variable_promql(query: str) -> str:
    """The PromQL inside a Grafana Prometheus variable query."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_]\w*)\s*\)\s*", query, re.S)
    if match:
        return match.group(1)
    match = re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.S)
    if match:
        return match.group(1)
    raise AssertionError(f"unsupported variable query (use label_values(expr, label) or query_result(expr)): {query}")


# What the Grafana variables stand for when an expression is sent to Prometheus directly:
# every multi-value variable at "All" (.*), the usage and Claude Code windows at their defaults.
GRAFANA_DEFAULTS = {
    "__rate_interval": "1m", "__interval": "15s", "__range": "1m",
    "organization": ".*", "workspace": ".*", "model": ".*", "job": ".*", "operation": ".*",
    "customer_type": ".*", "terminal_type": ".*",
    "window": "24h", "code_window": "7d",
}


def expand_grafana(expr: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in GRAFANA_DEFAULTS, f"unknown Grafana variable ${name} in {expr}"
        return GRAFANA_DEFAULTS[name]

    # $1, ${1}: capture groups of label_replace, which Grafana leaves alone (no variable has that name).
    return re.sub(r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\$([A-Za-z_]\w*)", value, expr)


# --------------------------------------------------------------------------------------------
# A small PromQL scanner: finds the series selectors of an expression
# --------------------------------------------------------------------------------------------

@dataclass
class Selector:
    name: str | None
    matchers: dict[str, tuple[str, str]] = field(default_factory=dict)  # label -> (op, value)
    matcher_text: str = ""
    range: str | None = None
    offset: str | None = None
    function: str | None = None  # the innermost function or aggregation it is an argument of

    def instant_query(self) -> str:
        """The selector alone as an instant query (offset kept, range dropped)."""
        text = f"{self.name or ''}{{{self.matcher_text}}}" if self.matcher_text else (self.name or "")
        return f"{text} offset {self.offset}" if self.offset else text


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<brace>\{)
  | (?P<bracket>\[[^\]]*\])
  | (?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*(?![\w.]))
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>(),=@])
""", re.VERBOSE)
_MATCHER = re.compile(r"""\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*("(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')\s*,?""")
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = _LABEL_LISTS | {"and", "or", "unless", "offset", "bool", "atan2", "inf", "nan"}
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                 "bottomk", "topk", "quantile", "limitk", "limit_ratio"}


@dataclass
class _Tok:
    kind: str
    text: str


def _tokens(expr: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(expr):
        if expr[pos] == "{":
            end = _closing_brace(expr, pos)
            toks.append(_Tok("matchers", expr[pos + 1:end]))
            pos = end + 1
            continue
        match = _TOKEN.match(expr, pos)
        assert match, f"cannot scan PromQL at {expr[pos:pos + 30]!r} in {expr!r}"
        kind = match.lastgroup or ""
        if kind not in ("ws", "comment"):
            toks.append(_Tok(kind, match.group()))
        pos = match.end()
    return toks


def _closing_brace(expr: str, start: int) -> int:
    pos = start + 1
    while pos < len(expr):
        ch = expr[pos]
        if ch in "\"'`":
            end = expr.index(ch, pos + 1)
            while ch != "`" and expr[end - 1] == "\\":
                end = expr.index(ch, end + 1)
            pos = end + 1
            continue
        if ch == "}":
            return pos
        pos += 1
    raise AssertionError(f"unbalanced {{ in {expr!r}")


def parse_matchers(text: str) -> dict[str, tuple[str, str]]:
    result: dict[str, tuple[str, str]] = {}
    pos = 0
    while pos < len(text) and text[pos:].strip():
        match = _MATCHER.match(text, pos)
        assert match, f"cannot parse label matchers {{{text}}}"
        result[match.group(1)] = (match.group(2), json.loads(match.group(3)) if match.group(3)[0] == '"'
                                  else match.group(3)[1:-1])
        pos = match.end()
    return result


def selectors(expr: str) -> list[Selector]:
    """The series selectors of a PromQL expression, in order."""
    toks = _tokens(expr)
    found: list[Selector] = []
    stack: list[str | None] = []  # the function of each open parenthesis
    i = 0
    while i < len(toks):
        tok = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if tok.kind == "ident" and tok.text in _LABEL_LISTS:
            i += 1
            if nxt is not None and nxt.text == "(":  # a label list: skip it
                while toks[i].text != ")":
                    i += 1
                i += 1
            continue
        if tok.kind == "ident" and tok.text in _KEYWORDS:
            i += 1
            continue
        if tok.kind == "op" and tok.text == "(":
            stack.append(None)
            i += 1
            continue
        if tok.kind == "op" and tok.text == ")":
            stack.pop()
            i += 1
            continue
        if tok.kind == "ident" and nxt is not None and nxt.text == "(":  # a function call
            stack.append(tok.text)
            i += 2
            continue
        if tok.kind == "ident" and tok.text in _AGGREGATIONS and nxt is not None and nxt.text in ("by", "without"):
            # `sum by (x) (...)`: the aggregation's own parenthesis comes after the label list.
            j = i + 2
            while toks[j].text != ")":
                j += 1
            stack.append(tok.text)
            i = j + 2
            continue
        if tok.kind in ("ident", "matchers"):
            sel = Selector(name=tok.text if tok.kind == "ident" else None)
            i += 1
            if tok.kind == "matchers":
                sel.matcher_text = tok.text
            elif i < len(toks) and toks[i].kind == "matchers":
                sel.matcher_text = toks[i].text
                i += 1
            sel.matchers = parse_matchers(sel.matcher_text)
            if sel.name is None and "__name__" in sel.matchers:
                sel.name = sel.matchers["__name__"][1]
            if i < len(toks) and toks[i].kind == "bracket":
                sel.range = toks[i].text[1:-1]
                i += 1
            if i + 1 < len(toks) and toks[i].text == "offset":
                sel.offset = toks[i + 1].text
                i += 2
            sel.function = next((f for f in reversed(stack) if f is not None), None)
            found.append(sel)
            continue
        i += 1
    assert not stack, f"unbalanced parentheses in {expr!r}"
    return found
