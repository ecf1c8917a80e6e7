"""A deterministic synthetic organization: workspaces, API keys, usage events and their cost, rate
limits, and Claude Code analytics."""

from __future__ import annotations

import copy
import random
import re
import threading
import uuid
from bisect import bisect_left
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, NamedTuple

from exporter.pricing import UNKNOWN_MODEL, PriceTable, Unpriced, default_table
from exporter.timeutil import format_rfc3339

Clock = Callable[[], datetime]

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# The token counters of a usage report row, in the names usage_totals() uses.
USAGE_FIELDS = (
    "uncached_input_tokens",
    "cache_read_input_tokens",
    "cache_creation_5m",
    "cache_creation_1h",
    "output_tokens",
    "web_search_requests",
)

# Every group_by value of the usage report (anthropic-api.md §2).
USAGE_DIMENSIONS = (
    "api_key_id",
    "workspace_id",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
    "speed",
    "account_id",
    "service_account_id",
)

# The key of cost_totals(): the fields a cost_report row carries when grouped by
# workspace_id and description.
COST_KEY_FIELDS = (
    "workspace_id",
    "cost_type",
    "model",
    "token_type",
    "service_tier",
    "context_window",
    "inference_geo",
)

CostKey = tuple[str | None, str | None, str | None, str | None, str | None, str | None, str | None]

TOKEN_TYPES = (
    "uncached_input_tokens",
    "cache_creation.ephemeral_5m_input_tokens",
    "cache_creation.ephemeral_1h_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One billed request, as the usage report would count it."""

    timestamp: datetime
    workspace_id: str | None  # None: the Default Workspace
    api_key_id: str | None  # None: Console (Workbench/Playground) usage
    model: str
    service_tier: str
    context_window: str
    inference_geo: str
    uncached_input_tokens: int
    cache_read_input_tokens: int
    cache_creation_5m: int
    cache_creation_1h: int
    output_tokens: int
    web_search_requests: int
    speed: str = "standard"  # "fast": fast mode (Opus 5 and 4.8, and later models that GA it)
    account_id: str | None = None  # the user who sent it with OAuth
    service_account_id: str | None = None  # the service account that sent it (OIDC federation)


@dataclass(frozen=True, slots=True)
class MeteredUsage:
    """Time-billed usage that only the cost report shows: code execution container-hours and
    Managed Agents session-hours. The usage report has no counter for either."""

    timestamp: datetime
    workspace_id: str | None  # None: the Default Workspace
    cost_type: str  # "code_execution" or "session_usage"
    hours: Decimal  # container-hours or session-hours used, to the hundredth of an hour
    cents: Decimal  # what it costs: its hours beyond the month's free allowance, priced


def make_id(prefix: str, rng: random.Random) -> str:
    """An id shaped like the API's: prefix, then "01" and 22 base62 characters."""
    return prefix + "01" + "".join(rng.choice(BASE62) for _ in range(22))


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as object timestamps are written."""
    return format_rfc3339(moment, fraction="us")


def dimension_value(event: UsageEvent, dimension: str) -> str | None:
    """The value a usage report row shows for a grouped dimension (one of USAGE_DIMENSIONS)."""
    value: str | None = getattr(event, dimension)
    return value


# --- Prices --------------------------------------------------------------------------------------
#
# Token and web-search cost is the usage priced with the exporter's shipped price table
# (exporter.pricing), per request at the request's time: what the exporter estimates from the
# usage report is then what the simulated bill says, and anthropic_cost_estimate_ratio sits at
# 1 unless a cost skew (SimulatedOrganization.cost_skew) is set. Only the time-billed meters below have prices of
# their own: the table has none for them.

# Names used in cost descriptions. Ids not listed here (aliases, unknown models sent to the
# Messages API) use the id itself, so a description never stands for two different models.
_DISPLAY_NAMES = {
    "claude-fable-5": "Claude Fable 5",
    "claude-opus-5": "Claude Opus 5",
    "claude-sonnet-5": "Claude Sonnet 5",
    "claude-opus-4-6": "Claude Opus 4.6",
    "claude-sonnet-4-6": "Claude Sonnet 4.6",
    "claude-opus-4-5-20251101": "Claude Opus 4.5",
    "claude-sonnet-4-5-20250929": "Claude Sonnet 4.5",
    "claude-haiku-4-5-20251001": "Claude Haiku 4.5",
    "claude-sonnet-4-20250514": "Claude Sonnet 4",
    "claude-3-5-haiku-20241022": "Claude Haiku 3.5",
}

_DATE_SUFFIX = re.compile(r"-\d{8}$")
CODE_EXECUTION_CENTS_PER_HOUR = Decimal(5)  # $0.05 per container-hour beyond the free hours
CODE_EXECUTION_FREE_HOURS = Decimal(1550)  # per organization and UTC calendar month
SESSION_CENTS_PER_HOUR = Decimal(8)  # Managed Agents: $0.08 per session-hour

# What models the price table does not list are billed as (see cost_lines).
FALLBACK_MODEL = "claude-sonnet-4-5"

# The cost report's token_type -> the price table's token kind (a PriceTable.price keyword).
TOKEN_KINDS = {
    "uncached_input_tokens": "input",
    "cache_creation.ephemeral_5m_input_tokens": "cache_write_5m",
    "cache_creation.ephemeral_1h_input_tokens": "cache_write_1h",
    "cache_read_input_tokens": "cache_read",
    "output_tokens": "output",
}
assert tuple(TOKEN_KINDS) == TOKEN_TYPES


def is_dated_model(model: str) -> bool:
    """Dated ids (before 4.6) predate inference_geo, which reports show as not_available."""
    return bool(_DATE_SUFFIX.search(model)) or model.startswith("claude-3")


def prompt_tokens(event: UsageEvent) -> int:
    """The request's prompt: uncached input, cache reads and cache writes. Prices by prompt
    length (prompt_bands in the price table) depend on it, as the real bill does per request."""
    return (event.uncached_input_tokens + event.cache_read_input_tokens
            + event.cache_creation_5m + event.cache_creation_1h)


class _Where(NamedTuple):
    """Everything but the counts that a request's price depends on."""

    model: str
    at: datetime
    tier: str
    window: str
    geo: str
    speed: str
    prompt: int

    def usd(self, prices: PriceTable, **counts: int) -> Decimal | Unpriced:
        return prices.price(self.model, at=self.at, service_tier=self.tier,
                            context_window=self.window, inference_geo=self.geo, speed=self.speed,
                            prompt_tokens=self.prompt, **counts)


def event_usd(prices: PriceTable, event: UsageEvent) -> Decimal | Unpriced:
    """One request's token and web-search cost in USD at the table's prices at the request's
    time (before any cost skew), or why it has none."""
    return prices.price(event.model, at=event.timestamp, input=event.uncached_input_tokens,
                        cache_read=event.cache_read_input_tokens,
                        cache_write_5m=event.cache_creation_5m,
                        cache_write_1h=event.cache_creation_1h, output=event.output_tokens,
                        web_searches=event.web_search_requests, service_tier=event.service_tier,
                        context_window=event.context_window, inference_geo=event.inference_geo,
                        speed=event.speed, prompt_tokens=prompt_tokens(event))


# --- Cost skew and spend spikes ------------------------------------------------------------------

# A cost skew (SimulatedOrganization.cost_skew): a factor, or factors by selector.
SkewSpec = Decimal | int | float | str | Mapping[str, Decimal | int | float | str]

_ONE = Decimal(1)
_BAND_FLOORS_CACHED = 4096

SPIKE_BASELINE_DAYS = 7  # a spike is measured against the workspace's spend over these days
SPIKE_MIN_USD_PER_HOUR = Decimal("0.01")  # ... but at least this much an hour
SPIKE_EVENTS_PER_MINUTE = 4  # a spike's requests come at least this often
SPIKE_MAX_PROMPT = 150_000  # tokens per spike request at most (and below any price band)
MAX_SPIKE_MINUTES = 24 * 60
MAX_SPIKE_EVENTS = 200_000  # requests all spikes together may hold


def decimal_factor(value: Decimal | int | float | str) -> Decimal:
    """A finite number >= 0 as a Decimal; a float as its shortest decimal form (1.25 -> 1.25)."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        factor = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"expected a number, got {value!r}") from None
    if not factor.is_finite() or factor < 0:
        raise ValueError(f"expected a finite number >= 0, got {value!r}")
    return factor


@dataclass(frozen=True, slots=True)
class Spike:
    """A spend spike added with SimulatedOrganization.inject_spike()."""

    start: datetime
    minutes: int
    factor: Decimal
    workspace_id: str | None  # None: the Default Workspace
    api_key_id: str | None
    model: str
    events: int  # how many requests it added
    usual_usd: Decimal  # the workspace's usual spend over `minutes`, which it multiplies
    added_usd: Decimal  # what its requests cost at the table's prices, before any cost skew


_TOKEN_LABELS = {
    "uncached_input_tokens": "Input Tokens",
    "output_tokens": "Output Tokens",
    "cache_read_input_tokens": "Input Tokens, Cache Hit",
    "cache_creation.ephemeral_5m_input_tokens": "Input Tokens, Cache Write",
    "cache_creation.ephemeral_1h_input_tokens": "Input Tokens, Cache Write, 1h",
}


_NON_TOKEN_DESCRIPTIONS = {
    "web_search": "Web Search Usage",
    "code_execution": "Code Execution Usage",
    "session_usage": "Managed Agents Session Usage",
}


def cost_description(key: CostKey, speed: str = "standard") -> str:
    """The cost report's free-text description of a cost_totals() key, for traffic at `speed`.

    Unique per (model, token_type, tier, window, geo, speed): qualifiers are appended for a
    tier other than standard (", Batch", ", Priority", ", Priority On Demand"), the long context
    window, fast mode and the `us` geo. Cost rows no longer carry a `speed`
    field, so fast-mode cost comes in rows of its own description whose other fields equal those
    of the standard-speed row. The wording is invented except "Web Search Usage" and "Code
    Execution Usage"; the exporter never parses it.
    """
    _, cost_type, model, token_type, tier, window, geo = key
    if cost_type in _NON_TOKEN_DESCRIPTIONS:
        return _NON_TOKEN_DESCRIPTIONS[cost_type]
    assert model is not None and token_type is not None
    text = f"{_DISPLAY_NAMES.get(model, model)} Usage - {_TOKEN_LABELS[token_type]}"
    if tier and tier != "standard":
        text += ", " + tier.replace("_", " ").title()
    if window == "200k-1M":
        text += ", Long Context"
    if speed == "fast":
        text += ", Fast Mode"
    if geo == "us":
        text += ", US"
    return text


# --- The organization's fixed layout -----------------------------------------------------------


class _Workspace(NamedTuple):
    name: str
    created: str
    archived: str | None
    color: str
    default_geo: str
    allowed_geos: str | list[str]


_WORKSPACES = (
    _Workspace("Prototypes", "2024-01-10T11:45:07", "2025-01-15T16:30:12", "#D97757", "global",
               "unrestricted"),
    _Workspace("Production", "2024-03-04T17:21:09", None, "#6C5BB9", "global", "unrestricted"),
    _Workspace("Research", "2024-06-18T09:02:44", None, "#3A8FB7", "us", ["us"]),
    # Created automatically the first time someone uses Claude Code with the Console.
    _Workspace("Claude Code", "2025-02-24T18:03:51", None, "#E0A33E", "global", "unrestricted"),
)


class _Key(NamedTuple):
    name: str
    workspace: str | None  # None: the Default Workspace
    status: str
    created: str


SDK_KEY_NAME = "SDK Traffic"
SERVICE_ACCOUNT_KEY_NAME = "Agents Workload Identity"
_SDK_WORKSPACE = "Production"

_KEYS = (
    _Key("Default Workspace Key", None, "active", "2023-11-02T08:14:55"),
    _Key("Prototype Key", "Prototypes", "archived", "2024-01-10T12:01:33"),
    _Key("Production Backend", "Production", "active", "2024-03-04T17:40:18"),
    _Key("Batch Pipeline", "Production", "active", "2024-05-21T10:12:40"),
    _Key("Research Notebooks", "Research", "active", "2024-06-18T09:30:02"),
    _Key("Staging", "Research", "inactive", "2024-09-09T13:57:26"),
    _Key("Claude Code", "Claude Code", "active", "2025-02-24T18:03:52"),
    # The key the simulated Messages API attributes every caller's traffic to. It has no
    # synthetic traffic, so its rows in the usage report are exactly what clients sent.
    _Key(SDK_KEY_NAME, _SDK_WORKSPACE, "active", "2025-06-30T15:26:44"),
    # A workload-identity-federation key: its principal is the service account, and like other
    # WIF keys it has no creator (created_by null).
    _Key(SERVICE_ACCOUNT_KEY_NAME, "Production", "active", "2026-01-20T10:05:31"),
)


class _Profile(NamedTuple):
    """A recurring kind of traffic: who sends what, and how much per busy hour."""

    key: str | None  # key name; None: Console usage
    workspace: str | None  # for Console usage only (keys imply their workspace)
    model: str
    tier: str
    window: str
    geo: str
    per_hour: float  # expected events in a busy (UTC working) hour
    uncached: int  # typical uncached input tokens per event
    output: int
    cache_ttl: str  # "", "5m" or "1h"
    cache_prefix: int  # typical size of the cached prompt prefix
    web_search: bool
    speed: str = "standard"
    account: int | None = None  # index of the user who signs in with OAuth; None: not OAuth
    service_account: bool = False  # sent by the service account, through OIDC federation


_SONNET_45 = "claude-sonnet-4-5-20250929"
_HAIKU_45_ID = "claude-haiku-4-5-20251001"
_HAIKU_35_ID = "claude-3-5-haiku-20241022"
_OPUS_46_ID = "claude-opus-4-6"
_SONNET_5_ID = "claude-sonnet-5"
_OPUS_5_ID = "claude-opus-5"
_NA = "not_available"  # what reports show for models that predate inference_geo

_PROFILES = (
    _Profile("Production Backend", None, _SONNET_45, "standard", "0-200k", _NA, 3, 900, 350, "5m",
             6000, False),
    _Profile("Production Backend", None, _HAIKU_45_ID, "standard", "0-200k", _NA, 4, 500, 120, "",
             0, False),
    _Profile("Production Backend", None, _OPUS_46_ID, "standard", "0-200k", "global", 1.5, 2500,
             900, "1h", 20000, False),
    _Profile("Production Backend", None, _OPUS_46_ID, "standard", "200k-1M", "global", 0.3, 60000,
             2000, "", 0, False),
    _Profile("Production Backend", None, _SONNET_5_ID, "standard", "0-200k", "global", 2.5, 1200,
             500, "", 0, True),
    _Profile("Production Backend", None, _SONNET_5_ID, "priority", "0-200k", "global", 1, 800, 300,
             "5m", 4000, False),
    _Profile("Production Backend", None, _OPUS_5_ID, "priority", "0-200k", "global", 0.5, 3000,
             1200, "", 0, False),
    _Profile("Batch Pipeline", None, _SONNET_45, "batch", "0-200k", _NA, 1, 15000, 2500, "", 0,
             False),
    _Profile("Batch Pipeline", None, _HAIKU_45_ID, "batch", "0-200k", _NA, 1.5, 4000, 800, "5m",
             8000, False),
    _Profile("Batch Pipeline", None, _SONNET_5_ID, "batch", "0-200k", "global", 1, 9000, 1500, "",
             0, False),
    _Profile("Batch Pipeline", None, _OPUS_5_ID, "batch", "0-200k", "us", 0.5, 12000, 3000, "1h",
             30000, False),
    _Profile("Research Notebooks", None, _OPUS_5_ID, "standard", "0-200k", "us", 1, 3000, 1500,
             "1h", 25000, True),
    _Profile("Research Notebooks", None, _OPUS_5_ID, "standard", "200k-1M", "us", 0.2, 80000, 4000,
             "", 0, False),
    _Profile("Research Notebooks", None, _SONNET_5_ID, "standard", "0-200k", "us", 1, 1500, 600,
             "", 0, True),
    _Profile("Research Notebooks", None, _HAIKU_35_ID, "standard", "0-200k", _NA, 0.5, 700, 200,
             "", 0, False),
    _Profile("Claude Code", None, _OPUS_46_ID, "standard", "0-200k", "global", 2, 1500, 700, "5m",
             45000, False),
    _Profile("Claude Code", None, _SONNET_5_ID, "standard", "0-200k", "global", 2, 1200, 600, "5m",
             35000, False),
    _Profile("Claude Code", None, _HAIKU_45_ID, "standard", "0-200k", _NA, 1, 400, 100, "", 0,
             False),
    _Profile("Default Workspace Key", None, _HAIKU_35_ID, "standard", "0-200k", _NA, 0.5, 600, 250,
             "", 0, False),
    _Profile("Default Workspace Key", None, _SONNET_45, "standard", "0-200k", _NA, 0.5, 1000, 400,
             "5m", 3000, False),
    _Profile("Default Workspace Key", None, _HAIKU_45_ID, "priority", "0-200k", _NA, 0.3, 500, 150,
             "", 0, False),
    # Archival is not modelled for traffic, so reports keep showing usage of an archived key.
    _Profile("Prototype Key", None, _SONNET_45, "standard", "0-200k", _NA, 0.2, 800, 300, "", 0,
             False),
    _Profile(None, None, _OPUS_5_ID, "standard", "0-200k", "global", 0.3, 1500, 800, "", 0, True),
    _Profile(None, None, _SONNET_5_ID, "standard", "0-200k", "global", 0.3, 900, 400, "", 0, False),
    _Profile(None, "Research", _OPUS_46_ID, "standard", "0-200k", "us", 0.2, 2000, 700, "", 0,
             False),
    # Newer values of the usage report. These come last, so the traffic above is the same for a
    # seed as before they were added.
    #
    # Fast mode: a small share of Opus 5 traffic (never batch: the two do not combine).
    _Profile("Production Backend", None, _OPUS_5_ID, "standard", "0-200k", "global", 0.25, 2000,
             900, "5m", 15000, False, speed="fast"),
    _Profile("Research Notebooks", None, _OPUS_5_ID, "standard", "0-200k", "us", 0.1, 2500, 1200,
             "1h", 20000, False, speed="fast"),
    # OAuth: users signed in to Claude Code with their Console accounts (account_id = the user).
    # Such traffic keeps an api_key_id: the usage report's api_key_id is null only for ungrouped
    # rows and for Console (Workbench/Playground) usage, which exporters label as such, and the
    # documented example row has api_key_id, account_id and service_account_id all set. So it is
    # booked to the Claude Code workspace's key, which key-authenticated Claude Code uses too.
    _Profile("Claude Code", None, _SONNET_5_ID, "standard", "0-200k", "global", 1, 1200, 600,
             "5m", 35000, False, account=0),
    _Profile("Claude Code", None, _OPUS_5_ID, "standard", "0-200k", "global", 0.5, 1500, 700,
             "5m", 40000, False, account=1),
    _Profile("Claude Code", None, _OPUS_5_ID, "standard", "0-200k", "global", 0.15, 1500, 700,
             "5m", 40000, False, speed="fast", account=1),
    # OIDC federation: the service account's workloads, through its workload-identity key
    # (api_key_id set for the same reason as OAuth traffic; account_id null: not a user).
    _Profile(SERVICE_ACCOUNT_KEY_NAME, None, _HAIKU_45_ID, "standard", "0-200k", _NA, 1, 3000, 400,
             "", 0, False, service_account=True),
    _Profile(SERVICE_ACCOUNT_KEY_NAME, None, _SONNET_5_ID, "batch", "0-200k", "global", 0.4, 8000,
             1200, "", 0, False, service_account=True),
    # Newer service tiers, passed through verbatim. flex and flex_discount have no published
    # price, so they are left out of the cost report (see cost_lines).
    _Profile("Production Backend", None, _SONNET_5_ID, "priority_on_demand", "0-200k", "global",
             0.3, 900, 350, "", 0, False),
    _Profile("Batch Pipeline", None, _HAIKU_45_ID, "flex", "0-200k", _NA, 0.4, 3000, 600, "", 0,
             False),
    _Profile("Batch Pipeline", None, _SONNET_5_ID, "flex_discount", "0-200k", "global", 0.2, 6000,
             900, "5m", 5000, False),
)
assert not any(profile.speed == "fast" and profile.tier == "batch" for profile in _PROFILES)

SPIKE_MODEL = _OPUS_5_ID  # what a spend spike's requests use unless told otherwise


class _Meter(NamedTuple):
    """Time-billed usage in one workspace, and how it is priced."""

    cost_type: str
    workspace: str
    per_hour: float  # expected hours used in a busy hour
    cents_per_hour: Decimal
    free_hours: Decimal  # free hours per UTC calendar month


_METERS = (
    # Notebooks running code in containers (the code execution tool without the newer web tools,
    # with which it would be free): enough that the free hours run out in the first week or so
    # of a month, after which cost rows appear.
    _Meter("code_execution", "Research", 20, CODE_EXECUTION_CENTS_PER_HOUR,
           CODE_EXECUTION_FREE_HOURS),
    _Meter("session_usage", "Production", 6, SESSION_CENTS_PER_HOUR, Decimal(0)),  # Managed Agents
)


# --- Rate limits ---------------------------------------------------------------------------------

RATE_LIMIT_GROUP_TYPES = ("model_group", "batch", "token_count", "files", "skills", "web_search")
# A limiter type no exporter knows: `limits[].type` is an open set, and readers must pass it on.
UNKNOWN_LIMIT_TYPE = "stored_file_bytes"

_RPM = "requests_per_minute"
_ITPM = "input_tokens_per_minute"  # counts cache reads
_ITPM_CACHE_AWARE = "input_tokens_per_minute_cache_aware"  # does not count cache reads
_OTPM = "output_tokens_per_minute"


class _LimitGroup(NamedTuple):
    """One rate-limit group and the organization's limits on it."""

    group_type: str  # one of RATE_LIMIT_GROUP_TYPES
    name: str  # a model group's display name; for the other groups, their type
    models: tuple[str, ...] | None  # every id and alias counting against it; None: not models
    limits: tuple[tuple[str, int], ...]


def _current(rpm: int, itpm: int, otpm: int, *more: tuple[str, int]) -> tuple[tuple[str, int], ...]:
    # Current models: the input limit is cache-aware (cache reads do not count against it).
    return ((_RPM, rpm), (_ITPM_CACHE_AWARE, itpm), (_OTPM, otpm), *more)


def _legacy(rpm: int, itpm: int, otpm: int) -> tuple[tuple[str, int], ...]:
    # Older models: the input limit counts cache reads too.
    return ((_RPM, rpm), (_ITPM, itpm), (_OTPM, otpm))


# The group the hourly busy minute (see BUSY_MINUTE_RATIO) loads to near its input limit. Its
# limits are those of a smaller organization than the other groups': the busy minute has to be
# affordable next to the rest of the synthetic traffic.
BUSY_GROUP = "Claude Sonnet 4.x"
BUSY_INPUT_LIMIT = 450_000
# The busy minute's input tokens (uncached, cache reads and writes) over BUSY_INPUT_LIMIT.
BUSY_MINUTE_RATIO = (0.86, 0.94)

# Every model the simulator knows (the usage profiles' and every priced family's) is in exactly
# one model group, by dated id and by alias. Workspace overrides below only ever lower a limit.
_LIMIT_GROUPS = (
    _LimitGroup("model_group", "Claude Fable 5", ("claude-fable-5",),
                _current(2_000, 1_000_000, 200_000)),
    _LimitGroup("model_group", "Claude Mythos 5", ("claude-mythos-5",),
                _current(2_000, 1_000_000, 200_000)),
    _LimitGroup("model_group", "Claude Opus 5", ("claude-opus-5",),
                _current(4_000, 2_000_000, 400_000, ("fast_itpmca", 500_000),
                         ("fast_otpm", 100_000))),
    _LimitGroup("model_group", "Claude Sonnet 5", ("claude-sonnet-5",),
                _current(4_000, 2_000_000, 400_000)),
    _LimitGroup("model_group", "Claude Opus 4.x", (
        "claude-opus-4-8", "claude-opus-4-7", "claude-opus-4-6", "claude-opus-4-5-20251101",
        "claude-opus-4-5", "claude-opus-4-1-20250805", "claude-opus-4-1", "claude-opus-4-20250514",
        "claude-opus-4-0",
    ), _current(4_000, 2_000_000, 400_000)),
    _LimitGroup("model_group", BUSY_GROUP, (
        "claude-sonnet-4-6", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5",
        "claude-sonnet-4-20250514", "claude-sonnet-4-0",
    ), _legacy(1_000, BUSY_INPUT_LIMIT, 90_000)),
    _LimitGroup("model_group", "Claude Haiku 4.5",
                ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
                _legacy(4_000, 4_000_000, 800_000)),
    _LimitGroup("model_group", "Claude Sonnet 3.7",
                ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet-latest"),
                _legacy(4_000, 2_000_000, 400_000)),
    # The oldest limit: input and output together.
    _LimitGroup("model_group", "Claude Haiku 3.5",
                ("claude-3-5-haiku-20241022", "claude-3-5-haiku-latest"),
                ((_RPM, 4_000), ("tokens_per_minute", 480_000))),
    _LimitGroup("model_group", "Claude Opus 3", ("claude-3-opus-20240229", "claude-3-opus-latest"),
                _legacy(4_000, 400_000, 80_000)),
    _LimitGroup("model_group", "Claude Haiku 3", ("claude-3-haiku-20240307",),
                _legacy(4_000, 400_000, 80_000)),
    _LimitGroup("batch", "batch", None, (("enqueued_batch_requests", 500_000), (_RPM, 4_000))),
    _LimitGroup("token_count", "token_count", None, ((_RPM, 8_000),)),
    _LimitGroup("files", "files", None, ((_RPM, 500), (UNKNOWN_LIMIT_TYPE, 500_000_000_000))),
    _LimitGroup("skills", "skills", None, ((_RPM, 100),)),
    _LimitGroup("web_search", "web_search", None, (("tool_uses_per_second", 30),)),
)

# Workspace name -> group name -> the workspace's own limits. A limiter the organization has no
# limit of its own for (tokens_per_day here) shows org_limit null.
_WORKSPACE_LIMITS: dict[str, dict[str, dict[str, int]]] = {
    "Production": {
        "Claude Opus 5": {_ITPM_CACHE_AWARE: 1_000_000, _OTPM: 200_000},
        "Claude Sonnet 5": {_RPM: 2_000},
    },
    "Research": {
        "Claude Opus 5": {_OTPM: 100_000, "tokens_per_day": 50_000_000},
        "web_search": {"tool_uses_per_second": 5},
    },
}


_BUSY_MODEL = _SONNET_45
_BUSY_MODELS = frozenset(next(g.models or () for g in _LIMIT_GROUPS if g.name == BUSY_GROUP))
_BUSY_KEY = "Default Workspace Key"
assert _BUSY_MODEL in _BUSY_MODELS
assert (_ITPM, BUSY_INPUT_LIMIT) in next(g.limits for g in _LIMIT_GROUPS if g.name == BUSY_GROUP)


def _group_id(group: _LimitGroup) -> str:
    # The same in every organization (and seed): it is the stable key of a group.
    return make_id("rlg_", random.Random(f"rate-limit-group:{group.name}"))


# --- Claude Code analytics -----------------------------------------------------------------------

CLAUDE_CODE_LAG = timedelta(hours=1)  # only activity older than this is reported
CLAUDE_CODE_TOOLS = ("edit_tool", "multi_edit_tool", "notebook_edit_tool", "write_tool")
# Tools beyond the documented four: tool_actions is a map of any tool name.
_EXTRA_CODE_TOOLS = ("bash_tool", "web_fetch_tool")
_REMOTE_TERMINAL = "web"  # what remote (Claude Code on the web) sessions show as terminal_type


class _CodeActor(NamedTuple):
    """Someone (or some API key) using Claude Code, and how."""

    kind: str  # "user_actor" or "api_actor"
    name: str  # email address, or API key name
    customer_type: str  # "api" or "subscription"
    subscription_type: str | None  # "enterprise" or "team" for subscriptions, else None
    terminals: tuple[str, ...]
    remote: float  # share of sessions run remotely
    sessions: float  # expected sessions on a weekday
    model: str  # the model doing most of the work


_CODE_ACTORS = (
    _CodeActor("user_actor", "ada.lovelace@example.com", "api", None, ("vscode", "iTerm.app"),
               0.1, 4, _OPUS_46_ID),
    _CodeActor("user_actor", "grace.hopper@example.com", "api", None, ("tmux",), 0.0, 3,
               _SONNET_5_ID),
    _CodeActor("user_actor", "alan.turing@example.com", "api", None, ("cursor", "Apple_Terminal"),
               0.25, 2, _OPUS_5_ID),
    _CodeActor("user_actor", "katherine.johnson@example.com", "subscription", "enterprise",
               ("vscode",), 0.0, 5, _SONNET_5_ID),
    _CodeActor("user_actor", "edsger.dijkstra@example.com", "subscription", "enterprise",
               ("ghostty", "tmux"), 0.15, 2, _OPUS_5_ID),
    _CodeActor("user_actor", "barbara.liskov@example.com", "subscription", "enterprise",
               ("WezTerm",), 0.5, 1.5, _SONNET_45),
    _CodeActor("user_actor", "john.backus@example.com", "api", None, ("iTerm.app", "tmux"), 0.0,
               3, _OPUS_46_ID),
    _CodeActor("user_actor", "frances.allen@example.com", "api", None, ("vscode", "tmux"), 0.2,
               2.5, _SONNET_5_ID),
    _CodeActor("user_actor", "donald.knuth@example.com", "subscription", "enterprise",
               ("Apple_Terminal",), 0.0, 1, _OPUS_5_ID),
    _CodeActor("user_actor", "margaret.hamilton@example.com", "subscription", "enterprise",
               ("vscode", "iTerm.app", "tmux"), 0.1, 4, _SONNET_5_ID),
    _CodeActor("user_actor", "ken.thompson@example.com", "subscription", "enterprise",
               ("tmux", "ghostty"), 0.0, 3, _OPUS_46_ID),
    _CodeActor("user_actor", "radia.perlman@example.com", "api", None, ("cursor",), 0.3, 2,
               _SONNET_5_ID),
    # Headless runs with API keys (the Claude Code workspace's key, and a CI job's).
    _CodeActor("api_actor", "Claude Code", "api", None, ("tmux",), 0.0, 6, _SONNET_5_ID),
    _CodeActor("api_actor", "Production Backend", "api", None, ("xterm-256color",), 0.0, 3,
               _HAIKU_45_ID),
)


class _CodeSession(NamedTuple):
    """One Claude Code session, booked when it ended."""

    timestamp: datetime
    actor: int  # index into _CODE_ACTORS
    terminal: str
    remote: bool
    added: int
    removed: int
    commits: int
    pull_requests: int
    tools: tuple[tuple[str, int, int], ...]  # (tool, accepted, rejected)
    models: tuple[tuple[str, int, int, int, int], ...]  # (model, input, output, read, creation)


# How many UTC days of Claude Code sessions are kept made; older ones are made again if asked.
_CODE_DAYS_CACHED = 64


def _activity(hour_start: datetime) -> float:
    """How busy an hour is relative to a weekday UTC working hour."""
    hour = hour_start.hour
    if 8 <= hour < 18:
        factor = 1.0
    elif 6 <= hour < 8 or 18 <= hour < 22:
        factor = 0.5
    else:
        factor = 0.15
    if hour_start.weekday() >= 5:
        factor *= 0.4
    return factor


def _around(rng: random.Random, typical: int) -> int:
    if typical == 0:
        return 0
    return max(1, round(typical * rng.uniform(0.3, 1.7)))


def _parse_fixed(text: str, rng: random.Random) -> datetime:
    # Fixed dates from the tables above, with seed-dependent microseconds.
    moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return moment.replace(microsecond=rng.randrange(1_000_000))


# How much served Messages traffic the organization remembers: more than the widest window a
# report can serve (31 daily buckets) plus a margin.
RECORDED_HOURS = 40 * 24


class SimulatedOrganization:
    """A synthetic organization whose usage is a deterministic function of the seed.

    Usage events are made lazily per UTC hour from a random generator seeded with
    (seed, hour), so any historical range is reproducible and independent of when it is asked
    for; events later than `clock()` exist but are not visible yet, so recent buckets grow
    as time passes. Traffic served by the simulated Messages API is added with
    `record_message`. Time-billed usage that only the cost report shows (code execution,
    Managed Agents sessions) is made the same way per UTC day; see `metered`.

    Every hour has one busy minute (`busy_minute`) that takes BUSY_GROUP to near its
    organization input limit. The rate limits (`rate_limits`, `workspace_rate_limits`) are
    fixed per seed, and Claude Code analytics (`claude_code_records`) are made per UTC day.

    Token cost (`cost_lines`) is the usage priced with `prices`, the exporter's shipped price
    table unless another is given; `cost_skew` multiplies it, so the exporter's estimate-to-bill
    ratio can be moved off 1. `inject_spike` adds a runaway workload's requests to a workspace.
    """

    def __init__(self, seed: int = 7, clock: Clock | None = None, *,
                 prices: PriceTable | None = None, cost_skew: SkewSpec = 1) -> None:
        self.seed = seed
        self.clock: Clock = clock if clock is not None else _utc_now
        # What token and web-search cost is billed at (see cost_lines): the shipped table.
        self.prices: PriceTable = default_table() if prices is None else prices
        rng = random.Random(f"org:{seed}")
        self.organization_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.organization_name = "Simulated Org"
        self.default_workspace_id = make_id("wrkspc_", rng)

        workspace_ids: dict[str, str] = {}
        workspaces: list[dict[str, Any]] = []
        for ws in _WORKSPACES:
            workspace_ids[ws.name] = make_id("wrkspc_", rng)
            created = _parse_fixed(ws.created, rng)
            workspaces.append({
                "id": workspace_ids[ws.name],
                "type": "workspace",
                "name": ws.name,
                "created_at": format_time(created),
                "archived_at": format_time(_parse_fixed(ws.archived, rng)) if ws.archived else None,
                "display_color": ws.color,
                "data_residency": {
                    "workspace_geo": "us",
                    "default_inference_geo": ws.default_geo,
                    "allowed_inference_geos": ws.allowed_geos,
                },
                "compartment_id": None,
                "external_key_id": None,
                "tags": {},
            })
        # Lists are newest first, like the users list (anthropic-api.md §5).
        self.workspaces = sorted(workspaces, key=lambda w: w["created_at"], reverse=True)

        self.user_ids = [make_id("user_", rng) for _ in range(3)]
        key_ids: dict[str, str] = {}
        api_keys: list[dict[str, Any]] = []
        for index, key in enumerate(_KEYS):
            key_ids[key.name] = make_id("apikey_", rng)
            creator = {"id": self.user_ids[index % len(self.user_ids)], "type": "user"}
            hint = "".join(rng.choice(BASE62) for _ in range(7))
            api_keys.append({
                "id": key_ids[key.name],
                "type": "api_key",
                "name": key.name,
                "status": key.status,
                "workspace_id": workspace_ids[key.workspace] if key.workspace else None,
                "created_at": format_time(_parse_fixed(key.created, rng)),
                "created_by": creator,
                "partial_key_hint": f"sk-ant-api03-{hint[:3]}...{hint[3:]}AA",
                "expires_at": None,
                "principal": creator,
            })
        # Drawn after everything above, so adding it left the other ids of a seed unchanged.
        self.service_account_id = make_id("svac_", rng)
        for entry in api_keys:
            if entry["id"] == key_ids[SERVICE_ACCOUNT_KEY_NAME]:
                entry["created_by"] = None
                entry["principal"] = {"id": self.service_account_id, "type": "service_account"}
        self.api_keys = sorted(api_keys, key=lambda k: k["created_at"], reverse=True)

        self._workspace_ids = dict(workspace_ids)  # name -> id
        # Workspace id (None: the Default one) -> the key spikes are sent with: its first active
        # key, else its first key.
        self._workspace_keys: dict[str | None, str] = {}
        for key in sorted(_KEYS, key=lambda k: k.status != "active"):
            self._workspace_keys.setdefault(
                workspace_ids[key.workspace] if key.workspace else None, key_ids[key.name])

        # Where the simulated Messages API books every caller's traffic.
        self.sdk_api_key_id = key_ids[SDK_KEY_NAME]
        self.sdk_workspace_id = workspace_ids[_SDK_WORKSPACE]

        self._profiles: list[_Sender] = []
        for profile in _PROFILES:
            workspace = _key_named(profile.key).workspace if profile.key else profile.workspace
            self._profiles.append(_Sender(
                key_ids[profile.key] if profile.key else None,
                workspace_ids[workspace] if workspace else None,
                self.user_ids[profile.account] if profile.account is not None else None,
                self.service_account_id if profile.service_account else None,
                profile,
            ))
        self._meters = [(workspace_ids[meter.workspace], meter) for meter in _METERS]
        self._lock = threading.Lock()
        self._hours: dict[int, tuple[UsageEvent, ...]] = {}
        self._recorded: dict[int, list[UsageEvent]] = {}
        # UTC day -> (its metered usage, hours used in its month by its end, per meter)
        self._meter_days: dict[int, tuple[tuple[MeteredUsage, ...], tuple[Decimal, ...]]] = {}

        # The key of the job behind each hour's busy minute: in the Default Workspace, whose
        # limits are the organization's.
        self._busy_key_id = key_ids[_BUSY_KEY]
        self._busy_minutes: dict[int, datetime] = {}  # hour -> its busy minute

        # Rate limits. Entry ids differ per organization (drawn from a generator of their own,
        # so the ids above stay as they were for a seed); group ids are the same everywhere.
        limits_rng = random.Random(f"rate-limits:{seed}")
        self._rate_limit_entries: list[dict[str, Any]] = []
        for group in _LIMIT_GROUPS:
            group_object: dict[str, Any] = {"type": group.group_type, "id": _group_id(group)}
            if group.group_type == "model_group":
                group_object["display_name"] = group.name
            self._rate_limit_entries.append({
                "type": "rate_limit",
                "id": make_id("rl_", limits_rng),
                "group_type": group.group_type,  # deprecated in favour of group.type
                "group": group_object,
                "models": list(group.models) if group.models is not None else None,
                "limits": [{"type": kind, "value": value} for kind, value in group.limits],
            })
        # Workspace id -> group name -> its own limits; the Default Workspace has no entry.
        self._workspace_limits: dict[str, dict[str, dict[str, int]]] = {
            workspace_id: _WORKSPACE_LIMITS.get(name, {})
            for name, workspace_id in workspace_ids.items()
        }

        # UTC day -> its Claude Code sessions, for the newest _CODE_DAYS_CACHED days asked for.
        self._code_days: dict[int, tuple[_CodeSession, ...]] = {}

        # (model, UTC day) -> the prompt lengths above which its price bands start.
        self._band_floors: dict[tuple[str, int], tuple[int, ...]] = {}
        # (workspace id or "*", model or "*") -> factor on billed token cost; and as given.
        self._skew: dict[tuple[str | None, str], Decimal] = {}
        self._skew_given: dict[str, Decimal] = {}
        self.cost_skew = cost_skew
        # Injected spend spikes, and their events by UTC hour.
        self._spikes: list[Spike] = []
        self._spike_events: dict[int, list[UsageEvent]] = {}

    # --- events --------------------------------------------------------------------------------

    def events(
        self, start: datetime, end: datetime, *, now: datetime | None = None
    ) -> list[UsageEvent]:
        """Every event with start <= timestamp < end that happened by `now` (default: clock())."""
        if now is None:
            now = self.clock()
        stop = min(end, now + timedelta(microseconds=1))  # events at exactly `now` count
        if stop <= start:
            return []
        found: list[UsageEvent] = []
        first_hour = int(start.timestamp()) // 3600
        last_hour = int((stop - timedelta(microseconds=1)).timestamp()) // 3600
        for hour in range(first_hour, last_hour + 1):
            candidates = self._synthetic_hour(hour)
            with self._lock:
                recorded = [*self._recorded.get(hour, ()), *self._spike_events.get(hour, ())]
            for event in (*candidates, *recorded):
                if start <= event.timestamp < stop:
                    found.append(event)
        return found

    def record_message(self, event: UsageEvent) -> None:
        """Adds one served Messages API request to the usage (and cost) data.

        Hours older than RECORDED_HOURS before the newest are forgotten, so a long-running demo
        does not grow without bound; no report window reaches back that far.
        """
        hour = int(event.timestamp.timestamp()) // 3600
        with self._lock:
            if hour not in self._recorded:
                for old in [h for h in self._recorded if h < hour - RECORDED_HOURS]:
                    del self._recorded[old]
            self._recorded.setdefault(hour, []).append(event)

    def _synthetic_hour(self, hour: int) -> tuple[UsageEvent, ...]:
        with self._lock:
            cached = self._hours.get(hour)
        if cached is not None:
            return cached
        # Generated outside the lock; two threads racing produce identical tuples.
        events = self._generate_hour(hour)
        with self._lock:
            return self._hours.setdefault(hour, events)

    def _generate_hour(self, hour: int) -> tuple[UsageEvent, ...]:
        rng = random.Random(f"{self.seed}:{hour}")
        hour_start = datetime.fromtimestamp(hour * 3600, UTC)
        activity = _activity(hour_start)
        events: list[UsageEvent] = []
        for sender in self._profiles:
            expected = sender.profile.per_hour * activity * rng.uniform(0.5, 1.5)
            count = int(expected) + (1 if rng.random() < expected % 1 else 0)
            for _ in range(count):
                events.append(_draw_event(rng, hour_start, sender))
        events.extend(self._busy_minute_events(hour, hour_start, events))
        events.sort(key=lambda e: e.timestamp)
        return tuple(events)

    def _busy_minute_events(
        self, hour: int, hour_start: datetime, natural: Sequence[UsageEvent]
    ) -> list[UsageEvent]:
        """An hourly job's burst: requests that fill one minute to BUSY_MINUTE_RATIO of the busy
        group's input limit, so a peak-utilization figure has something to show at any time.

        Drawn from a generator of its own, so the rest of the hour is what it was without it. The
        minute is one without other traffic of the group, so its tokens are the burst's alone
        (plus whatever clients send the Messages API then). The first request writes the shared
        prompt prefix to the cache and the others read it; input_tokens_per_minute counts both.
        """
        rng = random.Random(f"{self.seed}:busy:{hour}")
        taken = {(event.timestamp - hour_start).seconds // 60
                 for event in natural if event.model in _BUSY_MODELS}
        minute = hour_start + timedelta(minutes=rng.choice(
            [m for m in range(60) if m not in taken]))
        target = round(BUSY_INPUT_LIMIT * rng.uniform(*BUSY_MINUTE_RATIO))
        count = rng.randint(8, 12)
        prefix = round(target * rng.uniform(0.75, 0.85) / count)  # most of it cached
        uncached_total = target - count * prefix
        weights = [rng.uniform(0.5, 1.5) for _ in range(count)]
        uncached = [max(1, int(weight * uncached_total / sum(weights))) for weight in weights]
        uncached[-1] += uncached_total - sum(uncached)
        seconds = sorted(rng.randrange(60) for _ in range(count))
        events = [
            UsageEvent(
                timestamp=minute + timedelta(seconds=second),
                workspace_id=None,
                api_key_id=self._busy_key_id,
                model=_BUSY_MODEL,
                service_tier="standard",
                context_window="0-200k",
                inference_geo=_NA,
                uncached_input_tokens=tokens,
                cache_read_input_tokens=prefix if index else 0,
                cache_creation_5m=0 if index else prefix,
                cache_creation_1h=0,
                output_tokens=_around(rng, 400),
                web_search_requests=0,
            )
            for index, (second, tokens) in enumerate(zip(seconds, uncached, strict=True))
        ]
        with self._lock:
            self._busy_minutes.setdefault(hour, minute)
        return events

    def busy_minute(self, moment: datetime) -> datetime:
        """The start of the busy minute in the UTC hour holding `moment` (see
        _busy_minute_events): the minute whose input tokens of BUSY_GROUP's models come to
        BUSY_MINUTE_RATIO of its input_tokens_per_minute limit, BUSY_INPUT_LIMIT."""
        hour = int(moment.timestamp()) // 3600
        self._synthetic_hour(hour)
        with self._lock:
            return self._busy_minutes[hour]

    # --- metered usage (cost report only) ------------------------------------------------------

    def metered(
        self, start: datetime, end: datetime, *, now: datetime | None = None
    ) -> list[MeteredUsage]:
        """Metered usage with start <= timestamp < end that happened by `now` (default: clock()).

        One record per meter and hour, made per UTC day from a generator seeded with
        (seed, day). A record's cost is that of its hours beyond what is left of the month's
        free hours, so the first records of a month can cost nothing.
        """
        if now is None:
            now = self.clock()
        stop = min(end, now + timedelta(microseconds=1))
        if stop <= start:
            return []
        first_day = int(start.timestamp()) // 86400
        last_day = int((stop - timedelta(microseconds=1)).timestamp()) // 86400
        return [
            record
            for day in range(first_day, last_day + 1)
            for record in self._meter_day(day)[0]
            if start <= record.timestamp < stop
        ]

    def _meter_day(self, day: int) -> tuple[tuple[MeteredUsage, ...], tuple[Decimal, ...]]:
        with self._lock:
            cached = self._meter_days.get(day)
        if cached is not None:
            return cached
        day_start = datetime.fromtimestamp(day * 86400, UTC)
        # Hours used earlier in the month: at most 30 days back, each cached once made.
        used = [Decimal(0)] * len(self._meters) if day_start.day == 1 else list(
            self._meter_day(day - 1)[1])
        rng = random.Random(f"{self.seed}:meters:{day}")
        records: list[MeteredUsage] = []
        for hour in range(24):
            hour_start = day_start + timedelta(hours=hour)
            activity = _activity(hour_start)
            for index, (workspace_id, meter) in enumerate(self._meters):
                hundredths = round(meter.per_hour * activity * rng.uniform(0.5, 1.5) * 100)
                timestamp = hour_start + timedelta(seconds=rng.randrange(3600))
                if hundredths == 0:
                    continue
                hours = Decimal(hundredths) / 100
                free_left = max(Decimal(0), meter.free_hours - used[index])
                billed = max(Decimal(0), hours - free_left)
                used[index] += hours
                records.append(MeteredUsage(timestamp, workspace_id, meter.cost_type, hours,
                                            billed * meter.cents_per_hour))
        records.sort(key=lambda record: record.timestamp)
        result = (tuple(records), tuple(used))
        with self._lock:
            return self._meter_days.setdefault(day, result)

    # --- aggregates ----------------------------------------------------------------------------

    def usage_totals(
        self,
        start: datetime,
        end: datetime,
        group_by: Sequence[str] = (),
        *,
        filters: Mapping[str, Collection[str]] | None = None,
        now: datetime | None = None,
    ) -> dict[tuple[str | None, ...], dict[str, int]]:
        """Exact usage sums over [start, end), keyed by the group_by dimensions' values.

        `filters` maps a dimension to the values to keep (an event whose value is None never
        matches), as the report's `api_key_ids[]`, `models[]`, ... parameters do.
        """
        for dimension in (*group_by, *(filters or {})):
            if dimension not in USAGE_DIMENSIONS:
                raise ValueError(f"unknown usage dimension {dimension!r}")
        totals: dict[tuple[str | None, ...], dict[str, int]] = {}
        for event in self.events(start, end, now=now):
            if filters and not all(
                dimension_value(event, dim) in allowed for dim, allowed in filters.items()
            ):
                continue
            key = tuple(dimension_value(event, dim) for dim in group_by)
            sums = totals.get(key)
            if sums is None:
                sums = totals[key] = dict.fromkeys(USAGE_FIELDS, 0)
            sums["uncached_input_tokens"] += event.uncached_input_tokens
            sums["cache_read_input_tokens"] += event.cache_read_input_tokens
            sums["cache_creation_5m"] += event.cache_creation_5m
            sums["cache_creation_1h"] += event.cache_creation_1h
            sums["output_tokens"] += event.output_tokens
            sums["web_search_requests"] += event.web_search_requests
        return totals

    def cost_totals(
        self, start: datetime, end: datetime, *, now: datetime | None = None
    ) -> dict[CostKey, Decimal]:
        """Exact cost in cents over [start, end), keyed like cost_report rows (COST_KEY_FIELDS).

        See cost_lines for what is billed. Fast-mode and standard-speed cost of the same key are
        summed, as rows of the two descriptions are (and likewise the tiers' own rows).
        """
        totals: dict[CostKey, Decimal] = {}
        for (key, _), cents in self.cost_lines(start, end, now=now).items():
            totals[key] = totals.get(key, Decimal(0)) + cents
        return totals

    def cost_lines(
        self, start: datetime, end: datetime, *, now: datetime | None = None
    ) -> dict[tuple[CostKey, str], Decimal]:
        """Exact cost in cents over [start, end), keyed by (cost_totals() key, description):
        the rows of a cost report grouped by workspace_id and description.

        Token and web-search cost is each request's usage priced with `prices` (the shipped
        table) at the request's time: its tier, geo, speed, context window and its own prompt
        length (prompt_tokens()), then multiplied by the cost skew of its workspace and model
        (see cost_skew; web searches are not skewed). Tokens go in rows of their tier (standard,
        batch, priority, priority_on_demand: every tier the table prices).

        What the table cannot price: a model it does not list (whatever a client sends the
        Messages API) is billed as FALLBACK_MODEL (Sonnet 4.5) at the table's prices, as a real
        bill would bill a model newer than the table: the exporter's estimate for it is 0 and its
        ratio shows it. Anything else unpriced (flex and flex_discount, which have no published
        price, so any rate would be invented; fast mode with Batch or on a model without it) is
        left out of the cost report, tokens and searches alike: it shows in the usage report
        only, and the exporter, which cannot price it either, leaves it out of its estimate, so
        the ratio stays 1. Metered usage (code execution, Managed Agents sessions) is priced by
        the simulator itself (see metered).
        """
        prices = self.prices
        # Requests that share every price dimension, UTC day (rates change at midnight) and price
        # band, so share their per-token prices: summing their counts and pricing the sums once
        # is exact (Decimal multiplication distributes) and far faster than per request.
        # group -> token counts in TOKEN_TYPES order, then web searches
        groups: dict[tuple[str | None, str, str, str, str, str, int, int], list[int]] = {}
        # group -> (time, prompt tokens) of its first request, which its prices are looked up at
        first: dict[tuple[str | None, str, str, str, str, str, int, int], tuple[datetime, int]] = {}
        for event in self.events(start, end, now=now):
            prompt = prompt_tokens(event)
            day = int(event.timestamp.timestamp()) // 86400
            group = (event.workspace_id, event.model, event.service_tier, event.context_window,
                     event.inference_geo, event.speed, day, self._band(event.model, day, prompt))
            sums = groups.get(group)
            if sums is None:
                sums = groups[group] = [0, 0, 0, 0, 0, 0]
                first[group] = (event.timestamp, prompt)
            sums[0] += event.uncached_input_tokens
            sums[1] += event.cache_creation_5m
            sums[2] += event.cache_creation_1h
            sums[3] += event.cache_read_input_tokens
            sums[4] += event.output_tokens
            sums[5] += event.web_search_requests
        lines: dict[tuple[CostKey, str], Decimal] = {}
        searches: dict[str | None, Decimal] = {}  # workspace -> web search cents
        for group, sums in groups.items():
            workspace_id, model, tier, window, geo, speed, _, _ = group
            at, prompt = first[group]
            where = _Where(model, at, tier, window, geo, speed, prompt)
            probe = where.usd(prices)
            if isinstance(probe, Unpriced) and probe.reason == UNKNOWN_MODEL:
                where = where._replace(model=FALLBACK_MODEL)
                probe = where.usd(prices)
            if isinstance(probe, Unpriced):
                continue
            skew = self._skew_factor(workspace_id, model)
            for token_type, count in zip(TOKEN_TYPES, sums[:5], strict=True):
                if count:
                    priced = where.usd(prices, **{TOKEN_KINDS[token_type]: count})
                    assert not isinstance(priced, Unpriced)
                    key: CostKey = (workspace_id, "tokens", model, token_type, tier, window, geo)
                    line = (key, cost_description(key, speed))
                    lines[line] = lines.get(line, Decimal(0)) + priced * 100 * skew
            if sums[5]:
                priced = where.usd(prices, web_searches=sums[5])
                assert not isinstance(priced, Unpriced)
                searches[workspace_id] = searches.get(workspace_id, Decimal(0)) + priced * 100
        for workspace_id, cents in searches.items():
            key = (workspace_id, "web_search", None, None, None, None, None)
            lines[(key, cost_description(key))] = cents
        for record in self.metered(start, end, now=now):
            if record.cents:
                key = (record.workspace_id, record.cost_type, None, None, None, None, None)
                metered_line = (key, cost_description(key))
                lines[metered_line] = lines.get(metered_line, Decimal(0)) + record.cents
        return lines

    def _band(self, model: str, day: int, prompt: int) -> int:
        """Which of the model's price bands (by prompt length) a prompt falls in on a UTC day:
        how many band floors it exceeds."""
        floors = self._band_floors.get((model, day))
        if floors is None:
            found = self.prices.model(model) or self.prices.model(FALLBACK_MODEL)
            floors = () if found is None else tuple(
                above for above, _ in self.prices.in_force(found, day * 86400.0).bands)
            if len(self._band_floors) >= _BAND_FLOORS_CACHED:  # ids come from clients: bound it
                self._band_floors.clear()
            self._band_floors[(model, day)] = floors
        return bisect_left(floors, prompt)

    # --- cost skew -----------------------------------------------------------------------------

    @property
    def cost_skew(self) -> dict[str, Decimal]:
        """The factors on billed token cost, by selector as set (see the setter); {} for none."""
        return dict(self._skew_given)

    @cost_skew.setter
    def cost_skew(self, spec: SkewSpec) -> None:
        """Multiplies the billed token cost (cost_lines) by a factor, so that the exporter's
        estimate-to-bill ratio (anthropic_cost_estimate_ratio) becomes 1/factor there: a skew of
        1.25 bills 25 % more than the table says, and the ratio shows 0.8.

        `spec` is a number (every workspace and model; 1: no skew) or a mapping of selectors to
        factors. A selector is "*" (everything), a model id ("claude-opus-5": that model in
        every workspace, as "*/claude-opus-5" is), "WORKSPACE/MODEL" (that pair) or
        "WORKSPACE/*" (every model of a workspace), WORKSPACE being a workspace id, a workspace
        name or "default" (the Default Workspace). The most specific selector matching a row
        wins: WORKSPACE/MODEL, then WORKSPACE/*, then MODEL, then "*". Factors are numbers >= 0 (a float is read as its
        shortest decimal form, so 1.25 is exactly 1.25). Takes effect for every later report,
        history included. Raises ValueError (leaving the skew as it was) on a bad spec.
        """
        if isinstance(spec, Mapping):
            given = {str(selector): decimal_factor(value) for selector, value in spec.items()}
        else:
            given = {"*": decimal_factor(spec)}
        resolved: dict[tuple[str | None, str], Decimal] = {}
        for selector, factor in given.items():
            workspace, slash, model = selector.rpartition("/")
            if not slash:
                resolved[("*", model or "*")] = factor
            elif not model:
                raise ValueError(f"cost skew selector {selector!r}: no model after the slash")
            else:
                where = "*" if workspace == "*" else self.workspace_for(workspace)
                resolved[(where, model)] = factor
        if all(factor == 1 for factor in resolved.values()):
            given, resolved = {}, {}
        self._skew, self._skew_given = resolved, given  # each replaced whole: readers see either

    def _skew_factor(self, workspace_id: str | None, model: str) -> Decimal:
        skew = self._skew
        if skew:
            for key in ((workspace_id, model), (workspace_id, "*"), ("*", model), ("*", "*")):
                factor = skew.get(key)
                if factor is not None:
                    return factor
        return _ONE

    def workspace_for(self, workspace: str | None) -> str | None:
        """A workspace's id from its id, name or "default" (the Default Workspace, whose traffic
        and cost carry workspace_id None, as returned); None names the Default Workspace too.
        Raises ValueError for anything else."""
        if workspace is None or workspace in ("default", self.default_workspace_id):
            return None
        if workspace in self._workspace_ids:
            return self._workspace_ids[workspace]
        if workspace in self._workspace_ids.values():
            return workspace
        raise ValueError(f"no workspace {workspace!r}: expected one of "
                         f"{', '.join(['default', *self._workspace_ids])} or a workspace id")

    # --- spend spikes --------------------------------------------------------------------------

    def inject_spike(
        self,
        start: datetime,
        minutes: int,
        factor: float | int | Decimal | str,
        workspace: str | None = None,
        *,
        model: str = SPIKE_MODEL,
    ) -> Spike:
        """Adds a runaway workload to a workspace: ordinary requests over [start, start +
        minutes), so the usage report, usage_totals(), the cost report (and anything else that
        reads events()) all include them, each as it happens by the clock.

        They add (factor - 1) times the workspace's usual spend over `minutes`, so a window of
        exactly the spike sees about `factor` times its usual spend (more if that window was
        busier than usual). Usual is the average of the workspace's synthetic spend (at the
        table's prices, before any cost skew) over the SPIKE_BASELINE_DAYS days before `start`,
        at least SPIKE_MIN_USD_PER_HOUR. The requests go to `model` (standard tier, the
        workspace's default geo, with its first active key), SPIKE_EVENTS_PER_MINUTE a minute or
        more (fewer only when the spike is worth fewer units than that), their sizes differing by
        at most one unit of 5 input tokens and 1 output token (prompts up to SPIKE_MAX_PROMPT,
        and below any price band): a pure function of the seed and the arguments.

        `workspace` is a workspace id, name or "default" (the Default Workspace); None: the
        workspace the Messages API books traffic to (Production). `start` is taken to the
        second. Raises ValueError for a bad argument, a model the price table cannot price, or
        when the spikes would hold more than MAX_SPIKE_EVENTS requests (clear_spikes()).
        """
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not (
                1 <= minutes <= MAX_SPIKE_MINUTES):
            raise ValueError(f"minutes must be a whole number from 1 to {MAX_SPIKE_MINUTES}")
        multiple = decimal_factor(factor)
        if multiple <= 1:
            raise ValueError("factor must be more than 1")
        start = start.astimezone(UTC).replace(microsecond=0)
        workspace_id = (self.sdk_workspace_id if workspace is None
                        else self.workspace_for(workspace))

        # The workspace's usual spend over `minutes`: synthetic traffic only, so a spike never
        # depends on what clients sent or on other spikes.
        since = start - timedelta(days=SPIKE_BASELINE_DAYS)
        spent = Decimal(0)
        for hour in range(int(since.timestamp()) // 3600, int(start.timestamp()) // 3600 + 1):
            for event in self._synthetic_hour(hour):
                if event.workspace_id == workspace_id and since <= event.timestamp < start:
                    usd = event_usd(self.prices, event)
                    if not isinstance(usd, Unpriced):
                        spent += usd
        usual = max(spent * minutes / (SPIKE_BASELINE_DAYS * 1440),
                    SPIKE_MIN_USD_PER_HOUR * minutes / 60)
        target = (multiple - 1) * usual

        geo = _NA if is_dated_model(model) else next(
            (ws["data_residency"]["default_inference_geo"] for ws in self.workspaces
             if ws["id"] == workspace_id), "global")
        template = UsageEvent(
            timestamp=start, workspace_id=workspace_id,
            api_key_id=self._workspace_keys.get(workspace_id), model=model,
            service_tier="standard", context_window="0-200k", inference_geo=geo,
            uncached_input_tokens=5, cache_read_input_tokens=0, cache_creation_5m=0,
            cache_creation_1h=0, output_tokens=1, web_search_requests=0)
        unit = event_usd(self.prices, template)  # 5 input tokens and 1 output token
        if isinstance(unit, Unpriced):
            raise ValueError(f"cannot spike with {model!r}: {unit.detail}")
        found = self.prices.model(model)
        floors = [] if found is None else [
            above for above, _ in self.prices.in_force(found, start).bands]
        most = min([SPIKE_MAX_PROMPT, *floors]) // 5  # units per request, in the lowest band
        units = max(1, int((target / unit).to_integral_value()))
        count = max(minutes * SPIKE_EVENTS_PER_MINUTE, -(-units // most))
        size, larger = divmod(units, count)  # the first `larger` requests get one unit more
        seconds = minutes * 60
        events = [
            replace(template, timestamp=start + timedelta(seconds=index * seconds // count),
                    uncached_input_tokens=5 * (size + (index < larger)),
                    output_tokens=size + (index < larger))
            for index in range(count)
            if size + (index < larger)
        ]
        count = len(events)
        added = Decimal(0)
        for event in events:
            usd = event_usd(self.prices, event)
            assert not isinstance(usd, Unpriced)
            added += usd
        spike = Spike(start=start, minutes=minutes, factor=multiple, workspace_id=workspace_id,
                      api_key_id=template.api_key_id, model=model, events=count,
                      usual_usd=usual, added_usd=added)
        with self._lock:
            held = sum(s.events for s in self._spikes)
            if held + count > MAX_SPIKE_EVENTS:
                raise ValueError(f"the spikes would hold {held + count} requests, more than "
                                 f"{MAX_SPIKE_EVENTS}: clear them first")
            self._spikes.append(spike)
            for event in events:
                self._spike_events.setdefault(int(event.timestamp.timestamp()) // 3600,
                                              []).append(event)
        return spike

    @property
    def spikes(self) -> list[Spike]:
        """The spikes injected so far, oldest first."""
        with self._lock:
            return list(self._spikes)

    def clear_spikes(self) -> None:
        """Removes every injected spike's requests, from history too."""
        with self._lock:
            self._spikes.clear()
            self._spike_events.clear()

    # --- rate limits ---------------------------------------------------------------------------

    def rate_limits(self) -> list[dict[str, Any]]:
        """The organization's rate-limit entries, in the current shape (with a `group` object):
        model groups first, then the batch, token counting, files, skills and web search
        groups (`models` null)."""
        return copy.deepcopy(self._rate_limit_entries)

    def workspace_rate_limits(
        self, workspace_id: str, *, include_inherited: bool = False
    ) -> list[dict[str, Any]] | None:
        """A workspace's rate-limit entries; None for the Default Workspace (its limits are the
        organization's) and for ids of no workspace, which the API answers with 404.

        Without `include_inherited` only the groups the workspace overrides are listed, with
        only the limiters it overrides; with it every group, each limiter once: its own value
        (source workspace) or the organization's (source organization).
        """
        overrides = self._workspace_limits.get(workspace_id)
        if overrides is None:
            return None
        entries: list[dict[str, Any]] = []
        for group, entry in zip(_LIMIT_GROUPS, self._rate_limit_entries, strict=True):
            own = overrides.get(group.name, {})
            if not own and not include_inherited:
                continue
            org_limits = dict(group.limits)
            limits: list[dict[str, Any]] = []
            for kind, org_value in group.limits:
                if kind in own:
                    limits.append(_workspace_limit(kind, own[kind], org_value, "workspace"))
                elif include_inherited:
                    limits.append(_workspace_limit(kind, org_value, org_value, "organization"))
            limits.extend(_workspace_limit(kind, value, None, "workspace")
                          for kind, value in own.items() if kind not in org_limits)
            entries.append({
                "type": "workspace_rate_limit",
                "rate_limit_id": entry["id"],
                "workspace_id": workspace_id,
                "group": dict(entry["group"]),
                "models": list(group.models) if group.models is not None else None,
                "limits": limits,
            })
        return entries

    # --- Claude Code analytics -----------------------------------------------------------------

    def claude_code_records(
        self, day: date, *, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """The Claude Code analytics records of one UTC day, as the report serves them.

        One record per actor, terminal type and remoteness, summing the sessions of the day that
        ended more than CLAUDE_CODE_LAG before `now` (default: clock()), so today's records
        grow during the day. Sessions are made per UTC day from a generator seeded with
        (seed, day). Records are sorted by actor type, actor name, terminal type and remoteness.
        """
        if now is None:
            now = self.clock()
        cutoff = now - CLAUDE_CODE_LAG
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        rows: dict[tuple[int, str, bool], list[_CodeSession]] = {}
        for session in self._code_day(int(day_start.timestamp()) // 86400):
            if session.timestamp < cutoff:
                rows.setdefault((session.actor, session.terminal, session.remote), []).append(
                    session)
        records = [self._code_record(day_start, sessions) for sessions in rows.values()]
        records.sort(key=lambda r: (r["actor"]["type"], _actor_name(r["actor"]),
                                    r["terminal_type"], r["is_remote"]))
        return records

    def _code_record(self, day_start: datetime, sessions: list[_CodeSession]) -> dict[str, Any]:
        first = sessions[0]
        actor = _CODE_ACTORS[first.actor]
        tools: dict[str, list[int]] = {tool: [0, 0] for tool in CLAUDE_CODE_TOOLS}
        models: dict[str, list[int]] = {}
        for session in sessions:
            for tool, accepted, rejected in session.tools:
                counts = tools.setdefault(tool, [0, 0])
                counts[0] += accepted
                counts[1] += rejected
            for model, *tokens in session.models:
                sums = models.setdefault(model, [0, 0, 0, 0])
                for index, count in enumerate(tokens):
                    sums[index] += count
        name_field = "email_address" if actor.kind == "user_actor" else "api_key_name"
        return {
            "date": format_rfc3339(day_start),
            "actor": {"type": actor.kind, name_field: actor.name},
            "organization_id": self.organization_id,
            "customer_type": actor.customer_type,
            "terminal_type": first.terminal,
            "is_remote": first.remote,
            "core_metrics": {
                "num_sessions": len(sessions),
                "lines_of_code": {"added": sum(s.added for s in sessions),
                                  "removed": sum(s.removed for s in sessions)},
                "commits_by_claude_code": sum(s.commits for s in sessions),
                "pull_requests_by_claude_code": sum(s.pull_requests for s in sessions),
            },
            # The documented four always; other tools only once used.
            "tool_actions": {
                tool: {"accepted": accepted, "rejected": rejected}
                for tool, (accepted, rejected) in tools.items()
                if tool in CLAUDE_CODE_TOOLS or accepted or rejected
            },
            "model_breakdown": [
                {
                    "model": model,
                    "tokens": {"input": tokens[0], "output": tokens[1], "cache_read": tokens[2],
                               "cache_creation": tokens[3]},
                    "estimated_cost": {"currency": "USD",
                                       "amount": _code_cents(self.prices, model, tokens,
                                                             day_start)},
                }
                for model, tokens in sorted(models.items())
            ],
            "subscription_type": actor.subscription_type,
        }

    def _code_day(self, day: int) -> tuple[_CodeSession, ...]:
        with self._lock:
            cached = self._code_days.get(day)
        if cached is not None:
            return cached
        sessions = _generate_code_day(self.seed, day)
        with self._lock:
            if day not in self._code_days and len(self._code_days) >= _CODE_DAYS_CACHED:
                del self._code_days[next(iter(self._code_days))]  # the least recently made
            return self._code_days.setdefault(day, sessions)

class _Sender(NamedTuple):
    """A profile with the ids its traffic carries."""

    key_id: str | None
    workspace_id: str | None
    account_id: str | None
    service_account_id: str | None
    profile: _Profile




def _workspace_limit(kind: str, value: int, org_limit: int | None, source: str) -> dict[str, Any]:
    return {"type": kind, "value": value, "org_limit": org_limit, "source": {"type": source}}


def _actor_name(actor: Mapping[str, str]) -> str:
    return actor.get("email_address") or actor.get("api_key_name") or ""


def _code_cents(prices: PriceTable, model: str, tokens: Sequence[int], at: datetime) -> int:
    """Estimated cost in whole cents of Claude Code tokens (input, output, cache read, cache
    creation), at the table's standard rates with 5-minute cache writes; 0 for a model the
    table cannot price."""
    uncached, output, read, creation = tokens
    usd = prices.price(model, at=at, input=uncached, output=output, cache_read=read,
                       cache_write_5m=creation)
    if isinstance(usd, Unpriced):
        return 0
    return int((usd * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _generate_code_day(seed: int, day: int) -> tuple[_CodeSession, ...]:
    rng = random.Random(f"{seed}:claude_code:{day}")
    day_start = datetime.fromtimestamp(day * 86400, UTC)
    weekend = day_start.weekday() >= 5
    sessions: list[_CodeSession] = []
    for index, actor in enumerate(_CODE_ACTORS):
        expected = actor.sessions * (0.2 if weekend else 1.0) * rng.uniform(0.5, 1.5)
        count = int(expected) + (1 if rng.random() < expected % 1 else 0)
        for _ in range(count):
            # People work during (their) day; headless runs at any hour.
            second = (rng.randrange(86400) if actor.kind == "api_actor"
                      else rng.randrange(7 * 3600, 20 * 3600))
            remote = rng.random() < actor.remote
            added = rng.randint(5, 400)
            commits = rng.choice((0, 0, 1, 1, 2, 3))
            tools = []
            for tool in (*CLAUDE_CODE_TOOLS, *_EXTRA_CODE_TOOLS):
                chance = 0.15 if tool == "notebook_edit_tool" else 0.8
                accepted = rng.randint(1, 30) if rng.random() < chance else 0
                tools.append((tool, accepted, rng.randint(0, accepted // 4)))
            models = [(actor.model, _around(rng, 20_000), _around(rng, 6_000),
                       _around(rng, 250_000), _around(rng, 30_000))]
            if actor.model != _HAIKU_45_ID:  # small background calls
                models.append((_HAIKU_45_ID, _around(rng, 3_000), _around(rng, 500), 0, 0))
            sessions.append(_CodeSession(
                timestamp=day_start + timedelta(seconds=second),
                actor=index,
                terminal=_REMOTE_TERMINAL if remote else rng.choice(actor.terminals),
                remote=remote,
                added=added,
                removed=round(added * rng.uniform(0.1, 0.7)),
                commits=commits,
                pull_requests=1 if commits and rng.random() < 0.3 else 0,
                tools=tuple(tools),
                models=tuple(models),
            ))
    sessions.sort(key=lambda session: session.timestamp)
    return tuple(sessions)


def _key_named(name: str) -> _Key:
    return next(key for key in _KEYS if key.name == name)


def _draw_event(rng: random.Random, hour_start: datetime, sender: _Sender) -> UsageEvent:
    profile = sender.profile
    timestamp = hour_start + timedelta(seconds=rng.randrange(3600))
    uncached = _around(rng, profile.uncached)
    if profile.window == "200k-1M":
        uncached += 200_000  # the long window is only used by prompts above 200k tokens
    output = _around(rng, profile.output)
    read = write = 0
    if profile.cache_ttl:
        if rng.random() < 0.8:
            read = _around(rng, profile.cache_prefix)
            write = _around(rng, profile.cache_prefix // 20)  # the conversation grew a little
        else:
            write = _around(rng, profile.cache_prefix)
    return UsageEvent(
        timestamp=timestamp,
        workspace_id=sender.workspace_id,
        api_key_id=sender.key_id,
        model=profile.model,
        service_tier=profile.tier,
        context_window=profile.window,
        inference_geo=profile.geo,
        uncached_input_tokens=uncached,
        cache_read_input_tokens=read,
        cache_creation_5m=write if profile.cache_ttl == "5m" else 0,
        cache_creation_1h=write if profile.cache_ttl == "1h" else 0,
        output_tokens=output,
        web_search_requests=rng.randint(0, 3) if profile.web_search else 0,
        speed=profile.speed,
        account_id=sender.account_id,
        service_account_id=sender.service_account_id,
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)
