"""The supervisor's pieces that can be tested in-process (the whole of it runs in
tests/integration/test_gateway_serve.py)."""

from __future__ import annotations

import socket

import pytest

from gateway.serve import reserve_port


def test_port_zero_is_fixed_once_and_workers_can_share_it():
    guard = reserve_port("127.0.0.1", 0)
    port = guard.getsockname()[1]
    assert port != 0
    listeners = []
    try:
        for _ in range(2):  # what two workers do
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen()
            listeners.append(listener)
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # accepted by a worker's listener, not by the guard
    finally:
        for listener in listeners:
            listener.close()
        guard.close()


def test_a_port_held_by_another_program_fails_fast():
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError, match="in use"):
            reserve_port("127.0.0.1", other.getsockname()[1])
