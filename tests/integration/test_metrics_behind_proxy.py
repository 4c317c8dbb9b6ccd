"""/metrics behind haproxy on the gateway's own host (docs/scale-out.md): a real `python -m
gateway serve` without ``metrics_token`` and the haproxy configuration the guide shows
(haproxykit.gateway_config). Every client of the proxy reaches the gateway from 127.0.0.1, so
the loopback rule alone would hand the world the metrics; the X-Forwarded-For haproxy adds
tells the gateway the request was relayed, and it refuses it. A scrape of the gateway's own
port from this host is still answered.
haproxy missing: FAIL under CI=true, else skip."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from crossprov_kit import Gateway, free_port, running_gateway
from haproxykit import Haproxy, start_haproxy
from pgcluster import CannotStart, cannot_start

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    # No hub is needed for /metrics: a port nothing listens on.
    with running_gateway(tmp_path, f"http://127.0.0.1:{free_port()}", workers=1) as running:
        yield running


@pytest.fixture
def proxy(tmp_path: Path, gateway: Gateway) -> Iterator[Haproxy]:
    try:
        with start_haproxy(tmp_path, [("a", gateway.port)]) as running:
            yield running
    except CannotStart as exc:
        cannot_start(f"haproxy: {exc}")


def _get(url: str) -> tuple[int, str]:
    try:
        with _OPENER.open(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_metrics_through_a_same_host_proxy_are_refused(gateway: Gateway, proxy: Haproxy) -> None:
    assert "GATEWAY_METRICS_TOKEN" not in gateway.env
    status, body = _get(f"{proxy.url}/metrics")
    assert status == 403, body
    assert json.loads(body)["code"] == "METRICS_FORBIDDEN"
    assert "gateway_" not in body
    # The same host, the gateway's own port: answered (how Prometheus scrapes a replica).
    status, body = _get(f"{gateway.url}/metrics")
    assert status == 200
    assert "gateway_requests_total" in body
    # The proxy still relays everything else.
    assert _get(f"{proxy.url}/healthz")[0] == 200
