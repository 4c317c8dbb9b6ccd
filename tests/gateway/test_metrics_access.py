"""/metrics behind a setting: with ``metrics_token`` only a scrape that sends it as a bearer
token is answered (401 otherwise); without it only loopback clients are (403 otherwise), and
not a request a proxy relayed (a proxy on the gateway's host connects from loopback)."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request
from gateway_testkit import Client, assert_problem

from gateway.errors import GatewayError
from gateway.metrics_access import check_metrics_access
from gateway.settings import Settings

TOKEN = "m" * 24 + "-metrics-token-0001"


def _request(peer: str | None, authorization: str | None = None, **more_headers: str) -> Any:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 40000) if name == "peername" and peer is not None else default
    )
    headers = {} if authorization is None else {"Authorization": authorization}
    headers.update({name.replace("_", "-"): value for name, value in more_headers.items()})
    return make_mocked_request("GET", "/metrics", headers=headers, transport=transport)


class TestWithAToken:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"metrics_token": TOKEN}

    async def test_a_scrape_without_the_token_is_refused(self, client: Client):
        response = await client.get("/metrics")
        await assert_problem(response, 401, "METRICS_UNAUTHORIZED")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        for wrong in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "):
            response = await client.get("/metrics", headers={"Authorization": wrong})
            await assert_problem(response, 401, "METRICS_UNAUTHORIZED")
            assert "gateway_" not in await response.text()

    async def test_a_scrape_with_the_token_is_answered(self, client: Client):
        response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status == 200
        assert "gateway_requests_total" in await response.text()

    def test_the_token_is_needed_from_loopback_too(self, settings: Settings):
        with pytest.raises(GatewayError) as refused:
            check_metrics_access(_request("127.0.0.1"), settings)
        assert refused.value.code == "METRICS_UNAUTHORIZED"
        check_metrics_access(_request("203.0.113.5", f"bearer {TOKEN}"), settings)


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_without_a_token_loopback_is_answered(settings: Settings, peer: str):
    assert not settings.metrics_token
    check_metrics_access(_request(peer), settings)


@pytest.mark.parametrize(
    "peer", ["203.0.113.5", "10.0.0.7", "::ffff:10.0.0.7", "2001:db8::1", None]
)
def test_without_a_token_any_other_peer_is_refused(settings: Settings, peer: str | None):
    request = _request(peer)
    with pytest.raises(GatewayError) as refused:
        check_metrics_access(request, settings)
    assert refused.value.code == "METRICS_FORBIDDEN"


# What a proxy on the gateway's own host adds for a client from anywhere (haproxy's `option
# forwardfor`, nginx's `proxy_set_header`, RFC 7239); the header's case does not matter.
RELAYED = [
    {"X_Forwarded_For": "203.0.113.5"},
    {"x_forwarded_for": "127.0.0.1"},  # even one naming loopback: the proxy relayed it
    {"Forwarded": "for=203.0.113.5;proto=https"},
    {"X_Real_IP": "203.0.113.5"},
]


@pytest.mark.parametrize("headers", RELAYED)
@pytest.mark.parametrize("peer", ["127.0.0.1", "::1"])
def test_without_a_token_a_request_a_proxy_relayed_is_refused(
    settings: Settings, peer: str, headers: dict[str, str]
):
    with pytest.raises(GatewayError) as refused:
        check_metrics_access(_request(peer, **headers), settings)
    assert refused.value.code == "METRICS_FORBIDDEN"
    assert "relayed by a proxy" in str(refused.value)


def test_without_a_token_a_relayed_request_is_refused_from_a_trusted_proxy_too(
    settings: Settings,
) -> None:
    """As a proxy trusted for the shared limits (trusted_proxies) relays it, too: the header
    decides, not whom the limits believe."""
    trusting = settings.model_copy(update={"trusted_proxies": "127.0.0.0/8"})
    with pytest.raises(GatewayError) as refused:
        check_metrics_access(_request("127.0.0.1", X_Forwarded_For="127.0.0.1"), trusting)
    assert refused.value.code == "METRICS_FORBIDDEN"


@pytest.mark.parametrize("headers", RELAYED)
def test_with_the_token_a_relayed_scrape_is_answered(headers: dict[str, str]):
    settings = Settings(metrics_token=TOKEN)
    check_metrics_access(_request("127.0.0.1", f"Bearer {TOKEN}", **headers), settings)


async def test_a_loopback_client_through_a_proxy_is_refused_end_to_end(client: Client):
    """The test client connects from loopback: answered alone, refused once relayed."""
    assert (await client.get("/metrics")).status == 200
    response = await client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.7"})
    await assert_problem(response, 403, "METRICS_FORBIDDEN")
    assert "gateway_" not in await response.text()


def test_a_short_token_is_a_settings_error():
    with pytest.raises(ValueError, match="metrics_token"):
        Settings(metrics_token="short")
