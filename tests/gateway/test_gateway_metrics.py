"""Metrics: every rejection counted by its code; label values stay bounded."""

from __future__ import annotations

import asyncio
import logging

import pytest
from gateway_testkit import Client, Signer
from prometheus_client.parser import text_string_to_metric_families

from gateway.logs import configure_logging


async def _samples(client: Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(await response.text())
        for sample in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_rejections_are_counted_by_reason(client: Client, signer: Signer):
    before = await _samples(client)
    await client.get("/nowhere")
    await client.get("/nowhere/else")
    await signer.post(body=b"{")
    await signer.post(extra_headers={"X-Signature": "00" * 32})
    await signer.post()  # accepted: not a rejection
    after = await _samples(client)

    def delta(code: str) -> float:
        name = "gateway_rejections_total"
        return _value(after, name, code=code) - _value(before, name, code=code)

    assert delta("NOT_FOUND") == 2
    assert delta("MALFORMED_JSON") == 1
    assert delta("SIGNATURE_INVALID") == 1
    ok = ("gateway_requests_total", {"route": "/v1/echo", "method": "POST", "status": "200"})
    assert _value(after, ok[0], **ok[1]) - _value(before, ok[0], **ok[1]) == 1


async def test_label_values_are_bounded(client: Client):
    before = await _samples(client)
    response = await client.request("PROPFIND", "/coffee/pot-42?who=310101199001011234")
    assert response.status == 404
    after = await _samples(client)
    labels = {"route": "unmatched", "method": "OTHER", "status": "404"}
    name = "gateway_requests_total"
    assert _value(after, name, **labels) - _value(before, name, **labels) == 1
    text = await (await client.get("/metrics")).text()
    assert "coffee" not in text
    assert "PROPFIND" not in text


async def test_parser_rejections_are_logged_without_the_request_line(
    client: Client, caplog: pytest.LogCaptureFixture
):
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("json", "INFO")  # installs the filter on aiohttp.server
    root.handlers[:] = handlers  # give pytest's capture handler back
    root.setLevel(level)
    with caplog.at_level(logging.INFO):
        reader, writer = await asyncio.open_connection(client.host, client.port)
        # A header line with no colon: refused by aiohttp's parser, before any middleware.
        writer.write(b"GET /pot?who=310101199001011234 HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n")
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        await writer.wait_closed()
    assert b" 400 " in status_line
    assert "310101199001011234" not in caplog.text
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records
    assert records[0].getMessage() == "malformed HTTP request refused by the parser"
