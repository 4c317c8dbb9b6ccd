"""Transport profiles, per institution (DOMAIN §4; ``fsi_transport``, else the
``fsi_default_profile`` setting):

``plain``
    ``input`` is a JSON object, over the institution's private line; nothing is signed.
``sm2-sm4``
    ``input`` is Base64(SM4-ECB-PKCS7(input JSON)) under the institution's 16-byte key;
    ``cainfo`` is Base64 of the raw 64-byte r‖s SM2-with-SM3 signature (signer id
    1234567812345678) over the input JSON text as it was before encryption, by the HIS's key;
    ``inf_time`` within ``fsi_inf_time_skew_s`` of the gateway's clock (with the msgid store,
    this bounds a replay). Answers are sent in clear (the clients compared read them so).
``refuse``
    The institution is not allowed on the door (the default setting's other value).

Every refusal here happens before any unit of work: it changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from aiohttp import web

from gateway.errors import ErrorCode, GatewayError
from gateway.fsi.envelope import Envelope, parse_time
from gateway.fsi.store import InstitutionKeys
from gateway.state import SETTINGS
from sscard.crypto import CryptoError, SignatureInvalid, sm2_verify, sm4_ecb_decrypt

__all__ = ["PLAIN", "SM2_SM4", "open_input", "pkcs7_unpad"]

PLAIN = "plain"
SM2_SM4 = "sm2-sm4"
_BLOCK = 16


def pkcs7_unpad(data: bytes) -> bytes:
    if not data or len(data) % _BLOCK:
        raise ValueError("not whole blocks")
    pad = data[-1]
    if not 1 <= pad <= _BLOCK or data[-pad:] != bytes([pad]) * pad:
        raise ValueError("bad padding")
    return data[:-pad]


def _refuse_input(detail: str) -> GatewayError:
    return GatewayError(ErrorCode.FSI_DECRYPT_FAILED, detail)


def _sm2_sm4(
    app: web.Application, env: Envelope, keys: InstitutionKeys, received_at: dt.datetime
) -> Mapping[str, Any]:
    if keys.sm4_key is None or keys.his_public_key is None:
        raise GatewayError(
            ErrorCode.FSI_INSTITUTION_UNKNOWN, "the institution's sm2-sm4 keys are not configured"
        )
    if not env.inf_time:
        raise GatewayError(ErrorCode.FSI_INF_TIME_STALE, "inf_time is required")
    skew_s = (parse_time(env.inf_time, "inf_time") - received_at).total_seconds()
    if abs(skew_s) > app[SETTINGS].fsi_inf_time_skew_s:
        raise GatewayError(ErrorCode.FSI_INF_TIME_STALE, f"inf_time is {skew_s:+.0f} s off")
    if not isinstance(env.input, str):
        raise _refuse_input("input must be the Base64 of the SM4-encrypted input")
    try:
        sealed = base64.b64decode(env.input, validate=True)
        text = pkcs7_unpad(sm4_ecb_decrypt(keys.sm4_key, sealed))
    except (binascii.Error, ValueError, CryptoError):
        raise _refuse_input("input does not decrypt under this institution's SM4 key") from None
    try:
        signature = base64.b64decode(env.cainfo, validate=True)
        sm2_verify(keys.his_public_key, text, signature)
    except (binascii.Error, ValueError, SignatureInvalid, CryptoError):
        raise GatewayError(
            ErrorCode.FSI_CAINFO_INVALID, "cainfo is not the HIS's SM2 signature of the input"
        ) from None
    try:
        parsed = json.loads(text, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _refuse_input("the decrypted input is not JSON") from None
    if not isinstance(parsed, dict):
        raise _refuse_input("the decrypted input must be a JSON object")
    return parsed


def open_input(
    app: web.Application,
    env: Envelope,
    keys: InstitutionKeys | None,
    received_at: dt.datetime,
) -> Mapping[str, Any]:
    """The envelope's input, opened under the institution's profile."""
    profile = keys.profile if keys is not None else app[SETTINGS].fsi_default_profile
    if profile == SM2_SM4:
        assert keys is not None
        return _sm2_sm4(app, env, keys, received_at)
    if profile != PLAIN:
        raise GatewayError(
            ErrorCode.FSI_INSTITUTION_UNKNOWN, "this institution is not enabled on this door"
        )
    if not isinstance(env.input, dict):
        raise GatewayError(ErrorCode.FSI_ENVELOPE_INVALID, "input must be a JSON object")
    return env.input
