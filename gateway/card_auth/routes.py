"""The card-authentication routes: request and response models, thin handlers, Route table.

``POST /v1/card-auth/challenge``  a fresh challenge bound to this terminal and this card;
``POST /v1/card-auth/response``   the card's answer -> a card session token.

Both are signed by the terminal (gateway.routing runs signature, replay guard and schema
before the handler). The handlers only translate between JSON and the service.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Final, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from gateway import metrics
from gateway.card_auth.checks import card_sn_from_hex
from gateway.card_auth.service import CARD_AUTH, AuthAttempt
from gateway.errors import ERRORS, ErrorCode, codes_named, domain_error_code
from gateway.routing import Call, ErrorList, RequestModel, Route, exactly_one_of
from issuance.errors import CardNotUsable
from sscard.certs import MAX_CERTIFICATE_DER_BYTES, CertificateError

__all__ = [
    "CARD_AUTH_ROUTES",
    "CardAuthAnswer",
    "CardSessionGranted",
    "ChallengeGranted",
    "ChallengeRequest",
]


def _card_sn(value: str) -> str:
    # Structure beyond the hex digits (area code BCD, RID): CardDataError is a ValueError,
    # so a bad card_sn is a 422 naming the field. Normalised to upper case.
    return card_sn_from_hex(value).hex


def _base64_der(value: str) -> str:
    try:
        der = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be standard base64 (RFC 4648 §4) without line breaks") from None
    if not der:
        raise ValueError("must not be empty")
    return value


CardSnHex = Annotated[
    str,
    Field(
        # Area code (6 BCD digits), the RID D156000005, 8 bytes of the card's own: what
        # sscard.layout.CardSn checks, so the document is as strict as the validator.
        pattern=r"^[0-9]{6}[Dd]156000005[0-9A-Fa-f]{16}$",
        description="卡识别码, EF05 record 01: 32 hex digits (area code, RID, card).",
        examples=["310000D15600000503000000000000A0"],
    ),
    AfterValidator(_card_sn),
]
ChallengeId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")]
# Standard base64 with its padding, no line breaks: what base64.b64decode(validate=True) takes.
_BASE64: Final = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
_MAX_CERT_B64: Final = 4 * ((MAX_CERTIFICATE_DER_BYTES + 2) // 3)


class ChallengeRequest(RequestModel):
    card_sn: CardSnHex
    generation: Literal[3, 2] = Field(
        description="3: third-generation card (spec version 3.00); 2: legacy card."
    )


class ChallengeGranted(BaseModel):
    challenge_id: str
    challenge: str = Field(
        description="Hex: 16 bytes for generation 3 (put into card_auth_message), 8 bytes for "
        "generation 2 (the INTERNAL AUTHENTICATE data)."
    )
    expires_in_s: int


class CardAuthAnswer(RequestModel):
    """Generation 3: ``signature`` + ``certificate`` or ``certificate_sm3``.
    Generation 2: ``cryptogram`` alone."""

    model_config = ConfigDict(
        json_schema_extra=exactly_one_of(
            ("signature", "certificate", "certificate_sm3", "cryptogram"),
            ("signature", "certificate"),
            ("signature", "certificate_sm3"),
            ("cryptogram",),
        )
    )

    challenge_id: ChallengeId
    card_sn: CardSnHex
    signature: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{128}$")] | None = Field(
        None, description="SM2 signature r||s (64 bytes, hex) over card_auth_message."
    )
    certificate: Annotated[
        str,
        Field(min_length=4, max_length=_MAX_CERT_B64, pattern=_BASE64),
        AfterValidator(_base64_der),
    ] | (None) = Field(None, description="The card certificate (EF 0018), DER in base64.")
    certificate_sm3: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{64}$")] | None = Field(
        None,
        description="SM3 of the certificate DER (hex), instead of the certificate once the "
        "gateway has seen it. Answered with CERT_UNKNOWN if it has not.",
    )
    cryptogram: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{16}$")] | None = Field(
        None, description="Legacy card's INTERNAL AUTHENTICATE answer (8 bytes, hex)."
    )

    @model_validator(mode="after")
    def _one_kind_of_answer(self) -> Self:
        if self.signature is not None:
            if self.cryptogram is not None:
                raise ValueError("send either signature (generation 3) or cryptogram (2)")
            if (self.certificate is None) == (self.certificate_sm3 is None):
                raise ValueError("with signature, send exactly one of certificate, certificate_sm3")
        elif self.cryptogram is not None:
            if self.certificate is not None or self.certificate_sm3 is not None:
                raise ValueError("a legacy card (cryptogram) has no certificate")
        else:
            raise ValueError("send signature (generation 3) or cryptogram (generation 2)")
        return self

    def to_attempt(self) -> AuthAttempt:
        def unhex(value: str | None) -> bytes | None:
            return None if value is None else bytes.fromhex(value)

        return AuthAttempt(
            challenge_id=self.challenge_id,
            card_sn=self.card_sn,
            signature=unhex(self.signature),
            certificate_der=None
            if self.certificate is None
            else base64.b64decode(self.certificate, validate=True),
            certificate_sm3=unhex(self.certificate_sm3),
            cryptogram=unhex(self.cryptogram),
        )


class CardSessionGranted(BaseModel):
    card_session: str = Field(
        description="Card session token for this terminal and card; settlement routes take it."
    )
    expires_in_s: int
    card_sn: str
    generation: int


async def challenge(call: Call[ChallengeRequest]) -> ChallengeGranted:
    assert call.terminal is not None
    issued = await call.app[CARD_AUTH].issue_challenge(
        terminal_id=call.terminal.terminal_id,
        card_sn=call.body.card_sn,
        generation=call.body.generation,
        nonce=call.nonce,
    )
    return ChallengeGranted(
        challenge_id=issued.challenge_id,
        challenge=issued.challenge.hex().upper(),
        expires_in_s=issued.expires_in_s,
    )


async def response(call: Call[CardAuthAnswer]) -> CardSessionGranted:
    assert call.terminal is not None
    attempt = call.body.to_attempt()
    try:
        granted = await call.app[CARD_AUTH].authenticate(
            attempt,
            terminal_id=call.terminal.terminal_id,
            nonce=call.nonce,
            national_door=call.terminal.national_door,
        )
    except Exception as exc:
        _count_verdict(attempt.generation, domain_error_code(exc) or ErrorCode.INTERNAL)
        raise
    _count_verdict(attempt.generation, None)
    return CardSessionGranted(
        card_session=granted.token,
        expires_in_s=granted.expires_in_s,
        card_sn=granted.card_sn,
        generation=granted.generation,
    )


def _count_verdict(generation: int, code: str | None) -> None:
    """gateway_card_authentications_total: ``code`` None when the card was authenticated."""
    if code is None:
        outcome, reason = "authenticated", "none"
    else:
        outcome, reason = ("error" if ERRORS[code].status >= 500 else "refused"), code
    metrics.CARD_AUTHENTICATIONS.labels(str(generation), outcome, reason).inc()


# The challenge's own state, the certificate's checks (sscard.certs), the gateway's own
# certificate and card checks, and the registry's refusals (issuance): families and domain
# error classes, so that a new code of either reaches this route with no edit here.
_RESPONSE_ERRORS: Final[ErrorList] = (
    *codes_named("CHALLENGE_"),
    CertificateError,
    ErrorCode.CERT_UNKNOWN,
    ErrorCode.CERT_CARD_MISMATCH,
    ErrorCode.CERT_NOT_CURRENT,
    CardNotUsable,
    ErrorCode.CARD_GENERATION_MISMATCH,
    ErrorCode.CARD_CERT_REVOKED,
    ErrorCode.CARD_SIGNATURE_INVALID,
    ErrorCode.CRYPTOGRAM_INVALID,
    ErrorCode.CARD_AUTH_UNAVAILABLE,
)

CARD_AUTH_ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "POST",
        "/v1/card-auth/challenge",
        operation_id="cardAuthChallenge",
        summary="A one-time challenge for a card, bound to this terminal and this card.",
        description="Valid for challenge_ttl_s seconds and for one answer only.",
        handler=challenge,
        request_model=ChallengeRequest,
        response_model=ChallengeGranted,
        tags=("card authentication",),
        errors=(ErrorCode.TERMINAL_ID_TOO_LONG, ErrorCode.CARD_AUTH_UNAVAILABLE),
        nonce_in_handler=True,
    ),
    Route(
        "POST",
        "/v1/card-auth/response",
        operation_id="cardAuthResponse",
        summary="The card's answer to a challenge; returns a card session token.",
        description="Checks, in this order: the challenge (consumed even if a later check "
        "fails), the certificate chain to the pinned root and the imported CRLs, the card's "
        "SM2 signature (or, for a legacy card, its cryptogram), and then the card's registry "
        "status: a registry refusal is given only to a card that has proven itself.",
        handler=response,
        request_model=CardAuthAnswer,
        response_model=CardSessionGranted,
        tags=("card authentication",),
        errors=_RESPONSE_ERRORS,
        nonce_in_handler=True,
    ),
)
