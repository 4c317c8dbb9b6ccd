"""The hub transport over HTTP: ``POST {hub_url}/hub/v1/{infno}`` (docs/cross-province.md).

The client that decides what a call's outcome is (bounded attempts with one msgid, the
breaker) is settlement.crossprov.calls; this is the one piece of it that speaks HTTP, so it
lives in the gateway.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from settlement.crossprov.calls import NoAnswer, NotSent

__all__ = ["AiohttpTransport"]


class AiohttpTransport:
    """``POST {hub_url}/hub/v1/{infno}`` over a pooled aiohttp session."""

    def __init__(self, hub_url: str, *, max_connections: int = 64) -> None:
        self._base = hub_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._max_connections = max_connections

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                json_serialize=lambda obj: json.dumps(obj, ensure_ascii=False),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, infno: str, envelope: Mapping[str, Any], timeout_s: float) -> Any:
        url = f"{self._base}/hub/v1/{infno}"
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self._client().post(url, json=dict(envelope), timeout=timeout) as response:
                if response.status >= 500:
                    raise NoAnswer(f"HTTP {response.status}", hub_down=True)
                if response.status != 200:
                    body = (await response.text())[:200]
                    raise ValueError(f"HTTP {response.status}: {body}")
                return await response.json(content_type=None)
        except aiohttp.ClientConnectorError as exc:  # refused, unreachable: nothing was sent
            raise NotSent(type(exc).__name__) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise NotSent("connect timeout") from exc
        except TimeoutError as exc:
            raise NoAnswer("timeout", hub_down=True) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise NoAnswer(type(exc).__name__, hub_down=False) from exc
        except aiohttp.ClientError as exc:
            raise NoAnswer(type(exc).__name__, hub_down=False) from exc
