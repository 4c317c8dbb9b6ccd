"""/metrics behind a setting: with ``metrics_token`` only a scrape that sends it as a bearer
token is answered (401 otherwise); without it only loopback clients are (403 otherwise)."""

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


def _request(peer: str | None, authorization: str | None = None) -> Any:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 40000) if name == "peername" and peer is not None else default
    )
    headers = {} if authorization is None else {"Authorization": authorization}
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


def test_a_short_token_is_a_settings_error():
    with pytest.raises(ValueError, match="metrics_token"):
        Settings(metrics_token="short")
