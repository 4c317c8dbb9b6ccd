"""terminal_sdk fixtures: one PKI per module (SM2 keys are not free), readers with software
cards. Helpers live in sdk_testkit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_gateway import FakeGateway
from sdk_testkit import Pki, make_pki

from terminal_sdk import MemoryReader


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture
def reader() -> Iterator[MemoryReader]:
    memory = MemoryReader()
    yield memory
    memory.close()


@pytest.fixture
def fake(pki: Pki) -> Iterator[FakeGateway]:
    gateway = FakeGateway(pki).start()
    yield gateway
    gateway.stop()
