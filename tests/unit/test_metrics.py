"""The metrics' pure parts: classes and buckets, the event tally, the families a
snapshot makes, the config's checks."""

from __future__ import annotations

from bisect import bisect_left

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orun.errors import ConfigError
from orun.events import (
    AppIdled,
    BuildFinished,
    ColdStart,
    ConfigReloadFinished,
    ContainerExited,
    HealthCheckFailed,
)
from orun.metrics.collector import Gauges, MetricsSource, render
from orun.metrics.endpoint import _token_ok, loopback
from orun.metrics.tally import START_BOUNDS, EventTally
from orun.proxy.stats import (
    LATENCY_BOUNDS,
    METHODS,
    N_STATUS,
    ProxyStats,
    method_class,
    method_class_text,
    status_class,
)
from orun.state.config import parse_config, parse_listen


def test_method_and_status_classes() -> None:
    assert [METHODS[method_class(m.encode())] for m in ("GET", "HEAD", "POST", "PUT",
                                                        "DELETE", "PATCH", "OPTIONS")] \
        == ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
    assert METHODS[method_class(b"PROPFIND")] == "other"
    assert METHODS[method_class(b"get")] == "other"  # methods are case-sensitive
    assert METHODS[method_class_text("PATCH")] == "PATCH"
    assert [status_class(s) for s in (101, 200, 304, 404, 503, 0, 99, 600, 999)] == \
        [1, 2, 3, 4, 5, 0, 0, 0, 0]


def test_bucket_search_is_le() -> None:
    """A value equal to a bound is in that bound's bucket; above the last, in +Inf."""
    assert bisect_left(LATENCY_BOUNDS, 0.001) == LATENCY_BOUNDS.index(0.001)
    assert bisect_left(LATENCY_BOUNDS, 0.0010001) == LATENCY_BOUNDS.index(0.001) + 1
    assert bisect_left(LATENCY_BOUNDS, 1e9) == len(LATENCY_BOUNDS)
    assert bisect_left(LATENCY_BOUNDS, 0.0) == 0


def tally() -> EventTally:
    labels = {"app_prd_1": "/a", "app_stg_1": "stage.localhost:/a"}
    return EventTally(None, lambda app_id: labels.get(app_id, ""))  # type: ignore[arg-type]


def test_tally_counts_events_by_app_label() -> None:
    t = tally()
    t.count(BuildFinished("app_prd_1", "img", "", 12.0, True))
    t.count(BuildFinished("app_prd_1", "img", "", 0.1, False))
    t.count(BuildFinished("app_stg_1", "img", "boom", 3.0))
    t.count(ColdStart("app_prd_1", "start", 0.5))
    t.count(ColdStart("app_prd_1", "start", 0.7, "failed to start"))
    t.count(ColdStart("app_prd_1", "thaw", 0.03))
    t.count(AppIdled("app_prd_1", "stop", 181.0))
    t.count(HealthCheckFailed("app_prd_1", "c1", "timeout", 1))
    t.count(ContainerExited("app_prd_1", "c1", "exit 1", 1, expected=False))
    t.count(ContainerExited("app_prd_1", "c1", "idle", None, expected=True))
    t.count(ColdStart("app_gone", "start", 1.0))  # a deleted app: not counted
    t.count(ConfigReloadFinished(True, ("log",)))
    t.count(ConfigReloadFinished(True))
    t.count(ConfigReloadFinished(False, problems=("x: bad",)))
    assert t.builds == {("/a", "built"): 1, ("/a", "cached"): 1,
                        ("stage.localhost:/a", "failed"): 1}
    assert t.build_seconds["/a"].sum == 12.0  # a cached image took no build
    assert t.cold_starts == {("/a", "start", "ok"): 1, ("/a", "start", "failed"): 1,
                             ("/a", "thaw", "ok"): 1}
    hist = t.cold_start_seconds[("/a", "start")]
    assert hist.counts[bisect_left(START_BOUNDS, 0.5)] == 1 and sum(hist.counts) == 1
    assert t.idle == {("/a", "stop"): 1}
    assert t.health_failures == {"/a": 1}
    assert t.crashes == {"/a": 1}
    assert t.reloads == {"applied": 1, "unchanged": 1, "rejected": 1}
    assert t.last_reload_ok == 0
    t.retain({"/a"})
    assert ("stage.localhost:/a", "failed") not in t.builds


def test_families_from_a_snapshot() -> None:
    stats = ProxyStats()
    a = stats.for_app("/a")
    a.requests[0 * N_STATUS + 2] = 7  # GET 2xx
    a.requests[2 * N_STATUS + 5] = 1  # POST 5xx
    a.bytes_in, a.bytes_out = 10, 2000
    a.overhead[bisect_left(LATENCY_BOUNDS, 0.0002)] = 8
    a.overhead_sum = 0.0016
    a.upstream[bisect_left(LATENCY_BOUNDS, 0.02)] = 8
    a.upstream_sum = 0.16
    stats.for_app("/idle")  # no traffic: no request series
    t = tally()
    t.count(ColdStart("app_prd_1", "start", 0.5))
    source = MetricsSource(stats, t, lambda: Gauges({"http": 3}, 1, 2, 0, 4, 1.0))
    body, content_type = render(source.snapshot(), "")
    assert content_type.startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(body.decode())
               for s in f.samples}
    assert samples[("orun_http_requests_total",
                    (("app", "/a"), ("method", "GET"), ("status", "2xx")))] == 7
    assert samples[("orun_http_requests_total",
                    (("app", "/a"), ("method", "POST"), ("status", "5xx")))] == 1
    assert not [k for k in samples if k[0] == "orun_http_requests_total"
                and ("app", "/idle") in k[1]]
    # cumulative buckets
    assert samples[("orun_upstream_response_seconds_bucket",
                    (("app", "/a"), ("le", "0.01")))] == 0
    assert samples[("orun_upstream_response_seconds_bucket",
                    (("app", "/a"), ("le", "0.025")))] == 8
    assert samples[("orun_upstream_response_seconds_bucket",
                    (("app", "/a"), ("le", "+Inf")))] == 8
    assert samples[("orun_upstream_response_seconds_count", (("app", "/a"),))] == 8
    assert samples[("orun_open_connections", (("listener", "http"),))] == 3
    assert samples[("orun_containers", (("state", "running"),))] == 2
    assert samples[("orun_cold_starts_total",
                    (("app", "/a"), ("kind", "start"), ("outcome", "ok")))] == 1
    # OpenMetrics for a scraper that asks for it
    body, content_type = render(source.snapshot(), "application/openmetrics-text; "
                                "version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_token_compare_and_loopback() -> None:
    token = "t" * 20
    assert _token_ok(f"Bearer {token}", token)
    assert _token_ok(f"bearer {token}", token)
    assert not _token_ok(f"Bearer {token}x", token)
    assert not _token_ok(f"Basic {token}", token)
    assert not _token_ok("", token)
    assert loopback("127.0.0.1") and loopback("::1") and loopback("127.8.9.1")
    assert not loopback("10.0.0.1") and not loopback(None) and not loopback("x")


def test_metrics_config_checks() -> None:
    cfg = parse_config("metrics: {listen: '[::1]:9464', token: abcdefghijklmnop}")
    assert cfg.metrics.enabled and cfg.metrics.token == "abcdefghijklmnop"
    assert parse_listen(cfg.metrics.listen) == ("::1", 9464)
    assert parse_listen("0.0.0.0:0") == ("0.0.0.0", 0)
    assert parse_config("").metrics.listen == ""
    with pytest.raises(ConfigError) as err:
        parse_config("metrics: {listen: '9464', token: 'has space in it 1234', "
                     "enabled: 'yes'}")
    problems = err.value.problems
    assert "metrics.enabled: expected a boolean, got a string" in problems
    assert any(p.startswith("metrics.listen: '9464' is not host:port") for p in problems)
    assert any(p.startswith("metrics.token: must be printable ASCII") for p in problems)
    for bad in ("host:99999", "host:", ":80", "a b:80"):
        with pytest.raises(ValueError):
            parse_listen(bad)
