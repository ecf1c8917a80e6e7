"""Configuration: strict YAML parsing into frozen dataclasses, every error reported at once."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from exporter.pricing import PriceTable, default_table, parse_pricing
from exporter.timeutil import format_duration, parse_duration
from exporter.yamldoc import DocumentReader

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_KEY_ENV = "ANTHROPIC_ADMIN_API_KEY"

# The usage report's grouping dimensions that may become labels. `speed` needs the API's
# fast-mode beta header, which the exporter then sends.
GROUP_BY_CHOICES = ("workspace_id", "api_key_id", "model", "service_tier", "context_window", "inference_geo",
                    "speed", "account_id", "service_account_id")
DEFAULT_GROUP_BY = ("workspace_id", "api_key_id", "model", "service_tier", "context_window")
# Always fetched, whatever the labels: what a usage row's price depends on, and the workspace
# for comparing the estimate with the bill.
PRICING_DIMENSIONS = ("workspace_id", "model", "service_tier", "context_window", "inference_geo")

# Bucket widths and the most buckets one request may ask for (the API's `limit` maximum).
MAX_BUCKETS = {"1m": 1440, "1h": 168, "1d": 31}
BUCKET_SECONDS = {"1m": 60, "1h": 3600, "1d": 86400}
CALENDARS = ("day", "month")
# The longest sliding span summed from each width; anything longer cannot be served.
MAX_SPAN = {"1m": 86400, "1h": 31 * 86400}
# Reports whose figures are windowed, so can go stale.
WINDOWED_REPORTS = ("usage", "cost", "claude_code")
# Every report the exporter can poll, in the order a first round polls them (workspaces before
# rate_limits, whose workspace calls need the list).
REPORTS = ("usage", "cost", "api_keys", "workspaces", "rate_limits", "claude_code")
OPTIONAL_REPORTS = ("rate_limits", "claude_code")
MIN_STALE_AFTER = 900.0  # 15 minutes; the default is this or three poll intervals, the longer
DEFAULT_REFETCH = {"1m": 900.0, "1h": 3 * 3600.0, "1d": 3 * 86400.0}
DEFAULT_FULL_REFRESH = 6 * 3600.0

T = TypeVar("T", "Organization", "Window")
_LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")


class ConfigError(Exception):
    """Every problem found in a configuration, one per line, each naming its path."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class Secret:
    """A string that never shows itself in repr, str, logs or config dumps."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Organization:
    name: str
    api_key: Secret = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    api_key_env: str | None = DEFAULT_KEY_ENV
    api_key_file: str | None = None


@dataclass(frozen=True)
class Window:
    """A sum over report buckets: a sliding ``span`` in seconds, or a ``calendar`` day or month.

    Which buckets serve it is window arithmetic (``exporter.windows``), not configuration.
    """

    name: str
    span: float | None = None
    calendar: str | None = None


@dataclass(frozen=True)
class PollIntervals:
    usage: float = 60.0
    cost: float = 300.0
    api_keys: float = 3600.0
    workspaces: float = 3600.0
    rate_limits: float = 900.0  # overrides take effect within about an hour
    claude_code: float = 3600.0  # the data lands about an hour after the activity


@dataclass(frozen=True)
class HTTPSettings:
    request_timeout: float = 30.0
    poll_timeout: float = 120.0
    # The Admin API allows about 100 requests a minute per organization; stay below, leaving room
    # for other admin tools. A first round (a month of Claude Code days among it) fits in one minute.
    max_requests_per_minute: int = 60
    # A response larger than this is refused as invalid, not read to the end.
    max_response_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True)
class StaleAfter:
    """Per windowed report, how old its newest good poll may be before its figures are
    withheld; None: never withheld."""

    usage: float | None
    cost: float | None
    claude_code: float | None


DEFAULT_WINDOWS = (
    Window("1h", span=3600),
    Window("24h", span=86400),
    Window("7d", span=7 * 86400),
    Window("30d", span=30 * 86400),
    Window("today", calendar="day"),
    Window("month", calendar="month"),
)


def default_stale_after(intervals: PollIntervals) -> StaleAfter:
    return StaleAfter(*(max(MIN_STALE_AFTER, 3 * getattr(intervals, report)) for report in WINDOWED_REPORTS))


@dataclass(frozen=True)
class ClaudeCodeSettings:
    enabled: bool = True
    # Per-actor labels carry email addresses (personal data) and the organization's head count.
    per_actor: bool = False


@dataclass(frozen=True)
class RateLimitsSettings:
    enabled: bool = True


@dataclass(frozen=True)
class Config:
    organizations: tuple[Organization, ...]
    poll_intervals: PollIntervals = PollIntervals()
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY
    windows: tuple[Window, ...] = DEFAULT_WINDOWS
    http: HTTPSettings = HTTPSettings()
    stale_after: StaleAfter = StaleAfter(MIN_STALE_AFTER, MIN_STALE_AFTER, 3 * 3600.0)  # default_stale_after
    # The trailing horizon re-read by every poll, per bucket width, in seconds.
    refetch: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_REFETCH))
    full_refresh: float = DEFAULT_FULL_REFRESH
    rate_limits: RateLimitsSettings = RateLimitsSettings()
    claude_code: ClaudeCodeSettings = ClaudeCodeSettings()
    # The configuration's `pricing` section as written (validated), and the shipped price table
    # with it applied; configurations compare by the former.
    pricing_section: Any = None
    pricing: PriceTable = field(default_factory=default_table, compare=False)

    def usage_fetch_group_by(self) -> tuple[str, ...]:
        """What the usage report is grouped by: the configured labels, then what pricing and the
        estimate-to-bill ratio need (the exported series are summed back to the configured labels)."""
        needed = [*PRICING_DIMENSIONS, *(("speed",) if "speed" in self.group_by else ())]
        return (*self.group_by, *(d for d in needed if d not in self.group_by))

    def reports(self) -> tuple[str, ...]:
        """The reports this configuration polls."""
        enabled = {"rate_limits": self.rate_limits.enabled, "claude_code": self.claude_code.enabled}
        return tuple(report for report in REPORTS if enabled.get(report, True))


def load_config(path: str | None, environ: Mapping[str, str] | None = None, *,
                resolve_keys: bool = True) -> Config:
    """Read and validate the config file; with no path, the defaults with one organization.

    Raises ConfigError listing every problem. ``resolve_keys=False`` skips reading admin keys.
    """
    environ = os.environ if environ is None else environ
    if path is None:
        return parse_config({}, environ, resolve_keys=resolve_keys)
    data = read_yaml(path)
    return parse_config({} if data is None else data, environ, resolve_keys=resolve_keys)


def read_yaml(path: str) -> Any:
    """A configuration file's YAML document; ConfigError naming the file (and the place) if unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: config file is not UTF-8 text"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([f"{path}: invalid YAML{where}: {problem}"]) from None


def parse_config(data: Any, environ: Mapping[str, str], *, resolve_keys: bool = True) -> Config:
    """Validate a decoded YAML document. ``resolve_keys=False`` skips reading the admin keys."""
    parser = _Parser(environ, resolve_keys)
    config = parser.config(data)
    if parser.problems:
        raise ConfigError(parser.problems)
    assert config is not None
    return config


class _Parser(DocumentReader):
    def __init__(self, environ: Mapping[str, str], resolve_keys: bool):
        super().__init__()
        self.environ = environ
        self.resolve_keys = resolve_keys

    def describe(self, value: Any) -> str:
        return _kind(value)

    def duration(self, value: Any, path: str, default: float) -> float:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.problem(path, f"must be a duration such as 60s or 5m, got {_kind(value)}")
            return default
        try:
            seconds = parse_duration(value) if isinstance(value, str) else float(value)
        except ValueError as exc:
            self.problem(path, str(exc))
            return default
        if seconds < 1:
            self.problem(path, f"must be at least 1s, got {value!r}")
            return default
        return seconds

    def stale_after(self, value: Any, defaults: StaleAfter) -> StaleAfter:
        fields = self.mapping(value, "stale_after", WINDOWED_REPORTS)
        chosen: dict[str, float | None] = {}
        for report in WINDOWED_REPORTS:
            raw = fields.get(report)
            if raw == "never":
                chosen[report] = None
            else:
                chosen[report] = self.duration(raw, f"stale_after.{report}", getattr(defaults, report))
        return StaleAfter(**chosen)

    def refetch(self, value: Any) -> dict[str, float]:
        fields = self.mapping(value, "refetch", tuple(BUCKET_SECONDS))
        horizons = {}
        for width, default in DEFAULT_REFETCH.items():
            seconds = self.duration(fields.get(width), f"refetch.{width}", default)
            if seconds < BUCKET_SECONDS[width]:
                self.problem(f"refetch.{width}", f"must be at least one bucket ({width}), got {fields[width]!r}")
                seconds = default
            horizons[width] = seconds
        return horizons

    def config(self, data: Any) -> Config | None:
        top = self.mapping(data, "", ("organizations", "poll_intervals", "usage", "windows", "http",
                                      "stale_after", "refetch", "full_refresh", "rate_limits", "claude_code",
                                      "pricing"))
        if data is not None and not isinstance(data, dict):
            return None
        organizations = self.organizations(top.get("organizations"))
        poll = self.poll_intervals(top.get("poll_intervals"))
        usage = self.mapping(top.get("usage"), "usage", ("group_by",))
        group_by = self.group_by(usage.get("group_by", list(DEFAULT_GROUP_BY)))
        windows = self.windows(top.get("windows"))
        http = self.http(top.get("http"))
        stale_after = self.stale_after(top.get("stale_after"), default_stale_after(poll))
        refetch = self.refetch(top.get("refetch"))
        full_refresh = self.duration(top.get("full_refresh"), "full_refresh", DEFAULT_FULL_REFRESH)
        rate_limits = self.mapping(top.get("rate_limits"), "rate_limits", ("enabled",))
        claude_code = self.mapping(top.get("claude_code"), "claude_code", ("enabled", "per_actor"))
        pricing, problems = parse_pricing(top.get("pricing"))
        self.problems.extend(problems)
        return Config(organizations, poll, group_by, windows, http, stale_after, refetch, full_refresh,
                      RateLimitsSettings(self.boolean(rate_limits.get("enabled"), "rate_limits.enabled", True)),
                      ClaudeCodeSettings(self.boolean(claude_code.get("enabled"), "claude_code.enabled", True),
                                         self.boolean(claude_code.get("per_actor"), "claude_code.per_actor", False)),
                      top.get("pricing"), pricing)

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(path, f"must be true or false, got {_kind(value)}")
            return default
        return value

    def organizations(self, value: Any) -> tuple[Organization, ...]:
        if value is None:
            value = [{"name": "default"}]
        return self.named_list(value, "organizations", "organization", self.organization) or ()

    def organization(self, value: Any, path: str) -> Organization | None:
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping, got {_kind(value)}")
            return None
        fields = self.mapping(value, path, ("name", "api_key_env", "api_key_file", "base_url"))
        name = self.string(fields.get("name"), f"{path}.name")
        if name is not None and not _LABEL_VALUE_RE.match(name):
            self.problem(f"{path}.name", f"{name!r} may hold only letters, digits and _.:-")
        base_url = self.base_url(fields.get("base_url", DEFAULT_BASE_URL), f"{path}.base_url")
        key_env, key_file, key = self.api_key(fields, path)
        if name is None or base_url is None:
            return None
        return Organization(name, key, base_url, key_env, key_file)

    def base_url(self, value: Any, path: str) -> str | None:
        url = self.string(value, path)
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.problem(path, f"{url!r} is not an http(s) URL with a host")
            return None
        if parts.query or parts.fragment or parts.username or parts.password:
            self.problem(path, f"{url!r} must not carry credentials, a query or a fragment")
            return None
        if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
            # The admin key would cross the network in clear text.
            self.problem(path, f"{url!r} must use https (plain http is allowed only for localhost)")
            return None
        return url.rstrip("/")

    def api_key(self, fields: dict[str, Any], path: str) -> tuple[str | None, str | None, Secret]:
        key_env = fields.get("api_key_env")
        key_file = fields.get("api_key_file")
        if key_env is not None and key_file is not None:
            self.problem(path, "set api_key_env or api_key_file, not both")
            return None, None, Secret("")
        if key_file is not None:
            key_file = self.string(key_file, f"{path}.api_key_file")
            if key_file is None or not self.resolve_keys:
                return None, key_file, Secret("")
            try:
                with open(key_file, encoding="utf-8") as fh:
                    secret = fh.read().strip()
            except OSError as exc:
                self.problem(f"{path}.api_key_file", f"cannot read {key_file}: {exc.strerror}")
                return None, key_file, Secret("")
            except UnicodeDecodeError:
                self.problem(f"{path}.api_key_file", f"{key_file} is not UTF-8 text")
                return None, key_file, Secret("")
            if not secret:
                self.problem(f"{path}.api_key_file", f"{key_file} is empty")
            self.check_key_characters(secret, f"{path}.api_key_file", f"{key_file}")
            return None, key_file, Secret(secret)
        key_env = self.string(DEFAULT_KEY_ENV if key_env is None else key_env, f"{path}.api_key_env")
        if key_env is None or not self.resolve_keys:
            return key_env, None, Secret("")
        secret = self.environ.get(key_env, "").strip()
        if not secret:
            self.problem(f"{path}.api_key_env", f"environment variable {key_env} is not set or empty")
        self.check_key_characters(secret, f"{path}.api_key_env", f"environment variable {key_env}")
        return key_env, None, Secret(secret)

    def check_key_characters(self, secret: str, path: str, source: str) -> None:
        # The key goes into an HTTP header; say so here rather than fail every request later.
        # The message never quotes the key.
        if secret and not all("!" <= c <= "~" for c in secret):
            self.problem(path, f"the key in {source} holds whitespace or non-ASCII characters")

    def poll_intervals(self, value: Any) -> PollIntervals:
        defaults = PollIntervals()
        fields = self.mapping(value, "poll_intervals", REPORTS)
        return PollIntervals(**{
            name: self.duration(fields.get(name), f"poll_intervals.{name}", getattr(defaults, name))
            for name in REPORTS
        })

    def group_by(self, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.problem("usage.group_by", f"must be a list, got {_kind(value)}")
            return DEFAULT_GROUP_BY
        result: list[str] = []
        for i, item in enumerate(value):
            if item not in GROUP_BY_CHOICES:
                self.problem(f"usage.group_by[{i}]",
                             f"unknown dimension {item!r} (allowed: {', '.join(GROUP_BY_CHOICES)})")
            elif item in result:
                self.problem(f"usage.group_by[{i}]", f"duplicate dimension {item!r}")
            else:
                result.append(item)
        return tuple(result)

    def windows(self, value: Any) -> tuple[Window, ...]:
        if value is None:
            return DEFAULT_WINDOWS
        return self.named_list(value, "windows", "window", self.window) or DEFAULT_WINDOWS

    def named_list(self, value: Any, path: str, kind: str, parse: Callable[[Any, str], T | None]) -> tuple[T, ...]:
        """A non-empty list of items with unique names, each parsed by ``parse``."""
        if not isinstance(value, list) or not value:
            self.problem(path, f"must be a non-empty list, got {_kind(value)}")
            return ()
        result: list[T] = []
        names: set[str] = set()
        for i, raw in enumerate(value):
            item = parse(raw, f"{path}[{i}]")
            if item is None:
                continue
            name = item.name
            if name in names:
                self.problem(f"{path}[{i}].name", f"duplicate {kind} name {name!r}")
            names.add(name)
            result.append(item)
        return tuple(result)

    def window(self, value: Any, path: str) -> Window | None:
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping, got {_kind(value)}")
            return None
        fields = self.mapping(value, path, ("name", "span", "calendar", "bucket_width", "buckets"))
        name = self.string(fields.get("name"), f"{path}.name")
        if name is not None and not _LABEL_VALUE_RE.match(name):
            self.problem(f"{path}.name", f"{name!r} may hold only letters, digits and _.:-")
            name = None
        span = self.legacy_span(fields, path) if "buckets" in fields or "bucket_width" in fields else None
        if "span" in fields:
            span = self.duration(fields["span"], f"{path}.span", 0.0) or None
            if span is None:
                return None
        calendar = fields.get("calendar")
        if (calendar is None) == (span is None):
            if "buckets" not in fields and "bucket_width" not in fields:  # else legacy_span said what is wrong
                self.problem(path, "set exactly one of span or calendar")
            return None
        if calendar is not None and (not isinstance(calendar, str) or calendar not in CALENDARS):
            self.problem(f"{path}.calendar", f"must be day or month, got {calendar!r}")
            return None
        if span is not None and not self.servable_span(span, f"{path}.span"):
            return None
        return None if name is None else Window(name, span=span, calendar=calendar)

    def legacy_span(self, fields: dict[str, Any], path: str) -> float | None:
        """The span of the older form {bucket_width, buckets} (a calendar window may name 1d)."""
        width, buckets = fields.get("bucket_width"), fields.get("buckets")
        if buckets is None and "calendar" in fields and width == "1d":
            return None
        if not isinstance(width, str) or width not in BUCKET_SECONDS:
            self.problem(f"{path}.bucket_width", f"must be one of 1m, 1h, 1d, got {width!r}"
                         " (bucket_width and buckets are deprecated: write span, e.g. {name: 7d, span: 7d})")
            return None
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
            self.problem(f"{path}.buckets", f"must be a positive integer, got {buckets!r}"
                         " (bucket_width and buckets are deprecated: write span, e.g. {name: 7d, span: 7d})")
            return None
        if "span" in fields or "calendar" in fields:
            self.problem(path, "set span or calendar, not the deprecated bucket_width and buckets as well")
            return None
        return float(buckets * BUCKET_SECONDS[width])

    def servable_span(self, span: float, path: str) -> bool:
        """A sliding span is summed from 1m buckets up to 24h, from 1h buckets up to 31 days."""
        for width, longest in MAX_SPAN.items():
            if span <= longest:
                if span % BUCKET_SECONDS[width]:
                    unit = "minutes" if width == "1m" else "hours"
                    self.problem(path, f"{format_duration(span)} is summed from {width} buckets, so it must be"
                                       f" a whole number of {unit}")
                    return False
                return True
        self.problem(path, f"{format_duration(span)} cannot be served: the longest span is 31d"
                           " (summed from 1h buckets); use calendar: month for a month")
        return False

    def http(self, value: Any) -> HTTPSettings:
        defaults = HTTPSettings()
        fields = self.mapping(value, "http", ("request_timeout", "poll_timeout", "max_requests_per_minute",
                                              "max_response_bytes"))
        rate = fields.get("max_requests_per_minute", defaults.max_requests_per_minute)
        if isinstance(rate, bool) or not isinstance(rate, int) or not 1 <= rate <= 100:
            self.problem("http.max_requests_per_minute", f"must be an integer from 1 to 100, got {rate!r}")
            rate = defaults.max_requests_per_minute
        cap = fields.get("max_response_bytes", defaults.max_response_bytes)
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1024:
            self.problem("http.max_response_bytes", f"must be a whole number of bytes, at least 1024, got {cap!r}")
            cap = defaults.max_response_bytes
        return HTTPSettings(
            request_timeout=self.duration(fields.get("request_timeout"), "http.request_timeout",
                                          defaults.request_timeout),
            poll_timeout=self.duration(fields.get("poll_timeout"), "http.poll_timeout", defaults.poll_timeout),
            max_requests_per_minute=rate,
            max_response_bytes=cap,
        )


def redacted_dump(config: Config) -> str:
    """The effective configuration as YAML: the key sources, never the keys."""
    doc = {
        "organizations": [
            {
                "name": org.name,
                "base_url": org.base_url,
                # Only where the key comes from; the key itself is never printed.
                **({"api_key_file": org.api_key_file} if org.api_key_file else {"api_key_env": org.api_key_env}),
            }
            for org in config.organizations
        ],
        "poll_intervals": {
            name: format_duration(getattr(config.poll_intervals, name))
            for name in REPORTS
        },
        "usage": {"group_by": list(config.group_by)},
        "windows": [
            {"name": w.name, **({"span": format_duration(w.span)} if w.span is not None else {"calendar": w.calendar})}
            for w in config.windows
        ],
        "http": {
            "request_timeout": format_duration(config.http.request_timeout),
            "poll_timeout": format_duration(config.http.poll_timeout),
            "max_requests_per_minute": config.http.max_requests_per_minute,
            "max_response_bytes": config.http.max_response_bytes,
        },
        "stale_after": {
            report: "never" if seconds is None else format_duration(seconds)
            for report, seconds in ((r, getattr(config.stale_after, r)) for r in WINDOWED_REPORTS)
        },
        "refetch": {width: format_duration(seconds) for width, seconds in config.refetch.items()},
        "full_refresh": format_duration(config.full_refresh),
        "rate_limits": {"enabled": config.rate_limits.enabled},
        "claude_code": {"enabled": config.claude_code.enabled, "per_actor": config.claude_code.per_actor},
        # As written: `anthropic-usage-exporter prices --config.file` shows the table in force.
        **({"pricing": config.pricing_section} if config.pricing_section is not None else {}),
    }
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)
