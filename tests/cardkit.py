"""One test identity and one throwaway card PKI, shared by the card, SDK and pcscd tests.

Not the demo world (sscard.demo): these tests want a fresh root per module, fixed dates and a
card certificate they can tamper with, independent of any seed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sscard.certs import Certificate, build_card_certificate, build_issuing_ca, build_root_ca
from sscard.crypto import SM2PrivateKey
from sscard.layout import CardIdentity, CardSn, Gender, HolderData, IssuerData

PIN = "802613"
WRONG_PIN = "802614"
CARD_SN = "310000D1560000050123456789ABCDEF"
LEGACY_SN = "310000D15600000500000000000A1B2C"
MASTER_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
CITIZEN_ID = "11010519491231002X"
NAME = "张三"
CARD_NO = "A12345678"
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
T1 = dt.datetime(2034, 1, 1, tzinfo=dt.UTC)


def make_identity(card_sn: str, spec_version: str, *, name: str = NAME) -> CardIdentity:
    issuer = IssuerData(
        card_sn=CardSn.from_hex(card_sn),
        card_type="3",
        spec_version=spec_version,
        init_org="31000000000000000000000A",
        issue_date=dt.date(2019, 1, 15),
        expiry_date=dt.date(2029, 1, 15),
        card_no=CARD_NO,
    )
    holder = HolderData(
        citizen_id=CITIZEN_ID,
        name=name,
        gender=Gender.MALE,
        nation="01",
        birth_date=dt.date(1949, 12, 31),
    )
    return CardIdentity.from_parts(issuer, holder)


@dataclass(frozen=True)
class Pki:
    root: Certificate
    ca: Certificate
    card_key: SM2PrivateKey
    card_cert: Certificate


def make_pki(card_sn: str = CARD_SN) -> Pki:
    """A fresh root → issuing CA → card certificate chain valid from T0 to T1."""
    root_key, ca_key, card_key = (SM2PrivateKey.generate() for _ in range(3))
    root = build_root_ca(root_key, [("C", "CN"), ("CN", "Test Root")], not_before=T0, not_after=T1)
    ca = build_issuing_ca(
        ca_key.public_key,
        [("C", "CN"), ("CN", "Test Issuing CA")],
        issuer=root,
        issuer_key=root_key,
        not_before=T0,
        not_after=T1,
    )
    card_cert = build_card_certificate(
        card_key.public_key,
        card_sn=card_sn,
        common_name=CARD_NO,
        issuer=ca,
        issuer_key=ca_key,
        not_before=T0,
        not_after=T1,
    )
    return Pki(root, ca, card_key, card_cert)
