"""A deterministic synthetic organization: workspaces, API keys, usage events and their cost."""

from __future__ import annotations

import random
import re
import threading
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

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


def make_id(prefix: str, rng: random.Random) -> str:
    """An id shaped like the API's: prefix, then "01" and 22 base62 characters."""
    return prefix + "01" + "".join(rng.choice(BASE62) for _ in range(22))


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as object timestamps are written."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dimension_value(event: UsageEvent, dimension: str) -> str | None:
    """The value a usage report row shows for a grouped dimension."""
    if dimension == "speed":
        return "standard"  # fast mode is not simulated
    if dimension in ("account_id", "service_account_id"):
        return None  # all simulated traffic uses API keys or the Console, never OAuth/OIDC
    return getattr(event, dimension)


# --- Prices (anthropic-api.md §10), USD per million tokens -------------------------------------


class _Prices(NamedTuple):
    input: Decimal
    write_5m: Decimal
    write_1h: Decimal
    read: Decimal
    output: Decimal


def _prices(inp: str, w5: str, w1: str, read: str, out: str) -> _Prices:
    return _Prices(Decimal(inp), Decimal(w5), Decimal(w1), Decimal(read), Decimal(out))


_FABLE = _prices("10", "12.50", "20", "1.00", "50")
_OPUS_45 = _prices("5", "6.25", "10", "0.50", "25")
_OPUS_4 = _prices("15", "18.75", "30", "1.50", "75")
_SONNET_5 = _prices("2", "2.50", "4", "0.20", "10")
_SONNET_4 = _prices("3", "3.75", "6", "0.30", "15")
_HAIKU_45 = _prices("1", "1.25", "2", "0.10", "5")
_HAIKU_35 = _prices("0.80", "1.00", "1.60", "0.08", "4")
_HAIKU_3 = _prices("0.25", "0.30", "0.50", "0.03", "1.25")

# Model family (id without a -YYYYMMDD date) -> (prices, whether the 1.1x `us` geo premium
# applies: it does for 4.6 and later models).
_FAMILIES: dict[str, tuple[_Prices, bool]] = {
    "claude-fable-5": (_FABLE, True),
    "claude-mythos-5": (_FABLE, True),
    "claude-opus-5": (_OPUS_45, True),
    "claude-opus-4-8": (_OPUS_45, True),
    "claude-opus-4-7": (_OPUS_45, True),
    "claude-opus-4-6": (_OPUS_45, True),
    "claude-opus-4-5": (_OPUS_45, False),
    "claude-opus-4-1": (_OPUS_4, False),
    "claude-opus-4": (_OPUS_4, False),
    "claude-sonnet-5": (_SONNET_5, True),
    "claude-sonnet-4-6": (_SONNET_4, True),
    "claude-sonnet-4-5": (_SONNET_4, False),
    "claude-sonnet-4": (_SONNET_4, False),
    "claude-haiku-4-5": (_HAIKU_45, False),
    "claude-3-5-haiku": (_HAIKU_35, False),
    "claude-3-7-sonnet": (_SONNET_4, False),
    "claude-3-opus": (_OPUS_4, False),
    "claude-3-haiku": (_HAIKU_3, False),
}

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
_MILLION = Decimal(1_000_000)
_BATCH_DISCOUNT = Decimal("0.5")
_US_PREMIUM = Decimal("1.1")
WEB_SEARCH_CENTS = Decimal(1)  # $10 per 1,000 searches


def _family(model: str) -> tuple[_Prices, bool]:
    # Unknown models (whatever a client sends the Messages API) are priced like Sonnet 4.5.
    return _FAMILIES.get(_DATE_SUFFIX.sub("", model), (_SONNET_4, False))


def is_dated_model(model: str) -> bool:
    """Dated ids (before 4.6) predate inference_geo, which reports show as not_available."""
    return bool(_DATE_SUFFIX.search(model)) or model.startswith("claude-3")


def token_price_cents(
    model: str, token_type: str, service_tier: str, inference_geo: str
) -> Decimal:
    """Price of one token in cents, with the batch discount and the `us` premium applied.

    The long-context premium is not applied: since 2026-03 the 1M window bills at standard
    rates, and the simulator's history is recent (anthropic-api.md §10).
    """
    prices, geo_premium = _family(model)
    per_million = {
        "uncached_input_tokens": prices.input,
        "cache_creation.ephemeral_5m_input_tokens": prices.write_5m,
        "cache_creation.ephemeral_1h_input_tokens": prices.write_1h,
        "cache_read_input_tokens": prices.read,
        "output_tokens": prices.output,
    }[token_type]
    cents = per_million * 100 / _MILLION
    if service_tier == "batch":
        cents *= _BATCH_DISCOUNT
    if geo_premium and inference_geo == "us":
        cents *= _US_PREMIUM
    return cents


_TOKEN_LABELS = {
    "uncached_input_tokens": "Input Tokens",
    "output_tokens": "Output Tokens",
    "cache_read_input_tokens": "Input Tokens, Cache Hit",
    "cache_creation.ephemeral_5m_input_tokens": "Input Tokens, Cache Write",
    "cache_creation.ephemeral_1h_input_tokens": "Input Tokens, Cache Write, 1h",
}


def cost_description(key: CostKey) -> str:
    """The cost report's free-text description of a cost_totals() key.

    Unique per (model, token_type, tier, window, geo): qualifiers are appended for batch, the
    long context window and the `us` geo. The wording is invented; the exporter never parses it.
    """
    _, cost_type, model, token_type, tier, window, geo = key
    if cost_type == "web_search":
        return "Web Search Usage"
    assert model is not None and token_type is not None
    text = f"{_DISPLAY_NAMES.get(model, model)} Usage - {_TOKEN_LABELS[token_type]}"
    if tier == "batch":
        text += ", Batch"
    if window == "200k-1M":
        text += ", Long Context"
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
)


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
    `record_message`.
    """

    def __init__(self, seed: int = 7, clock: Clock | None = None) -> None:
        self.seed = seed
        self.clock: Clock = clock if clock is not None else _utc_now
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
        self.api_keys = sorted(api_keys, key=lambda k: k["created_at"], reverse=True)

        # Where the simulated Messages API books every caller's traffic.
        self.sdk_api_key_id = key_ids[SDK_KEY_NAME]
        self.sdk_workspace_id = workspace_ids[_SDK_WORKSPACE]

        self._profiles: list[tuple[str | None, str | None, _Profile]] = []
        for profile in _PROFILES:
            workspace = _key_named(profile.key).workspace if profile.key else profile.workspace
            self._profiles.append((
                key_ids[profile.key] if profile.key else None,
                workspace_ids[workspace] if workspace else None,
                profile,
            ))
        self._lock = threading.Lock()
        self._hours: dict[int, tuple[UsageEvent, ...]] = {}
        self._recorded: dict[int, list[UsageEvent]] = {}

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
                recorded = list(self._recorded.get(hour, ()))
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
        for key_id, workspace_id, profile in self._profiles:
            expected = profile.per_hour * activity * rng.uniform(0.5, 1.5)
            count = int(expected) + (1 if rng.random() < expected % 1 else 0)
            for _ in range(count):
                events.append(_draw_event(rng, hour_start, key_id, workspace_id, profile))
        events.sort(key=lambda e: e.timestamp)
        return tuple(events)

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

        Priority Tier usage is left out: it is billed separately (anthropic-api.md §3).
        """
        counts: dict[CostKey, int] = {}
        for event in self.events(start, end, now=now):
            if event.service_tier == "priority":
                continue
            per_type = (
                ("uncached_input_tokens", event.uncached_input_tokens),
                ("cache_creation.ephemeral_5m_input_tokens", event.cache_creation_5m),
                ("cache_creation.ephemeral_1h_input_tokens", event.cache_creation_1h),
                ("cache_read_input_tokens", event.cache_read_input_tokens),
                ("output_tokens", event.output_tokens),
            )
            for token_type, count in per_type:
                if count:
                    key: CostKey = (
                        event.workspace_id, "tokens", event.model, token_type,
                        event.service_tier, event.context_window, event.inference_geo,
                    )
                    counts[key] = counts.get(key, 0) + count
            if event.web_search_requests:
                key = (event.workspace_id, "web_search", None, None, None, None, None)
                counts[key] = counts.get(key, 0) + event.web_search_requests
        # Summing counts first and pricing once is exact: Decimal multiplication distributes.
        return {key: count * _unit_price_cents(key) for key, count in counts.items()}


def _unit_price_cents(key: CostKey) -> Decimal:
    _, cost_type, model, token_type, tier, _, geo = key
    if cost_type == "web_search":
        return WEB_SEARCH_CENTS
    assert model is not None and token_type is not None and tier is not None and geo is not None
    return token_price_cents(model, token_type, tier, geo)


def _key_named(name: str) -> _Key:
    return next(key for key in _KEYS if key.name == name)


def _draw_event(
    rng: random.Random,
    hour_start: datetime,
    key_id: str | None,
    workspace_id: str | None,
    profile: _Profile,
) -> UsageEvent:
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
        workspace_id=workspace_id,
        api_key_id=key_id,
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
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)
