"""The error hierarchy: stable codes, clerk-readable messages in two languages, picklable."""

from __future__ import annotations

import pickle

import pytest

import terminal_sdk
from terminal_sdk import errors
from terminal_sdk.errors import (
    CardDataInvalid,
    CardError,
    CardLocked,
    CardRefused,
    CardRemoved,
    NoCard,
    NoReader,
    PinBlocked,
    ReaderBusy,
    ReaderError,
    TerminalError,
    TransmitFailed,
    UnsupportedCard,
    WrongPin,
)

ALL = [
    NoReader(),
    NoCard(detail="no card within 1 s"),
    CardRemoved(),
    ReaderBusy(),
    TransmitFailed(detail="SCardTransmit: 0x80100016"),
    WrongPin(2, sw=0x63C2),
    WrongPin(1),
    WrongPin(0),
    PinBlocked(sw=0x6983),
    CardLocked(sw=0x9303),
    UnsupportedCard(),
    CardDataInvalid(detail="record 08 (citizen_id): must be 18 bytes"),
    CardRefused(sw=0x6F00),
]


@pytest.mark.parametrize("error", ALL, ids=lambda e: type(e).__name__)
def test_every_error_has_a_code_and_both_messages(error: TerminalError) -> None:
    assert error.code.isupper()
    assert str(error) == error.message
    assert error.message.endswith(".")
    assert error.message_zh.endswith("。")
    assert isinstance(error, ReaderError | CardError)


@pytest.mark.parametrize("error", ALL, ids=lambda e: type(e).__name__)
def test_errors_survive_pickling(error: TerminalError) -> None:
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error)
    assert (clone.message, clone.message_zh, clone.detail) == (
        error.message,
        error.message_zh,
        error.detail,
    )
    assert getattr(clone, "sw", None) == getattr(error, "sw", None)
    assert getattr(clone, "tries_left", None) == getattr(error, "tries_left", None)


def test_wrong_pin_wording() -> None:
    assert str(WrongPin(2)) == "Wrong PIN. 2 tries left."
    assert str(WrongPin(1)) == "Wrong PIN. 1 try left."
    assert "blocked" in str(WrongPin(0))
    assert WrongPin(2).message_zh == "密码错误，还可尝试2次。"


def test_card_error_detail_defaults_to_the_status_word() -> None:
    assert CardRefused(sw=0x6F00).detail == "card status 6F00"
    assert CardRefused().detail is None


def test_codes_are_unique() -> None:
    classes = [getattr(errors, name) for name in errors.__all__]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))


def test_public_api_is_curated() -> None:
    assert sorted(terminal_sdk.__all__) == terminal_sdk.__all__
    for name in terminal_sdk.__all__:
        assert getattr(terminal_sdk, name) is not None
    for name in errors.__all__:
        assert name in terminal_sdk.__all__


def test_sdk_imports_no_server_package() -> None:
    """DESIGN §3: terminal_sdk speaks HTTP to the gateway; it never imports its code."""
    import ast
    from pathlib import Path

    root = Path(terminal_sdk.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in {"gateway", "settlement", "issuance", "loadtest"}, (
                    f"{path.name} imports {name}"
                )
