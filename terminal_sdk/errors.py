"""The errors an integrator catches: what went wrong, in words a clerk can act on.

Every error has a stable ``code`` (for metrics, logs and the HIS's own error table), an
English ``message`` and a Chinese ``message_zh`` to show at the counter. Messages never hold a
PIN, a citizen id or a name. The low-level cause (a PC/SC return code, a card status word) is
chained as ``__cause__`` and kept in ``detail`` for support, not for the clerk.

Hierarchy::

    TerminalError
     ├── ReaderError             the reader or the link to the card
     │    ├── NoReader           no reader connected, or the PC/SC service is not running
     │    ├── NoCard             no card in the reader (or none within the timeout)
     │    ├── CardRemoved        the card left the reader in the middle of a transaction
     │    ├── ReaderBusy         another program holds the reader / card exclusively
     │    └── TransmitFailed     the card did not answer, or answered nonsense
     └── CardError               the card answered, but not with what was asked for
          ├── WrongPin           .tries_left
          ├── PinBlocked
          ├── CardLocked         the application is permanently locked (voided card)
          ├── UnsupportedCard    e.g. asking a second-generation card for its certificate
          ├── CardDataInvalid    the card's data does not decode (damaged or foreign card)
          └── CardRefused        any other status word; .sw
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CardDataInvalid",
    "CardError",
    "CardLocked",
    "CardRefused",
    "CardRemoved",
    "NoCard",
    "NoReader",
    "PinBlocked",
    "ReaderBusy",
    "ReaderError",
    "TerminalError",
    "TransmitFailed",
    "UnsupportedCard",
    "WrongPin",
]


class TerminalError(Exception):
    """Base of every terminal_sdk error. ``str(error)`` is the clerk-readable message."""

    # Not a ClassVar: a gateway problem (terminal_sdk.problems) carries the code the gateway
    # sent, which may be one this SDK version does not know.
    code: str = "TERMINAL_ERROR"
    default_message: ClassVar[str] = "The terminal could not complete the operation."
    default_message_zh: ClassVar[str] = "终端无法完成操作。"

    def __init__(
        self,
        message: str | None = None,
        *,
        message_zh: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.message_zh = message_zh or self.default_message_zh
        # For support staff and logs: PC/SC codes, status words. Never personal data.
        self.detail = detail
        super().__init__(self.message)

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments: rebuild through a helper so the error survives pickling
        # (multiprocessing, logging queues).
        return (_rebuild, (type(self), self.message, self.message_zh, self.detail, self._extra()))

    def _extra(self) -> dict[str, object]:
        return {}


def _rebuild(
    cls: type[TerminalError],
    message: str,
    message_zh: str,
    detail: str | None,
    extra: dict[str, object],
) -> TerminalError:
    error = cls.__new__(cls)
    TerminalError.__init__(error, message, message_zh=message_zh, detail=detail)
    error.__dict__.update(extra)
    return error


# -- reader ---------------------------------------------------------------------------------------


class ReaderError(TerminalError):
    """The reader, or the link between reader and card, failed."""

    code = "READER_ERROR"
    default_message = "The card reader failed. Remove the card, insert it again and retry."
    default_message_zh = "读卡器故障，请取出卡片重新插入后重试。"


class NoReader(ReaderError):
    code = "NO_READER"
    default_message = "No card reader found. Check that the reader is plugged in."
    default_message_zh = "未找到读卡器，请检查读卡器是否已连接。"


class NoCard(ReaderError):
    code = "NO_CARD"
    default_message = "No card in the reader. Insert the social security card."
    default_message_zh = "读卡器中没有卡，请插入社会保障卡。"


class CardRemoved(ReaderError):
    code = "CARD_REMOVED"
    default_message = "The card was removed during the transaction. Insert it again and start over."
    default_message_zh = "交易过程中卡片被取出，请重新插卡后重新开始。"


class ReaderBusy(ReaderError):
    code = "READER_BUSY"
    default_message = "The card reader is in use by another program. Close that program and retry."
    default_message_zh = "读卡器正被其他程序占用，请关闭该程序后重试。"


class TransmitFailed(ReaderError):
    code = "TRANSMIT_FAILED"
    default_message = (
        "The card does not answer. Remove it, check it is inserted the right way and retry."
    )
    default_message_zh = "卡片无响应，请取出卡片，确认插入方向正确后重试。"


# -- card -----------------------------------------------------------------------------------------


class CardError(TerminalError):
    """The card answered but refused, or its data is not what the card layout says.

    ``sw`` is the card's status word when there is one (for support), else None.
    """

    code = "CARD_ERROR"
    default_message = "The card refused the operation."
    default_message_zh = "卡片拒绝了该操作。"

    def __init__(
        self,
        message: str | None = None,
        *,
        message_zh: str | None = None,
        detail: str | None = None,
        sw: int | None = None,
    ) -> None:
        self.sw = sw
        if detail is None and sw is not None:
            detail = f"card status {sw:04X}"
        super().__init__(message, message_zh=message_zh, detail=detail)

    def _extra(self) -> dict[str, object]:
        return {"sw": self.sw}


class WrongPin(CardError):
    """The PIN was wrong; ``tries_left`` more wrong PINs block it (0: it is blocked now)."""

    code = "WRONG_PIN"

    def __init__(self, tries_left: int, *, sw: int | None = None) -> None:
        self.tries_left = tries_left
        if tries_left == 0:
            message = "Wrong PIN. No tries left: the PIN is now blocked."
            message_zh = "密码错误，已无剩余次数，密码已锁定。"
        else:
            plural = "try" if tries_left == 1 else "tries"
            message = f"Wrong PIN. {tries_left} {plural} left."
            message_zh = f"密码错误，还可尝试{tries_left}次。"
        super().__init__(message, message_zh=message_zh, sw=sw)

    def _extra(self) -> dict[str, object]:
        return {"sw": self.sw, "tries_left": self.tries_left}


class PinBlocked(CardError):
    code = "PIN_BLOCKED"
    default_message = (
        "The card's PIN is blocked. The cardholder must have it unblocked at a service centre."
    )
    default_message_zh = "卡片密码已锁定，请持卡人到社保服务网点解锁。"


class CardLocked(CardError):
    code = "CARD_LOCKED"
    default_message = "This card is locked and can no longer be used."
    default_message_zh = "该卡已被锁定，无法使用。"


class UnsupportedCard(CardError):
    code = "UNSUPPORTED_CARD"
    default_message = "This card does not support the operation."
    default_message_zh = "该卡不支持此操作。"


class CardDataInvalid(CardError):
    code = "CARD_DATA_INVALID"
    default_message = (
        "The card's data cannot be read. It may be damaged or not a social security card."
    )
    default_message_zh = "无法读取卡片数据，卡片可能已损坏或不是社会保障卡。"


class CardRefused(CardError):
    code = "CARD_REFUSED"
