"""Card readers behind one small interface, and the transport that sits on top of them.

* :class:`Reader` (protocol), :class:`ReaderInfo`, :class:`CardInfo`, :class:`ReaderEvent`,
  :class:`EventStream` — :mod:`terminal_sdk.readers.base`
* :class:`PcscReader` — real readers through pyscard — :mod:`terminal_sdk.readers.pcsc`
* :class:`MemoryReader` — software cards in memory, for tests — :mod:`terminal_sdk.readers.memory`
* :class:`ApduTransport` — 61xx / 6Cxx handling, once for all readers —
  :mod:`terminal_sdk.readers.transport`
* :class:`ApduTrace` — masked APDU trace (log + ring buffer) — :mod:`terminal_sdk.readers.trace`
"""

from terminal_sdk.readers.base import (
    DEFAULT_WAIT_S,
    CardInfo,
    CardInterface,
    EventKind,
    EventStream,
    Reader,
    ReaderEvent,
    ReaderInfo,
    detect_interface,
)
from terminal_sdk.readers.memory import MemoryReader
from terminal_sdk.readers.pcsc import PcscReader
from terminal_sdk.readers.trace import ApduTrace, TraceEntry
from terminal_sdk.readers.transport import ApduTransport

__all__ = [
    "DEFAULT_WAIT_S",
    "ApduTrace",
    "ApduTransport",
    "CardInfo",
    "CardInterface",
    "EventKind",
    "EventStream",
    "MemoryReader",
    "PcscReader",
    "Reader",
    "ReaderEvent",
    "ReaderInfo",
    "TraceEntry",
    "detect_interface",
]
