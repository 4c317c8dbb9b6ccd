"""The software cards, driven by APDU bytes as a reader would drive a real card.

Commands are built with :mod:`sscard.apdu` (the reader side) where a builder exists, and by hex
where the point is a malformed or unusual command, so both sides are checked against each other.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from cardkit import (
    CARD_SN,
    CITIZEN_ID,
    LEGACY_SN,
    MASTER_KEY,
    NAME,
    PIN,
    WRONG_PIN,
    make_identity,
    make_pki,
)

from sscard import apdu, layout
from sscard.certs import load_der
from sscard.crypto import (
    SignatureInvalid,
    SM2PrivateKey,
    get_backend,
    sm2_verify,
)
from sscard.softcard import (
    LEGACY_CRYPTOGRAM_LEN,
    LegacyCard,
    ThirdGenCard,
    decode_sign_public_key_file,
    diversify_card_key,
    encode_pin_block,
    encode_sign_public_key_file,
    legacy_cryptogram,
    make_legacy_card,
    make_third_gen_card,
)
from sscard.softcard._command import parse_command
from sscard.vpcd import (
    MAX_PAYLOAD_LEN,
    FrameDecoder,
    VirtualCard,
    VpcdControl,
    VpcdProtocolError,
    encode_frame,
    handle_message,
)

TERMINAL_ID = "HIS-0001"


@pytest.fixture(scope="module")
def pki() -> tuple[SM2PrivateKey, bytes, bytes]:
    """(card key, card certificate DER, issuing CA certificate DER)."""
    made = make_pki()
    return made.card_key, made.card_cert.der, made.ca.der


def seeded_rng(seed: int = 7) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


@pytest.fixture
def card(pki: tuple[SM2PrivateKey, bytes, bytes]) -> ThirdGenCard:
    key, cert_der, _ = pki
    return make_third_gen_card(make_identity(CARD_SN, "3.00"), key, cert_der, PIN, rng=seeded_rng())


@pytest.fixture
def legacy() -> LegacyCard:
    return make_legacy_card(make_identity(LEGACY_SN, "2.00"), MASTER_KEY, PIN, rng=seeded_rng())


def send(card: VirtualCard, command: apdu.CommandApdu | str) -> tuple[bytes, int]:
    raw = command.to_bytes() if isinstance(command, apdu.CommandApdu) else bytes.fromhex(command)
    response = card.transmit(raw)
    assert len(response) >= 2
    return response[:-2], int.from_bytes(response[-2:], "big")


def ok(card: VirtualCard, command: apdu.CommandApdu | str) -> bytes:
    data, sw = send(card, command)
    assert sw == 0x9000, f"{sw:04X}"
    return data


def sw_of(card: VirtualCard, command: apdu.CommandApdu | str) -> int:
    return send(card, command)[1]


def read_binary_all(card: VirtualCard) -> bytes:
    """Read the current transparent EF in 256-byte pieces until the card says 6B00."""
    content = b""
    while True:
        data, sw = send(card, apdu.read_binary(len(content), 0))
        if sw == 0x6B00:
            return content
        assert sw == 0x9000, f"{sw:04X}"
        content += data
        if len(data) < 256:
            return content


def enter_cert_adf(card: VirtualCard) -> None:
    ok(card, apdu.select_aid(layout.PKI_AID))
    ok(card, apdu.select_aid(layout.CERT_ADF_AID))


# -- ATR and APDU framing ---------------------------------------------------------------------


def test_atr_offers_t1_with_a_correct_check_byte(card: ThirdGenCard) -> None:
    atr = card.atr
    assert atr[:4] == bytes.fromhex("3B8C8001")
    assert atr[4:-1] == b"SH-SSC3-SOFT"
    check = 0
    for byte in atr[1:]:
        check ^= byte
    assert check == 0  # TCK makes the XOR of T0..TCK zero


def test_t0_card_offers_t0_only(pki: tuple[SM2PrivateKey, bytes, bytes]) -> None:
    key, cert_der, _ = pki
    t0 = make_third_gen_card(
        make_identity(CARD_SN, "3.00"), key, cert_der, PIN, t0_get_response=True
    )
    assert t0.atr == bytes.fromhex("3B0C") + b"SH-SSC3-SOFT"


@pytest.mark.parametrize(
    ("hex_apdu", "expected_sw"),
    [
        ("00A404", 0x6700),  # shorter than a header
        ("00A4040005D1560000", 0x6700),  # Lc says 5, 3 bytes follow
        ("00B0000000000100", 0x6700),  # extended length: the card supports short APDUs only
        ("80A4040000", 0x6E00),  # proprietary class
        ("0CB0000000", 0x6E00),  # secure messaging
        ("00CA9F7F00", 0x6D00),  # GET DATA: not on this card
        ("00E0000000", 0x6D00),
    ],
)
def test_malformed_and_unsupported_commands(
    card: ThirdGenCard, hex_apdu: str, expected_sw: int
) -> None:
    assert sw_of(card, hex_apdu) == expected_sw


def test_parse_command_cases() -> None:
    assert parse_command(bytes.fromhex("00A40000")).le is None
    assert parse_command(bytes.fromhex("00B0000010")).le == 0x10
    case3 = parse_command(bytes.fromhex("00A4000002EF05"))
    assert (case3.data, case3.le) == (bytes.fromhex("EF05"), None)
    case4 = parse_command(bytes.fromhex("0088000002AABB00"))
    assert (case4.data, case4.le) == (bytes.fromhex("AABB"), 256)
    assert "123456" not in repr(parse_command(apdu.verify_pin(PIN).to_bytes()))


# -- SELECT --------------------------------------------------------------------------------------


def test_select_ssse_returns_fci(card: ThirdGenCard) -> None:
    fci = ok(card, apdu.select_aid(layout.SSSE_AID))
    assert fci == bytes([0x6F, 0x11, 0x84, 0x0F]) + layout.SSSE_AID
    assert ok(card, "00A4040C0F" + layout.SSSE_AID.hex()) == b""  # P2 0C: no FCI


@pytest.mark.parametrize(
    ("hex_apdu", "expected_sw"),
    [
        ("00A4040006D15600000599", 0x6A82),  # unknown AID
        ("00A4040005D156000005", 0x6A82),  # a prefix is not a match
        ("00A40400", 0x6700),  # no AID
        ("00A4080002EF05", 0x6A86),  # select by path: unsupported
        ("00A4040102EF05", 0x6A86),  # P2 01 (last occurrence)
        ("00A4000001EF", 0x6700),  # FID of one byte
        ("00A4000002EF05", 0x6A82),  # EF05 is not in the MF
        ("00A4020002EF05", 0x6A82),
    ],
)
def test_select_errors(card: ThirdGenCard, hex_apdu: str, expected_sw: int) -> None:
    assert sw_of(card, hex_apdu) == expected_sw


def test_cert_adf_needs_the_pki_application_first(card: ThirdGenCard) -> None:
    assert sw_of(card, apdu.select_aid(layout.CERT_ADF_AID)) == 0x6A82
    ok(card, apdu.select_aid(layout.PKI_AID))
    ok(card, apdu.select_aid(layout.CERT_ADF_AID))
    ok(card, apdu.select_aid(layout.CERT_ADF_AID))  # re-selecting itself (a sibling search)
    ok(card, apdu.select_aid(layout.SSSE_AID))  # another application from anywhere


def test_select_mf_and_back(card: ThirdGenCard) -> None:
    ok(card, apdu.select_aid(layout.SSSE_AID))
    ok(card, apdu.select_file(bytes.fromhex("EF05")))
    assert ok(card, "00A40000023F00") == b""
    assert sw_of(card, apdu.read_record(1)) == 0x6986  # selecting a DF forgets the EF


# -- SSSE: EF05 / EF06 -------------------------------------------------------------------------


def read_ef05(card: VirtualCard) -> dict[int, bytes]:
    ok(card, apdu.select_aid(layout.SSSE_AID))
    ok(card, apdu.select_file(layout.EF05_FID))
    return {tag: ok(card, apdu.read_record(tag)) for tag in layout.EF05_TAGS}


def test_ef05_reads_by_record_number_after_select(card: ThirdGenCard) -> None:
    assert layout.decode_ef05(read_ef05(card)) == card.identity.issuer
    # DOMAIN §2 spelling: 00B2 rr 04 00
    assert ok(card, "00B2030400") == b"\x03\x043.00"


def test_ef06_reads_by_record_number_and_by_tag(card: ThirdGenCard) -> None:
    ok(card, apdu.select_aid(layout.SSSE_AID))
    ok(card, apdu.select_file(layout.EF06_FID))
    by_number = {
        tag: ok(card, apdu.read_record(n)) for tag, n in layout.EF06_RECORD_NUMBERS.items()
    }
    by_tag = {tag: ok(card, apdu.read_record(tag, by_identifier=True)) for tag in layout.EF06_TAGS}
    assert by_number == by_tag
    assert layout.decode_ef06(by_tag) == card.identity.holder
    assert sw_of(card, apdu.read_record(3)) == 0x6A83  # name extension: not on this card
    assert sw_of(card, apdu.read_record(0x0C, by_identifier=True)) == 0x6A83


def test_records_by_sfi_without_select(card: ThirdGenCard) -> None:
    ok(card, apdu.select_aid(layout.SSSE_AID))
    record = ok(card, apdu.read_record(1, sfi=5))
    assert (
        layout.decode_ef05(
            {1: record, **{t: ok(card, apdu.read_record(t)) for t in layout.EF05_TAGS[1:]}}
        )
        == card.identity.issuer
    )  # the SFI read made EF05 current
    assert ok(card, apdu.read_record(0x08, sfi=6, by_identifier=True))[:2] == b"\x08\x12"
    assert sw_of(card, apdu.read_record(1, sfi=7)) == 0x6A82


def test_read_record_wrong_le_answers_6cxx_then_exact_le_works(card: ThirdGenCard) -> None:
    ok(card, apdu.select_aid(layout.SSSE_AID))
    ok(card, apdu.select_file(layout.EF05_FID))
    response = apdu.ResponseApdu.from_bytes(card.transmit(bytes.fromhex("00B2010405")))
    assert response.wrong_le_exact == 18  # tag, length, 16 bytes of card_sn
    exact = ok(card, apdu.read_record(1).with_le(response.wrong_le_exact))
    assert exact[2:] == bytes.fromhex(CARD_SN)


@pytest.mark.parametrize(
    ("hex_apdu", "expected_sw"),
    [
        ("00B2010400", 0x6986),  # no current EF
        ("00B2000400", 0x6A86),  # P1 00: current record, unsupported
        ("00B2010600", 0x6A86),  # P2 mode 110: reserved
        ("00B201FC00", 0x6A86),  # SFI 31
    ],
)
def test_read_record_errors_in_ssse(card: ThirdGenCard, hex_apdu: str, expected_sw: int) -> None:
    ok(card, apdu.select_aid(layout.SSSE_AID))
    assert sw_of(card, hex_apdu) == expected_sw


def test_read_record_without_le_is_wrong_length(card: ThirdGenCard) -> None:
    ok(card, apdu.select_aid(layout.SSSE_AID))
    ok(card, apdu.select_file(layout.EF05_FID))
    assert sw_of(card, "00B20104") == 0x6700
    assert sw_of(card, "00B2080400") == 0x6A83
    assert sw_of(card, apdu.read_binary(0, 0)) == 0x6981  # records cannot be read as bytes


# -- PKI: EF 0012 / 0018 / 0019 ------------------------------------------------------------------


def test_public_key_file(card: ThirdGenCard) -> None:
    enter_cert_adf(card)
    ok(card, apdu.select_file(layout.EF_SIGN_PUBLIC_KEY_FID))
    content = ok(card, apdu.read_binary(0, 0))
    assert len(content) == layout.SIGN_PUBLIC_KEY_LEN
    assert content[:2] == b"\x86\x40"
    assert decode_sign_public_key_file(content) == card.public_key
    assert encode_sign_public_key_file(card.public_key) == content


def test_certificate_reads_in_pieces_and_parses(
    card: ThirdGenCard, pki: tuple[SM2PrivateKey, bytes, bytes]
) -> None:
    _, cert_der, _ = pki
    assert len(cert_der) > 256  # so the test covers more than one READ BINARY
    enter_cert_adf(card)
    ok(card, apdu.select_file(layout.EF_SIGN_CERT_FID))
    der = read_binary_all(card)
    assert der == cert_der
    cert = load_der(der)
    assert cert.public_key == card.public_key
    assert cert.card_sn == CARD_SN


def test_read_binary_le_and_offset_rules(
    card: ThirdGenCard, pki: tuple[SM2PrivateKey, bytes, bytes]
) -> None:
    _, cert_der, _ = pki
    size = len(cert_der)
    enter_cert_adf(card)
    ok(card, apdu.select_file(layout.EF_SIGN_CERT_FID))
    assert ok(card, apdu.read_binary(0x10, 0x20)) == cert_der[0x10:0x30]
    # Le larger than what is left: 6Cxx gives the exact count
    tail = size - 10
    assert sw_of(card, apdu.read_binary(tail, 0x20)) == 0x6C0A
    assert ok(card, apdu.read_binary(tail, 0x0A)) == cert_der[tail:]
    assert ok(card, apdu.read_binary(tail, 0)) == cert_der[tail:]  # Le 00: whatever is left
    assert sw_of(card, apdu.read_binary(size, 0)) == 0x6B00
    assert sw_of(card, apdu.read_binary(0x7FFF, 1)) == 0x6B00
    assert sw_of(card, "00B00000") == 0x6700  # no Le
    assert sw_of(card, apdu.read_record(1)) == 0x6981  # a transparent EF has no records
    assert sw_of(card, apdu.read_binary(0, 0, sfi=0x18)) == 0x6A82  # PKI EFs have no SFI
    assert sw_of(card, "00B0A00000") == 0x6A86  # P1 with bits 7-6 = 01 after the SFI flag


def test_encryption_certificate_only_when_given(pki: tuple[SM2PrivateKey, bytes, bytes]) -> None:
    key, cert_der, ca_der = pki
    without = make_third_gen_card(make_identity(CARD_SN, "3.00"), key, cert_der, PIN)
    enter_cert_adf(without)
    assert sw_of(without, apdu.select_file(layout.EF_ENC_CERT_FID)) == 0x6A82
    with_enc = make_third_gen_card(
        make_identity(CARD_SN, "3.00"), key, cert_der, PIN, enc_cert_der=ca_der
    )
    enter_cert_adf(with_enc)
    ok(with_enc, apdu.select_file(layout.EF_ENC_CERT_FID))
    assert read_binary_all(with_enc) == ca_der


# -- PIN -------------------------------------------------------------------------------------


def test_pin_block_matches_the_reader_encoding() -> None:
    for pin in ("1234", "12345", "123456", "000000000000"):
        assert encode_pin_block(pin) == apdu.encode_pin(pin)
    for bad in ("123", "1234567890123", "12a4", "１２３４"):
        with pytest.raises(ValueError, match="PIN"):
            encode_pin_block(bad)


def test_pin_right(card: ThirdGenCard) -> None:
    assert sw_of(card, "0020000000"[:8]) == 0x63C3  # empty VERIFY: tries left, none spent
    ok(card, apdu.verify_pin(PIN))
    assert card.pin_verified
    assert sw_of(card, "00200000") == 0x9000  # empty VERIFY once verified
    assert card.pin_tries_left == 3


def test_pin_wrong_counts_down_and_right_pin_restores(card: ThirdGenCard) -> None:
    assert sw_of(card, apdu.verify_pin(WRONG_PIN)) == 0x63C2
    assert sw_of(card, apdu.verify_pin(WRONG_PIN)) == 0x63C1
    assert sw_of(card, "00200000") == 0x63C1
    ok(card, apdu.verify_pin(PIN))
    assert card.pin_tries_left == 3
    assert sw_of(card, apdu.verify_pin(WRONG_PIN)) == 0x63C2
    assert not card.pin_verified  # a wrong PIN also withdraws an earlier success


def test_pin_blocks_after_three_wrong_tries(card: ThirdGenCard) -> None:
    statuses = [sw_of(card, apdu.verify_pin(WRONG_PIN)) for _ in range(3)]
    assert statuses == [0x63C2, 0x63C1, 0x63C0]
    assert sw_of(card, apdu.verify_pin(PIN)) == 0x6983  # even the right PIN
    assert sw_of(card, "00200000") == 0x6983
    card.reset()
    assert sw_of(card, apdu.verify_pin(PIN)) == 0x6983  # the counter is persistent
    with pytest.raises(apdu.PinBlocked):
        apdu.check_sw(sw_of(card, apdu.verify_pin(PIN)))


def test_pin_malformed_spends_no_try(card: ThirdGenCard) -> None:
    assert sw_of(card, "002000000112") == 0x6700  # one byte: 2 digits
    assert sw_of(card, "00200000071234567890123F") == 0x6700  # 7 bytes: more than 12 digits
    assert sw_of(card, apdu.verify_pin(PIN, reference=0x81)) == 0x6A88
    assert sw_of(card, "0020010003123456") == 0x6A86
    assert card.pin_tries_left == 3


def test_odd_length_pin(pki: tuple[SM2PrivateKey, bytes, bytes]) -> None:
    key, cert_der, _ = pki
    five = make_third_gen_card(make_identity(CARD_SN, "3.00"), key, cert_der, "12345")
    ok(five, apdu.verify_pin("12345"))
    assert sw_of(five, apdu.verify_pin("123450")) == 0x63C2  # 123450 is not 12345F


def test_reset_forgets_verification(card: ThirdGenCard) -> None:
    ok(card, apdu.verify_pin(PIN))
    card.reset()
    assert not card.pin_verified
    assert sw_of(card, "00200000") == 0x63C3


# -- GET CHALLENGE --------------------------------------------------------------------------------


def test_get_challenge_lengths(card: ThirdGenCard, legacy: LegacyCard) -> None:
    expected = random.Random(7).randbytes(16)
    assert ok(card, apdu.get_challenge(16)) == expected
    assert card.last_challenge == expected
    assert len(ok(card, apdu.get_challenge(8))) == 8
    assert len(ok(card, apdu.get_challenge(4))) == 4
    assert sw_of(card, apdu.get_challenge(10)) == 0x6700
    assert sw_of(card, "00840000") == 0x6700
    assert sw_of(card, "0084010010") == 0x6A86
    assert len(ok(legacy, apdu.get_challenge(8))) == 8
    assert sw_of(legacy, apdu.get_challenge(16)) == 0x6700
    card.reset()
    assert card.last_challenge is None


# -- INTERNAL AUTHENTICATE, third generation ---------------------------------------------------


def auth_command(challenge: bytes, card_sn: str = CARD_SN) -> apdu.CommandApdu:
    return apdu.internal_authenticate(
        layout.card_auth_message(challenge, bytes.fromhex(card_sn), TERMINAL_ID)
    )


def test_internal_authenticate_signature_verifies(
    card: ThirdGenCard, pki: tuple[SM2PrivateKey, bytes, bytes]
) -> None:
    _, cert_der, _ = pki
    challenge = bytes(range(16))
    enter_cert_adf(card)
    signature = ok(card, auth_command(challenge))
    assert len(signature) == 64
    message = layout.card_auth_message(challenge, card.card_sn, TERMINAL_ID)
    sm2_verify(card.public_key, message, signature)
    sm2_verify(load_der(cert_der).public_key, message, signature)
    # and with the reference backend, so the fast backend is not checking itself
    sm2_verify(card.public_key, message, signature, backend=get_backend("gmssl"))
    other = layout.card_auth_message(bytes(16), card.card_sn, TERMINAL_ID)
    with pytest.raises(SignatureInvalid):
        sm2_verify(card.public_key, other, signature)


def test_internal_authenticate_needs_the_cert_adf(card: ThirdGenCard) -> None:
    assert sw_of(card, auth_command(bytes(16))) == 0x6985
    ok(card, apdu.select_aid(layout.SSSE_AID))
    assert sw_of(card, auth_command(bytes(16))) == 0x6985
    ok(card, apdu.select_aid(layout.PKI_AID))
    assert sw_of(card, auth_command(bytes(16))) == 0x6985


def test_internal_authenticate_does_not_need_the_pin_by_default(card: ThirdGenCard) -> None:
    enter_cert_adf(card)
    assert not card.pin_verified
    assert len(ok(card, auth_command(bytes(16)))) == 64


def test_internal_authenticate_refuses_other_cards_and_bad_data(card: ThirdGenCard) -> None:
    enter_cert_adf(card)
    assert sw_of(card, auth_command(bytes(16), card_sn=LEGACY_SN)) == 0x6A80
    assert sw_of(card, apdu.internal_authenticate(bytes(16))) == 0x6A80
    assert sw_of(card, "0088000000") == 0x6700  # no data
    assert sw_of(card, auth_command(bytes(16)).to_bytes()[:-1].hex()) == 0x9000  # no Le (T=1)
    assert sw_of(card, auth_command(bytes(16)).with_le(0x40)) == 0x9000
    assert sw_of(card, auth_command(bytes(16)).with_le(0x20)) == 0x6C40
    raw = bytearray(auth_command(bytes(16)).to_bytes())
    raw[3] = 0x01
    assert sw_of(card, raw.hex()) == 0x6A86


def test_internal_authenticate_with_pin_policy(pki: tuple[SM2PrivateKey, bytes, bytes]) -> None:
    key, cert_der, _ = pki
    strict = make_third_gen_card(
        make_identity(CARD_SN, "3.00"), key, cert_der, PIN, require_pin_for_auth=True
    )
    enter_cert_adf(strict)
    assert sw_of(strict, auth_command(bytes(16))) == 0x6982
    ok(strict, apdu.verify_pin(PIN))
    assert len(ok(strict, auth_command(bytes(16)))) == 64


# -- legacy card -----------------------------------------------------------------------------------


def test_legacy_card_reads_like_a_second_generation_card(legacy: LegacyCard) -> None:
    issuer = layout.decode_ef05(read_ef05(legacy))
    assert issuer.spec_version == "2.00"
    assert issuer.generation == 2
    assert legacy.atr[4:-1] == b"SH-SSC2-SOFT"
    assert sw_of(legacy, apdu.select_aid(layout.PKI_AID)) == 0x6A82
    assert sw_of(legacy, apdu.select_aid(layout.CERT_ADF_AID)) == 0x6A82


def test_legacy_cryptogram_recomputes_from_the_master_key(legacy: LegacyCard) -> None:
    challenge = bytes.fromhex("0102030405060708")
    ok(legacy, apdu.select_aid(layout.SSSE_AID))
    cryptogram = ok(legacy, apdu.internal_authenticate(challenge))
    assert len(cryptogram) == LEGACY_CRYPTOGRAM_LEN
    sn = bytes.fromhex(LEGACY_SN)
    assert cryptogram == legacy_cryptogram(diversify_card_key(MASTER_KEY, sn), challenge, sn)
    # From the primitives, on the reference backend: key = SM4(master, card_sn); ISO 9797-1
    # MAC algorithm 1, padding 2, zero IV, over "SSC-LGCY" || challenge || card_sn; 8 bytes.
    gmssl = get_backend("gmssl")
    card_key = gmssl.sm4_ecb(MASTER_KEY, sn, encrypt=True)
    block = bytes(16)
    data = b"SSC-LGCY" + challenge + sn + b"\x80" + bytes(15)
    for i in range(0, len(data), 16):
        chunk = bytes(a ^ b for a, b in zip(data[i : i + 16], block, strict=True))
        block = gmssl.sm4_ecb(card_key, chunk, encrypt=True)
    assert cryptogram == block[:8]
    # another card's key does not produce it
    other = diversify_card_key(MASTER_KEY, bytes.fromhex(CARD_SN))
    assert legacy_cryptogram(other, challenge, sn) != cryptogram


def test_legacy_internal_authenticate_errors(legacy: LegacyCard) -> None:
    challenge = bytes(8)
    assert sw_of(legacy, apdu.internal_authenticate(challenge)) == 0x6985  # SSSE not selected
    ok(legacy, apdu.select_aid(layout.SSSE_AID))
    assert sw_of(legacy, apdu.internal_authenticate(bytes(16))) == 0x6700
    assert sw_of(legacy, apdu.internal_authenticate(challenge).with_le(0x10)) == 0x6C08
    assert len(ok(legacy, apdu.internal_authenticate(challenge).with_le(0x08))) == 8


def test_diversified_keys_differ_per_card() -> None:
    keys = {diversify_card_key(MASTER_KEY, bytes.fromhex(sn)) for sn in (CARD_SN, LEGACY_SN)}
    assert len(keys) == 2
    with pytest.raises(ValueError, match="16 bytes"):
        diversify_card_key(bytes(8), bytes.fromhex(CARD_SN))
    with pytest.raises(layout.CardDataError):
        diversify_card_key(MASTER_KEY, bytes(16))  # not a card_sn: no RID inside


# -- locked application (9303) ----------------------------------------------------------------


def test_locked_application(card: ThirdGenCard) -> None:
    ok(card, apdu.select_aid(layout.SSSE_AID))
    ok(card, apdu.select_file(layout.EF05_FID))
    card.lock_application()
    assert card.ssse_locked
    assert sw_of(card, apdu.read_record(1)) == 0x9303  # the current application locks at once
    assert sw_of(card, apdu.select_file(layout.EF06_FID)) == 0x9303
    assert sw_of(card, apdu.select_aid(layout.SSSE_AID)) == 0x9303
    enter_cert_adf(card)  # the PKI application is not locked
    card.reset()
    assert sw_of(card, apdu.select_aid(layout.SSSE_AID)) == 0x9303  # persistent
    with pytest.raises(apdu.ApplicationLocked):
        apdu.check_sw(sw_of(card, apdu.select_aid(layout.SSSE_AID)))


# -- T=0: 61xx and GET RESPONSE --------------------------------------------------------------


@pytest.fixture
def t0_card(pki: tuple[SM2PrivateKey, bytes, bytes]) -> ThirdGenCard:
    key, cert_der, _ = pki
    return make_third_gen_card(
        make_identity(CARD_SN, "3.00"), key, cert_der, PIN, t0_get_response=True
    )


def test_t0_select_answers_61xx_then_get_response(t0_card: ThirdGenCard) -> None:
    data, sw = send(t0_card, apdu.select_aid(layout.SSSE_AID))
    assert (data, sw) == (b"", 0x6113)  # the FCI: 6F 11 84 0F AID
    fci = ok(t0_card, apdu.get_response(0x13))
    assert fci[4:] == layout.SSSE_AID
    assert sw_of(t0_card, apdu.get_response(0)) == 0x6985  # nothing left
    assert sw_of(t0_card, apdu.select_file(layout.EF05_FID)) == 0x9000  # no data, no 61xx


def test_t0_get_response_in_pieces(t0_card: ThirdGenCard) -> None:
    enter = [send(t0_card, apdu.select_aid(aid)) for aid in (layout.PKI_AID, layout.CERT_ADF_AID)]
    assert [sw for _, sw in enter] == [0x6110, 0x6110]
    assert sw_of(t0_card, auth_command(bytes(16))) == 0x6140
    first, sw = send(t0_card, apdu.get_response(0x20))
    assert (len(first), sw) == (32, 0x6120)
    assert sw_of(t0_card, apdu.get_response(0x30)) == 0x6C20  # asks too much: exact count
    rest = ok(t0_card, apdu.get_response(0x20))
    message = layout.card_auth_message(bytes(16), t0_card.card_sn, TERMINAL_ID)
    sm2_verify(t0_card.public_key, message, first + rest)


def test_t0_long_read_and_discarded_response(
    t0_card: ThirdGenCard, pki: tuple[SM2PrivateKey, bytes, bytes]
) -> None:
    _, cert_der, _ = pki
    ok(t0_card, "00A4040C0C" + layout.PKI_AID.hex())
    ok(t0_card, "00A4040C0C" + layout.CERT_ADF_AID.hex())
    ok(t0_card, apdu.select_file(layout.EF_SIGN_CERT_FID))
    assert sw_of(t0_card, apdu.read_binary(0, 0)) == 0x6100  # 256 bytes wait
    assert ok(t0_card, apdu.get_response(0)) == cert_der[:256]
    assert sw_of(t0_card, apdu.read_binary(0, 0)) == 0x6100
    assert sw_of(t0_card, apdu.get_challenge(8)) == 0x6108  # another command drops the rest
    assert len(ok(t0_card, apdu.get_response(8))) == 8
    assert sw_of(t0_card, "00C0010000") == 0x6985  # nothing pending comes first
    assert sw_of(t0_card, apdu.read_binary(0, 4)) == 0x6104
    assert sw_of(t0_card, "00C0010004") == 0x6A86
    assert sw_of(t0_card, "00C00000") == 0x6700
    assert ok(t0_card, apdu.get_response(4)) == cert_der[:4]


# -- reset, repr, factories ---------------------------------------------------------------------


def test_reset_returns_to_the_mf(card: ThirdGenCard) -> None:
    ok(card, apdu.select_aid(layout.SSSE_AID))
    ok(card, apdu.select_file(layout.EF05_FID))
    card.reset()
    assert sw_of(card, apdu.read_record(1)) == 0x6986
    assert sw_of(card, apdu.select_file(layout.EF05_FID)) == 0x6A82


def test_no_personal_data_or_pin_in_repr(card: ThirdGenCard, legacy: LegacyCard) -> None:
    ok(card, apdu.verify_pin(PIN))
    for obj in (card, legacy, card._pin, card.identity):
        text = repr(obj)
        assert NAME not in text
        assert CITIZEN_ID not in text
        assert PIN not in text
    assert CARD_SN in repr(card)


def test_factories_check_the_generation(pki: tuple[SM2PrivateKey, bytes, bytes]) -> None:
    key, cert_der, _ = pki
    with pytest.raises(ValueError, match="third-generation"):
        make_third_gen_card(make_identity(CARD_SN, "2.00"), key, cert_der, PIN)
    with pytest.raises(ValueError, match="legacy"):
        make_legacy_card(make_identity(LEGACY_SN, "3.00"), MASTER_KEY, PIN)
    with pytest.raises(ValueError, match="PIN"):
        make_legacy_card(make_identity(LEGACY_SN, "1.00"), MASTER_KEY, "12")
    with pytest.raises(ValueError, match="tries"):
        make_legacy_card(make_identity(LEGACY_SN, "2.00"), MASTER_KEY, PIN, pin_tries=16)
    with pytest.raises(ValueError, match="cert_der"):
        make_third_gen_card(make_identity(CARD_SN, "3.00"), key, b"", PIN)


def test_cards_fit_the_vpcd_slot_protocol(card: ThirdGenCard, legacy: LegacyCard) -> None:
    assert isinstance(card, VirtualCard)
    assert isinstance(legacy, VirtualCard)


# -- vpcd framing, with a software card behind it ------------------------------------------------


def test_vpcd_frames() -> None:
    assert encode_frame(b"\x04") == b"\x00\x01\x04"
    assert encode_frame(b"") == b"\x00\x00"
    assert encode_frame(bytes(MAX_PAYLOAD_LEN))[:2] == b"\xff\xff"
    with pytest.raises(ValueError, match="exceeds"):
        encode_frame(bytes(MAX_PAYLOAD_LEN + 1))
    decoder = FrameDecoder()
    stream = (
        encode_frame(b"\x01") + encode_frame(bytes.fromhex("00A4040000")) + encode_frame(b"\x04")
    )
    payloads = [p for i in range(len(stream)) for p in decoder.feed(stream[i : i + 1])]
    assert payloads == [b"\x01", bytes.fromhex("00A4040000"), b"\x04"]
    assert decoder.pending_len == 0
    assert decoder.feed(b"\x00\x05\x00") == []
    assert decoder.pending_len == 3


def test_vpcd_messages_drive_the_card(card: ThirdGenCard) -> None:
    assert handle_message(card, bytes([VpcdControl.POWER_ON])) is None
    assert handle_message(card, bytes([VpcdControl.GET_ATR])) == card.atr
    answer = handle_message(card, apdu.select_aid(layout.SSSE_AID).to_bytes())
    assert answer is not None
    assert answer[-2:] == b"\x90\x00"
    ok(card, apdu.verify_pin(PIN))
    for control in (VpcdControl.RESET, VpcdControl.POWER_OFF):
        ok(card, apdu.verify_pin(PIN))
        assert handle_message(card, bytes([control])) is None
        assert not card.pin_verified  # a reset or power-off ends the session
    with pytest.raises(VpcdProtocolError):
        handle_message(card, b"")
    with pytest.raises(VpcdProtocolError, match="0x03"):
        handle_message(card, b"\x03")


def test_vpcd_turns_a_card_fault_into_6f00(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        atr = b"\x3b\x00"

        def transmit(self, apdu: bytes) -> bytes:
            raise RuntimeError("bug with secret " + apdu.hex())

        def reset(self) -> None:
            pass

    faults: list[Exception] = []
    answer = handle_message(
        Broken(), bytes.fromhex("0020000003123456"), on_card_fault=faults.append
    )
    assert answer == b"\x6f\x00"
    assert len(faults) == 1
    assert "123456" not in caplog.text  # the log names the exception type only
    assert "RuntimeError" in caplog.text
