"""DEMO ONLY: the deterministic demo world of cardholders, cards and the card PKI.

Everything here derives from a seed by HMAC-SM3, so the gateway (which loads the registry), the
terminal SDK's ``demo`` command and the load tests (which act as demo card M) agree without
sharing a file. Production provisions real keys in an HSM and never uses this module; a seed
that is public gives away every demo key.

Demo card ``m`` belongs to holder ``m // 2``: even ``m`` is the holder's third-generation card,
odd ``m`` the holder's second-generation (legacy) card. The holder's number modulo 10 decides
the registry states, so every state of DESIGN §4 exists in bulk:

====  ==========================  ===========================
h%10  third-generation card        legacy card
====  ==========================  ===========================
0-4   active                       superseded by the new card
5     delivered, not activated     active (not yet superseded)
6     lost                         superseded
7     expired                      superseded
8     none (unknown to registry)   active
9     active                       lost
====  ==========================  ===========================

>>> card = demo_card("seed", 0)
>>> card.generation, card.state, card.holder_index
(3, 'active', 0)
>>> demo_card("seed", 1).state
'superseded'
>>> demo_card("seed", 0).card_sn == demo_card("seed", 0).card_sn
True
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from sscard.certs import Certificate, build_card_certificate, build_issuing_ca, build_root_ca
from sscard.crypto import SM2PrivateKey, curve, hmac_sm3
from sscard.layout import (
    RID,
    CardIdentity,
    CardSn,
    Gender,
    HolderData,
    IssuerData,
    citizen_id_check_digit,
)
from sscard.terminal_auth import demo_terminal_secret

DEFAULT_DEMO_SEED: Final = "ssc-demo-2019"
DEMO_HOLDER_COUNT: Final = 20_000
DEMO_CARD_COUNT: Final = DEMO_HOLDER_COUNT * 2
DEMO_PIN: Final = "123456"  # every demo card; real PINs are never stored anywhere
DEMO_AREA_CODE: Final = "310000"

# Registry states as plain strings: sscard imports nothing of the project, and these are the
# values of issuance.store.CardState.
ACTIVE, DELIVERED, LOST, EXPIRED, SUPERSEDED = (
    "active",
    "delivered",
    "lost",
    "expired",
    "superseded",
)
ABSENT: Final = "absent"  # a card the registry has never heard of

_SCENARIOS: Final[dict[int, tuple[str, str]]] = {
    0: (ACTIVE, SUPERSEDED),
    1: (ACTIVE, SUPERSEDED),
    2: (ACTIVE, SUPERSEDED),
    3: (ACTIVE, SUPERSEDED),
    4: (ACTIVE, SUPERSEDED),
    5: (DELIVERED, ACTIVE),
    6: (LOST, SUPERSEDED),
    7: (EXPIRED, SUPERSEDED),
    8: (ABSENT, ACTIVE),
    9: (ACTIVE, LOST),
}

_SURNAMES: Final = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN: Final = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国红梅文"
_DISTRICTS: Final = ("310101", "310104", "310105", "310106", "310107", "310109", "310110",
                     "310112", "310113", "310115", "310116", "310117")  # fmt: skip

CA_VALID_FROM: Final = dt.datetime(2018, 1, 1, tzinfo=dt.UTC)
CA_VALID_UNTIL: Final = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)
ROOT_CA_NAME: Final = (("C", "CN"), ("O", "SSC Demo"), ("CN", "SSC Demo Root CA (DEMO ONLY)"))
ISSUING_CA_NAME: Final = (
    ("C", "CN"),
    ("O", "SSC Demo"),
    ("CN", "Shanghai SSC Demo Issuing CA (DEMO ONLY)"),
)


def _seed(seed: str | bytes) -> bytes:
    data = seed.encode() if isinstance(seed, str) else seed
    if not data:
        raise ValueError("demo seed must not be empty")
    return data


def _derive(seed: str | bytes, label: str) -> bytes:
    return hmac_sm3(_seed(seed), label.encode())


def _derive_key(seed: str | bytes, label: str) -> SM2PrivateKey:
    # Two HMAC blocks then a reduction: bias below 2^-250, so d is as good as uniform.
    wide = _derive(seed, label + "/0") + _derive(seed, label + "/1")
    return SM2PrivateKey.from_int(int.from_bytes(wide, "big") % (curve.N - 2) + 1)


def root_ca_key(seed: str | bytes) -> SM2PrivateKey:
    return _derive_key(seed, "root-ca-key")


def issuing_ca_key(seed: str | bytes) -> SM2PrivateKey:
    return _derive_key(seed, "issuing-ca-key")


def legacy_master_key(seed: str | bytes) -> bytes:
    """The issuer master key that second-generation card keys are diversified from (16 bytes)."""
    return _derive(seed, "legacy-master-key")[:16]


@dataclass(frozen=True, slots=True)
class DemoHolder:
    index: int
    citizen_id: str
    name: str
    gender: Gender
    birth_date: dt.date
    area_code: str

    def __repr__(self) -> str:  # personal data stays masked even in a demo
        return f"DemoHolder(index={self.index})"


@dataclass(frozen=True, slots=True)
class DemoCard:
    """Demo card ``number``: its identity (EF05/EF06), registry state and key material."""

    number: int
    holder: DemoHolder
    identity: CardIdentity
    state: str
    superseded_by: str | None  # card_sn hex of the newer card, for a superseded legacy card

    @property
    def generation(self) -> int:
        return 3 if self.number % 2 == 0 else 2

    @property
    def holder_index(self) -> int:
        return self.holder.index

    @property
    def card_sn(self) -> str:
        return self.identity.card_sn.hex

    def __repr__(self) -> str:
        return f"DemoCard(number={self.number}, generation={self.generation}, state={self.state!r})"


def demo_holder(seed: str | bytes, h: int) -> DemoHolder:
    if not 0 <= h < DEMO_HOLDER_COUNT:
        raise ValueError(f"demo holder out of range 0..{DEMO_HOLDER_COUNT - 1}: {h}")
    r = _derive(seed, f"holder:{h}")
    # Birth dates span about 88 years before 2022 (pupils, employees and retirees all occur).
    # The day number modulo 40 carries h // 500 and the 3-digit sequence carries h % 500, so
    # every holder gets a distinct citizen id whatever the random part.
    days = (int.from_bytes(r[:4], "big") % 800) * 40 + h // 500
    birth = dt.date(1934, 1, 1) + dt.timedelta(days=days)
    gender = Gender.MALE if r[4] % 2 else Gender.FEMALE
    area = _DISTRICTS[r[5] % len(_DISTRICTS)]
    seq = (h % 500) * 2 + (1 if gender is Gender.MALE else 0)  # odd for men (GB 11643)
    first17 = f"{area}{birth:%Y%m%d}{seq:03d}"
    name = _SURNAMES[r[6] % len(_SURNAMES)] + _GIVEN[r[7] % len(_GIVEN)]
    if r[8] % 2:
        name += _GIVEN[r[9] % len(_GIVEN)]
    return DemoHolder(h, first17 + citizen_id_check_digit(first17), name, gender, birth, area)


def demo_card_sn(h: int, generation: int) -> CardSn:
    # 8 unique bytes: generation, then the holder number; never F-padded.
    unique = bytes([generation]) + h.to_bytes(7, "big")
    area = bytes.fromhex(DEMO_AREA_CODE)
    return CardSn(area + RID + unique)


def demo_card(seed: str | bytes, m: int) -> DemoCard:
    if not 0 <= m < DEMO_CARD_COUNT:
        raise ValueError(f"demo card out of range 0..{DEMO_CARD_COUNT - 1}: {m}")
    h, generation = m // 2, (3 if m % 2 == 0 else 2)
    holder = demo_holder(seed, h)
    new_state, legacy_state = _SCENARIOS[h % 10]
    state = new_state if generation == 3 else legacy_state
    if generation == 3:
        issued = (
            dt.date(2016, 1, 4) if state == EXPIRED else dt.date(2019, 1, 2) + dt.timedelta(h % 700)
        )
        # Ten years, clamped to day 28 so that a 29 February issue date has an expiry.
        ten_years = dt.date(issued.year + 10, issued.month, min(issued.day, 28))
        expires = dt.date(2026, 1, 4) if state == EXPIRED else ten_years
        card_type, spec = "3", "3.00"
    else:
        issued = dt.date(2009, 6, 1) + dt.timedelta(h % 1500)
        expires = dt.date(2029, 12, 31)
        card_type, spec = "2", "2.00"
    issuer = IssuerData(
        card_sn=demo_card_sn(h, generation),
        card_type=card_type,
        spec_version=spec,
        init_org="31" + "0" * 22,
        issue_date=issued,
        expiry_date=expires,
        card_no=f"{'S' if generation == 3 else 'L'}{h:08d}",
    )
    holder_data = HolderData(
        citizen_id=holder.citizen_id,
        name=holder.name,
        gender=holder.gender,
        nation="01",
        birth_date=holder.birth_date,
    )
    superseded_by = demo_card_sn(h, 3).hex if state == SUPERSEDED else None
    return DemoCard(m, holder, CardIdentity.from_parts(issuer, holder_data), state, superseded_by)


def demo_card_key(seed: str | bytes, m: int) -> SM2PrivateKey:
    """The SM2 signing key of third-generation demo card ``m`` (even ``m`` only)."""
    if m % 2:
        raise ValueError(f"demo card {m} is a legacy card: it has no SM2 key")
    return _derive_key(seed, f"card-key:{m}")


def find_demo_cards(
    seed: str | bytes, *, generation: int, state: str, count: int = 1, start: int = 0
) -> list[DemoCard]:
    """The first ``count`` demo cards of a generation in a registry state, from card ``start``.

    States repeat every 20 cards, so this reads at most ``20 * count`` cards.
    """
    found: list[DemoCard] = []
    first = start + (start % 2 != (0 if generation == 3 else 1))
    for m in range(first, DEMO_CARD_COUNT, 2):
        h = m // 2
        if _SCENARIOS[h % 10][0 if generation == 3 else 1] != state:
            continue
        found.append(demo_card(seed, m))
        if len(found) == count:
            break
    return found


@dataclass(frozen=True, slots=True)
class DemoPki:
    """The demo root and issuing CA certificates with their keys.

    Certificates are SM2-signed with a fresh nonce, so two tools building the PKI get different
    bytes for the same names and keys; chains still verify across them because verification
    depends on names, key ids and keys only.
    """

    root: Certificate
    issuing: Certificate
    root_key: SM2PrivateKey
    issuing_key: SM2PrivateKey


def demo_pki(seed: str | bytes) -> DemoPki:
    root_key, ca_key = root_ca_key(seed), issuing_ca_key(seed)
    root = build_root_ca(
        root_key, ROOT_CA_NAME, not_before=CA_VALID_FROM, not_after=CA_VALID_UNTIL, serial_number=1
    )
    issuing = build_issuing_ca(
        ca_key.public_key,
        ISSUING_CA_NAME,
        issuer=root,
        issuer_key=root_key,
        not_before=CA_VALID_FROM,
        not_after=CA_VALID_UNTIL,
        serial_number=2,
    )
    return DemoPki(root, issuing, root_key, ca_key)


def demo_card_certificate(seed: str | bytes, m: int, pki: DemoPki) -> Certificate:
    """The signing certificate (EF 0018) of third-generation demo card ``m``.

    The common name is the card number, not the holder's name: the certificate is read by every
    terminal and should not carry personal data.
    """
    card = demo_card(seed, m)
    key = demo_card_key(seed, m)
    issued, expires = card.identity.issue_date, card.identity.expiry_date
    return build_card_certificate(
        key.public_key,
        card_sn=card.card_sn,
        common_name=card.identity.card_no,
        organization="Shanghai SSC (DEMO ONLY)",
        issuer=pki.issuing,
        issuer_key=pki.issuing_key,
        not_before=dt.datetime(issued.year, issued.month, issued.day, tzinfo=dt.UTC),
        not_after=dt.datetime(expires.year, expires.month, expires.day, tzinfo=dt.UTC),
        serial_number=m + 1000,
    )


# ---------------------------------------------------------------------------------------------
# DEMO ONLY. Institutions that issue cards (no settlement): the 11 service banks, employers,
# one community centre per demo district, online service, the 962222 hotline and the card
# centre, two terminals each. Secrets follow sscard.terminal_auth's demo rule
# (HMAC-SM3(seed, b"terminal-secret:" + terminal_id)), so a tool acts as "demo bank terminal
# n" with ``demo_issuing_terminal(seed, "service_bank", n)`` and no file from the gateway.
# ---------------------------------------------------------------------------------------------

# The 11 service banks, in the seed's order (codes as in issuance/config/programme_2019.toml).
DEMO_SERVICE_BANKS: Final = (
    "BOSH", "SPDB", "SRCB", "ICBC", "ABC", "CCB", "PSBC", "BOCOM", "BOC", "CMB", "CEB",
)  # fmt: skip
DEMO_EMPLOYER_COUNT: Final = 20
DEMO_ISSUER_TERMINALS_PER_INSTITUTION: Final = 2

# kind (gateway institutions.kind) -> (institution code prefix, issuance role)
_ISSUER_KINDS: Final = {
    "service_bank": ("B", "bank"),
    "employer": ("E", "employer"),
    "community_centre": ("C", "community"),
    "online_service": ("O", "online"),
    "hotline": ("L", "hotline"),
    "card_centre": ("X", "centre"),
}


@dataclass(frozen=True, slots=True)
class DemoIssuer:
    """An issuing institution: its gateway row (code, name, kind) and its issuance role."""

    institution_code: str
    name: str
    kind: str  # gateway institutions.kind
    role: str  # issuance_agents.role
    bank_code: str | None = None  # a bank's own code; an employer's partner bank
    employer_code: str | None = None
    area_code: str | None = None  # a community centre's district


def _issuer_code(kind: str, index: int) -> str:
    return f"{_ISSUER_KINDS[kind][0]}{DEMO_AREA_CODE}{index + 1:05d}"


def demo_issuers(kind: str | None = None) -> tuple[DemoIssuer, ...]:
    """DEMO ONLY. Every issuing institution (or those of one ``kind``), in a fixed order.

    >>> [i.institution_code for i in demo_issuers("service_bank")][3:4]
    ['B31000000004']
    >>> demo_issuers("service_bank")[3].bank_code, demo_issuers("hotline")[0].role
    ('ICBC', 'hotline')
    """
    issuers: list[DemoIssuer] = []
    for i, bank in enumerate(DEMO_SERVICE_BANKS):
        code = _issuer_code("service_bank", i)
        issuers.append(DemoIssuer(code, f"演示服务银行 {bank}", "service_bank", "bank", bank))
    for i in range(DEMO_EMPLOYER_COUNT):
        issuers.append(
            DemoIssuer(
                _issuer_code("employer", i),
                f"演示单位{i + 1:02d} Demo Employer {i + 1}",
                "employer",
                "employer",
                bank_code=DEMO_SERVICE_BANKS[i % len(DEMO_SERVICE_BANKS)],
                employer_code=f"EMP{i + 1:05d}",
            )
        )
    for i, district in enumerate(_DISTRICTS):
        code = _issuer_code("community_centre", i)
        name = f"演示社区事务受理中心 {district}"
        issuers.append(DemoIssuer(code, name, "community_centre", "community", area_code=district))
    online = _issuer_code("online_service", 0)
    issuers.append(DemoIssuer(online, "演示网上服务", "online_service", "online"))
    issuers.append(DemoIssuer(_issuer_code("hotline", 0), "演示热线 962222", "hotline", "hotline"))
    issuers.append(
        DemoIssuer(_issuer_code("card_centre", 0), "演示市民服务信息中心", "card_centre", "centre")
    )
    return tuple(i for i in issuers if kind is None or i.kind == kind)


def demo_community_centre(area_code: str) -> DemoIssuer:
    """DEMO ONLY. The demo community centre of a district (every demo holder's district has one);
    the natural backup centre (备用社区受理网点) of a holder registered there."""
    for issuer in demo_issuers("community_centre"):
        if issuer.area_code == area_code:
            return issuer
    raise ValueError(f"no demo community centre in district {area_code}")


def demo_issuer_terminal_id(institution_code: str, k: int = 0) -> str:
    """DEMO ONLY. Terminal ``k`` (0 or 1) of an issuing institution: ``<code>-01``, ``-02``."""
    if not 0 <= k < DEMO_ISSUER_TERMINALS_PER_INSTITUTION:
        raise ValueError(f"demo issuing terminal number out of range: {k}")
    return f"{institution_code}-{k + 1:02d}"


def demo_issuing_terminal(seed: str | bytes, kind: str, n: int) -> tuple[str, bytes]:
    """DEMO ONLY. ``(terminal_id, secret)`` of demo terminal ``n`` of the issuing institutions of
    ``kind``: terminal ``n % 2`` of institution ``n // 2`` (``demo_issuers(kind)`` order)."""
    issuers = demo_issuers(kind)
    per = DEMO_ISSUER_TERMINALS_PER_INSTITUTION
    if not 0 <= n < len(issuers) * per:
        raise ValueError(f"demo {kind} terminal number out of range: {n}")
    terminal_id = demo_issuer_terminal_id(issuers[n // per].institution_code, n % per)
    return terminal_id, demo_terminal_secret(seed, terminal_id)
