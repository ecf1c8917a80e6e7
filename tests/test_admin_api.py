"""The Admin API client against the simulator (and a scripted fake where the simulator can't)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from exporter import admin_api
from exporter.admin_api import AdminAPIError, AdminClient, RateLimiter
from exporter.config import HTTPSettings, Organization, Secret

GROUP_BY = ("workspace_id", "api_key_id", "model", "service_tier", "context_window")
DAY = datetime(2026, 3, 10, tzinfo=UTC)


def make_client(url, key, clock, sleeps=None, **settings) -> AdminClient:
    return AdminClient(Organization("acme", Secret(key), url), HTTPSettings(**settings), clock=clock,
                       sleep=(sleeps.append if sleeps is not None else (lambda s: None)))


def far() -> float:
    return time.monotonic() + 30


def totals(report) -> dict:
    sums: dict = {}
    for bucket in report.buckets:
        for row in bucket.rows:
            sums[row.dimensions] = sums.get(row.dimensions, admin_api.UsageValues()) + row.values
    return sums


def as_values(d: dict) -> admin_api.UsageValues:
    return admin_api.UsageValues(d["uncached_input_tokens"], d["cache_read_input_tokens"], d["cache_creation_5m"],
                                 d["cache_creation_1h"], d["output_tokens"], d["web_search_requests"])


def test_usage_report_rows_equal_the_simulators_sums(simulator, sim_org, admin_key, clock):
    start, end = DAY - timedelta(days=2), DAY + timedelta(days=1)
    report = make_client(simulator.url, admin_key, clock).usage_report(start, end, "1h", GROUP_BY, far())
    assert len(report.buckets) == 24 * 2 + 13  # up to the hour in progress (12:30 now)
    assert report.buckets[0].starting_at == start
    assert not report.skipped
    expected = {k: as_values(v) for k, v in sim_org.usage_totals(start, end, GROUP_BY).items()}
    assert totals(report) == expected
    # the Default Workspace and Console usage come back as nulls
    assert any(dims[0] is None for dims in expected) and any(dims[1] is None for dims in expected)


def test_pagination_with_short_pages_covers_the_same_range(simulator, sim_org, admin_key, clock, monkeypatch):
    start, end = DAY - timedelta(days=1), DAY + timedelta(days=1)
    whole = make_client(simulator.url, admin_key, clock).usage_report(start, end, "1h", GROUP_BY, far())
    simulator.reset_requests()
    monkeypatch.setitem(admin_api.MAX_BUCKETS, "1h", 5)
    paged = make_client(simulator.url, admin_key, clock).usage_report(start, end, "1h", GROUP_BY, far())
    assert [b.starting_at for b in paged.buckets] == [b.starting_at for b in whole.buckets]
    assert totals(paged) == totals(whole)
    pages = simulator.requests
    assert len(pages) == 8  # 37 buckets (24 + 13 up to now) in pages of 5
    assert "page" not in pages[0].query and all("page" in r.query for r in pages[1:])


def test_request_shape(simulator, admin_key, clock):
    make_client(simulator.url, admin_key, clock).usage_report(DAY, DAY + timedelta(hours=1), "1m", GROUP_BY, far())
    (request,) = simulator.requests
    assert request.headers["x-api-key"] == admin_key
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["user-agent"].startswith("anthropic-usage-exporter/")
    assert request.query["starting_at"] == ["2026-03-10T00:00:00Z"]
    assert request.query["ending_at"] == ["2026-03-10T01:00:00Z"]
    assert request.query["limit"] == ["60"]
    assert request.query["group_by[]"] == list(GROUP_BY)


def test_cost_report_amounts_are_exact(simulator, sim_org, admin_key, clock):
    report = make_client(simulator.url, admin_key, clock).cost_report(DAY - timedelta(days=6), DAY + timedelta(days=1), far())
    assert len(report.buckets) == 7
    got: dict = {}
    for bucket in report.buckets:
        for row in bucket.rows:
            got[row.dimensions] = got.get(row.dimensions, 0) + row.amount_cents
    assert got == sim_org.cost_totals(DAY - timedelta(days=6), DAY + timedelta(days=1))


def test_lists_page_by_after_id(simulator, sim_org, admin_key, clock, monkeypatch):
    monkeypatch.setattr(admin_api, "LIST_PAGE_SIZE", 2)
    client = make_client(simulator.url, admin_key, clock)
    keys = client.api_keys(far())
    assert [k.id for k in keys] == [k["id"] for k in sim_org.api_keys]
    assert {k.status for k in keys} >= {"active", "archived"}
    spaces = client.workspaces(far())
    assert [w.id for w in spaces] == [w["id"] for w in sim_org.workspaces]
    after_ids = [r.query.get("after_id") for r in simulator.requests]
    assert after_ids[0] is None and after_ids[1] is not None


def test_retries_429_honouring_retry_after(simulator, admin_key, clock):
    simulator.inject("/v1/organizations/workspaces", "429", times=2, retry_after=3)
    sleeps: list[float] = []
    spaces = make_client(simulator.url, admin_key, clock, sleeps).workspaces(far())
    assert spaces
    assert [r.status for r in simulator.requests] == [429, 429, 200]
    assert sleeps == [3.0, 3.0]


@pytest.mark.parametrize("fault,reason", [("500", "server_error"), ("529", "overloaded"),
                                          ("truncated", "connection")])
def test_gives_up_after_max_attempts_with_backoff(simulator, admin_key, clock, fault, reason):
    simulator.inject("/v1/organizations/workspaces", fault, times=100)
    sleeps: list[float] = []
    with pytest.raises(AdminAPIError) as info:
        make_client(simulator.url, admin_key, clock, sleeps).workspaces(far())
    assert info.value.reason == reason
    assert len(simulator.requests) == admin_api.MAX_ATTEMPTS
    assert len(sleeps) == admin_api.MAX_ATTEMPTS - 1
    # exponential with jitter: each wait within [base/2, base] of 1, 2, 4, 8 s
    for attempt, slept in enumerate(sleeps):
        assert 2 ** attempt / 2 <= slept <= 2 ** attempt


def test_never_retries_auth_failures(simulator, clock):
    with pytest.raises(AdminAPIError) as info:
        make_client(simulator.url, "sk-ant-api03-not-admin", clock).workspaces(far())
    assert (info.value.reason, info.value.status) == ("auth", 401)
    assert info.value.request_id.startswith("req_")
    assert len(simulator.requests) == 1


def test_never_retries_bad_requests(simulator, admin_key, clock):
    client = make_client(simulator.url, admin_key, clock)
    with pytest.raises(AdminAPIError) as info:
        client.usage_report(DAY, DAY, "1h", GROUP_BY, far())  # ending_at == starting_at
    assert (info.value.reason, info.value.status) == ("bad_request", 400)
    assert len(simulator.requests) == 1


def test_malformed_json_is_an_invalid_response_not_retried(simulator, admin_key, clock):
    simulator.inject("/v1/organizations/api_keys", "malformed_json")
    with pytest.raises(AdminAPIError) as info:
        make_client(simulator.url, admin_key, clock).api_keys(far())
    assert info.value.reason == "invalid_response"
    assert len(simulator.requests) == 1


def test_timeout_per_request(simulator, admin_key, clock):
    simulator.inject("/v1/organizations/workspaces", "slow", times=1, delay=2)
    sleeps: list[float] = []
    client = make_client(simulator.url, admin_key, clock, sleeps, request_timeout=0.2)
    assert client.workspaces(far())  # the second attempt is answered at once
    assert len(sleeps) == 1


def test_poll_deadline_bounds_the_whole_poll(simulator, admin_key, clock):
    simulator.inject("/v1/organizations/workspaces", "429", times=100, retry_after=20)
    client = make_client(simulator.url, admin_key, clock)
    started = time.monotonic()
    with pytest.raises(AdminAPIError) as info:
        client.workspaces(time.monotonic() + 5)
    assert info.value.reason == "rate_limited"  # gave up instead of sleeping past the deadline
    assert time.monotonic() - started < 5
    assert len(simulator.requests) == 1


# -- a scripted fake, for answers the simulator does not give ---------------------------------

class Scripted(requests.adapters.BaseAdapter):
    """Answers each request with the next (status, body) pair and records the requests."""

    def __init__(self, answers):
        super().__init__()
        self.answers = list(answers)
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs):
        self.sent.append(request)
        status, body = self.answers.pop(0)
        response = requests.Response()
        response.status_code = status
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response.headers["request-id"] = f"req_{len(self.sent)}"
        response.request = request
        return response

    def close(self):
        pass


def scripted_client(answers, clock) -> tuple[AdminClient, Scripted]:
    session = requests.Session()
    adapter = Scripted(answers)
    session.mount("http://fake", adapter)
    client = AdminClient(Organization("acme", Secret("sk-ant-admin01-x"), "http://fake"), HTTPSettings(),
                         session=session, clock=clock, sleep=lambda s: None)
    return client, adapter


def bucket(start: datetime, results) -> dict:
    return {"starting_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ending_at": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), "results": results}


ROW = {"uncached_input_tokens": 1, "cache_read_input_tokens": 2, "output_tokens": 3,
       "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 5},
       "server_tool_use": {"web_search_requests": 6}, "model": "m", "workspace_id": None,
       "api_key_id": None, "service_tier": "flex_new_tier", "context_window": "0-200k", "brand_new_field": {"x": 1}}


def test_a_page_may_hold_fewer_buckets_than_asked(clock):
    hours = [DAY + timedelta(hours=i) for i in range(3)]
    client, fake = scripted_client([
        (200, {"data": [bucket(hours[0], [ROW])], "has_more": True, "next_page": "opaque=="}),
        (200, {"data": [bucket(hours[1], []), bucket(hours[2], [ROW])], "has_more": False, "next_page": None}),
    ], clock)
    report = client.usage_report(hours[0], hours[0] + timedelta(hours=3), "1h", GROUP_BY, far())
    assert [b.starting_at for b in report.buckets] == hours
    assert "page=opaque%3D%3D" in fake.sent[1].url
    # unknown fields and enum values pass through
    assert report.buckets[0].rows[0].dimensions == (None, None, "m", "flex_new_tier", "0-200k")
    assert report.buckets[0].rows[0].values == admin_api.UsageValues(1, 2, 4, 5, 3, 6)


def test_unreadable_rows_are_skipped_and_counted(clock):
    bad_rows = [{**ROW, "output_tokens": "3"}, {**ROW, "model": 5}, "not a row",
                {k: v for k, v in ROW.items() if k != "uncached_input_tokens"}]
    client, _ = scripted_client([(200, {"data": [bucket(DAY, [ROW, *bad_rows])], "has_more": False})], clock)
    report = client.usage_report(DAY, DAY + timedelta(hours=1), "1h", GROUP_BY, far())
    assert len(report.buckets[0].rows) == 1
    assert report.skipped == {"invalid_row": 4}


def test_newer_keys_may_be_absent_or_null(clock):
    row = {k: v for k, v in ROW.items() if k not in ("cache_creation",)} | {"server_tool_use": None}
    client, _ = scripted_client([(200, {"data": [bucket(DAY, [row])], "has_more": False})], clock)
    report = client.usage_report(DAY, DAY + timedelta(hours=1), "1h", GROUP_BY, far())
    assert report.buckets[0].rows[0].values == admin_api.UsageValues(1, 2, 0, 0, 3, 0)


def test_cost_rows_in_another_currency_are_skipped_and_counted(clock):
    day = {"starting_at": "2026-03-10T00:00:00Z", "ending_at": "2026-03-11T00:00:00Z", "results": [
        {"amount": "150", "currency": "USD", "workspace_id": None, "cost_type": "web_search"},
        {"amount": "150", "currency": "EUR", "workspace_id": None, "cost_type": "web_search"},
        {"amount": "2", "currency": None},
        {"amount": "lots", "currency": "USD"},
        {"amount": 7, "currency": "USD"},
    ]}
    client, _ = scripted_client([(200, {"data": [day], "has_more": False})], clock)
    report = client.cost_report(DAY, DAY + timedelta(days=1), far())
    assert [r.amount_cents for r in report.buckets[0].rows] == [150, 2, 7]
    assert report.skipped == {"currency": 1, "invalid_row": 1}


def test_a_refused_future_ending_at_is_dropped_and_asked_again(clock, caplog):
    client, fake = scripted_client([
        (400, {"type": "error", "error": {"type": "invalid_request_error", "message": "whatever wording"}}),
        (200, {"data": [bucket(DAY + timedelta(hours=12), [ROW])], "has_more": False}),
    ], clock)
    report = client.usage_report(DAY + timedelta(hours=12), DAY + timedelta(hours=13), "1h", GROUP_BY, far())
    assert len(report.buckets) == 1
    assert "ending_at" in fake.sent[0].url and "ending_at" not in fake.sent[1].url
    assert "leaving it out from now on" in caplog.text
    # remembered: the next poll does not ask with a future ending_at again
    fake.answers.append((200, {"data": [bucket(DAY + timedelta(hours=12), [ROW])], "has_more": False}))
    client.usage_report(DAY + timedelta(hours=12), DAY + timedelta(hours=13), "1h", GROUP_BY, far())
    assert len(fake.sent) == 3 and "ending_at" not in fake.sent[2].url


def test_a_400_for_a_past_range_is_not_asked_again(clock):
    client, fake = scripted_client([(400, {"type": "error", "error": {"type": "invalid_request_error"}})], clock)
    with pytest.raises(AdminAPIError) as info:
        client.usage_report(DAY - timedelta(days=2), DAY - timedelta(days=1), "1h", GROUP_BY, far())
    assert info.value.reason == "bad_request"
    assert len(fake.sent) == 1
    assert not client.omit_future_ending_at


@pytest.mark.parametrize("status,reason", [(401, "auth"), (403, "auth"), (404, "bad_request"), (400, "bad_request")])
def test_client_errors_are_never_retried(clock, status, reason):
    client, fake = scripted_client([(status, {"type": "error", "error": {"type": "x"}})] * 5, clock)
    with pytest.raises(AdminAPIError) as info:
        client.workspaces(far())
    assert (info.value.reason, info.value.status) == (reason, status)
    assert len(fake.sent) == 1


def test_redirects_are_not_followed_so_the_key_stays_home(clock):
    client, fake = scripted_client([(302, b"")], clock)
    with pytest.raises(AdminAPIError) as info:
        client.workspaces(far())
    assert (info.value.reason, info.value.status) == ("invalid_response", 302)
    assert len(fake.sent) == 1


def test_the_key_is_sent_per_request_and_the_session_left_alone(clock):
    client, fake = scripted_client([(200, {"data": [], "has_more": False})], clock)
    client.workspaces(far())
    assert fake.sent[0].headers["x-api-key"] == "sk-ant-admin01-x"
    assert "x-api-key" not in client.session.headers


def test_has_more_without_next_page_is_invalid_not_a_silent_cut(clock):
    client, _ = scripted_client([(200, {"data": [bucket(DAY, [ROW])], "has_more": True, "next_page": None})], clock)
    with pytest.raises(AdminAPIError) as info:
        client.usage_report(DAY, DAY + timedelta(hours=3), "1h", GROUP_BY, far())
    assert info.value.reason == "invalid_response"


@pytest.mark.parametrize("last_id", [None, ""])
def test_a_list_with_has_more_but_no_last_id_is_invalid_not_a_silent_cut(clock, last_id):
    page = {"data": [{"id": "wrkspc_1", "name": "A"}], "has_more": True, "first_id": "wrkspc_1", "last_id": last_id}
    client, _ = scripted_client([(200, page)], clock)
    with pytest.raises(AdminAPIError) as info:
        client.workspaces(far())
    assert info.value.reason == "invalid_response"
    assert "last_id is missing" in str(info.value)


def test_the_rows_skipped_are_counted_per_bucket(clock):
    bad = {**ROW, "output_tokens": -1}
    client, _ = scripted_client([(200, {"data": [bucket(DAY, [ROW, bad, bad]), bucket(DAY + timedelta(hours=1), [ROW])],
                                        "has_more": False})], clock)
    report = client.usage_report(DAY, DAY + timedelta(hours=2), "1h", GROUP_BY, far())
    assert [b.skipped for b in report.buckets] == [(("invalid_row", 2),), ()]


def test_grouping_by_speed_sends_the_fast_mode_beta_header_and_nothing_else_does(clock):
    answer = (200, {"data": [bucket(DAY, [{**ROW, "speed": "fast"}])], "has_more": False})
    client, fake = scripted_client([answer, answer, answer], clock)
    report = client.usage_report(DAY, DAY + timedelta(hours=1), "1h", ("model", "speed"), far())
    assert fake.sent[0].headers["anthropic-beta"] == "fast-mode-2026-02-01"
    assert report.buckets[0].rows[0].dimensions == ("m", "fast")
    client.usage_report(DAY, DAY + timedelta(hours=1), "1h", GROUP_BY, far())
    client.cost_report(DAY, DAY + timedelta(days=1), far())
    assert "anthropic-beta" not in fake.sent[1].headers and "anthropic-beta" not in fake.sent[2].headers


def test_speed_account_and_service_account_against_the_simulator(simulator, sim_org, admin_key, clock):
    group_by = ("model", "speed", "account_id", "service_account_id")
    client = make_client(simulator.url, admin_key, clock)
    start = clock().replace(minute=0, second=0) - timedelta(hours=48)
    report = client.usage_report(start, start + timedelta(hours=48), "1h", group_by, far())
    assert simulator.requests[-1].status == 200
    keys = set(totals(report))
    assert any(speed == "fast" for _, speed, _, _ in keys)
    assert any(account is not None for _, _, account, _ in keys)
    assert any(service_account is not None for _, _, _, service_account in keys)
    assert totals(report) == {key: as_values(t) for key, t in sim_org.usage_totals(
        start, start + timedelta(hours=48), group_by).items()}


def test_overlapping_pages_are_refused_rather_than_counted_twice(clock):
    client, _ = scripted_client([
        (200, {"data": [bucket(DAY, [ROW])], "has_more": True, "next_page": "p2"}),
        (200, {"data": [bucket(DAY, [ROW]), bucket(DAY + timedelta(hours=1), [ROW])], "has_more": False}),
    ], clock)
    with pytest.raises(AdminAPIError) as info:
        client.usage_report(DAY, DAY + timedelta(hours=2), "1h", GROUP_BY, far())
    assert info.value.reason == "invalid_response"


@pytest.mark.parametrize("results", [5, "rows", {"a": 1}])
def test_results_that_are_not_a_list_make_the_response_invalid(clock, results):
    client, _ = scripted_client([(200, {"data": [{**bucket(DAY, []), "results": results}], "has_more": False})],
                                clock)
    with pytest.raises(AdminAPIError) as info:
        client.usage_report(DAY, DAY + timedelta(hours=1), "1h", GROUP_BY, far())
    assert info.value.reason == "invalid_response"


def test_a_repeated_next_page_is_an_error_not_a_loop(clock):
    page = {"data": [bucket(DAY, [])], "has_more": True, "next_page": "same"}
    client, fake = scripted_client([(200, page)] * 3, clock)
    with pytest.raises(AdminAPIError) as info:
        client.usage_report(DAY, DAY + timedelta(hours=3), "1h", GROUP_BY, far())
    assert info.value.reason == "invalid_response"
    assert len(fake.sent) == 2


def test_rate_limiter_spaces_requests_over_a_minute():
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(3, monotonic=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.acquire(deadline=1000)
    assert sleeps == []
    now[0] = 10
    limiter.acquire(deadline=1000)
    assert sleeps == [50]  # until the first of the three is a minute old
    limiter.acquire(deadline=1000)  # at 60 s the other two from 0 s have aged out too
    limiter.acquire(deadline=1000)
    assert sleeps == [50]
    with pytest.raises(AdminAPIError) as info:
        limiter.acquire(deadline=now[0] + 1)
    assert info.value.reason == "timeout" and info.value.final  # not retried: time is up


# -- deadlines and size caps against real sockets ------------------------------------------

class _Slow:
    """A local HTTP server whose answer is a 200 with a valid JSON body sent a byte at a time."""

    def __init__(self, body: bytes, *, pause: float, declare_length: bool = True):
        import socketserver
        import threading

        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                if declare_length:
                    head += b"Content-Length: %d\r\n" % len(body)
                self.wfile.write(head + b"\r\n")
                for i in range(len(body)):
                    if outer.stop.is_set():
                        return
                    try:
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                    except OSError:
                        return
                    outer.stop.wait(pause)

        self.stop = threading.Event()
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_body_dripped_byte_by_byte_cannot_hold_a_poll_past_its_deadline(clock):
    body = json.dumps({"data": [], "has_more": False, "first_id": None, "last_id": None}).encode()
    slow = _Slow(body, pause=0.05)  # every byte within the read timeout, the whole far beyond the deadline
    try:
        client = make_client(slow.url, "sk-ant-admin01-x", clock, request_timeout=5)
        started = time.monotonic()
        with pytest.raises(AdminAPIError) as info:
            client.workspaces(time.monotonic() + 0.5)
        took = time.monotonic() - started
    finally:
        slow.close()
    assert info.value.reason == "timeout"
    assert "still arriving at the poll deadline" in str(info.value)
    assert took < 0.5 + 2 * 0.05 + 1  # the deadline, one byte's pause, and slack for a loaded machine


@pytest.mark.parametrize("declare_length", [True, False])
def test_a_response_over_the_size_cap_is_refused_not_read_to_the_end(clock, declare_length):
    body = json.dumps({"data": [{"id": f"wrkspc_{i}", "name": "x" * 50} for i in range(200)],
                       "has_more": False}).encode()
    slow = _Slow(body, pause=0, declare_length=declare_length)
    try:
        client = make_client(slow.url, "sk-ant-admin01-x", clock, max_response_bytes=4096)
        with pytest.raises(AdminAPIError) as info:
            client.workspaces(far())
    finally:
        slow.close()
    assert info.value.reason == "invalid_response"
    assert "over the 4096-byte cap" in str(info.value)
