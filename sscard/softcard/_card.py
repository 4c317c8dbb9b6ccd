"""The software cards' state machine: files, PIN, challenge, authentication, T=0 chaining."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import Final

from sscard.crypto import SM2PrivateKey, SM2PublicKey, sm2_sign, sm3
from sscard.layout import (
    CARD_SN_LEN,
    CERT_ADF_AID,
    CHALLENGE_LEN_GEN2,
    CHALLENGE_LEN_GEN3,
    EF05_FID,
    EF06_FID,
    EF06_RECORD_NUMBERS,
    EF_ENC_CERT_FID,
    EF_SIGN_CERT_FID,
    EF_SIGN_PUBLIC_KEY_FID,
    PKI_AID,
    SIGNATURE_LEN,
    SSSE_AID,
    CardDataError,
    CardIdentity,
    CardSn,
    encode_ef05,
    encode_ef06,
    parse_card_auth_message,
)

from ._command import (
    MAX_SHORT_LE,
    SW_APP_LOCKED,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_FILE_NOT_FOUND,
    SW_INCOMPATIBLE_FILE,
    SW_INS_NOT_SUPPORTED,
    SW_MORE_DATA_BASE,
    SW_NO_CURRENT_EF,
    SW_OK,
    SW_PIN_BLOCKED,
    SW_PIN_WRONG_BASE,
    SW_RECORD_NOT_FOUND,
    SW_REFERENCE_NOT_FOUND,
    SW_SECURITY_NOT_SATISFIED,
    SW_WRONG_DATA,
    SW_WRONG_LE_BASE,
    SW_WRONG_LENGTH,
    SW_WRONG_OFFSET,
    SW_WRONG_P1P2,
    CardStatus,
    Command,
    length_byte,
    parse_command,
    sw_bytes,
)
from ._filesystem import MF_FID, DedicatedFile, ElementaryFile, atr_t0, atr_t1
from ._keys import (
    LEGACY_CRYPTOGRAM_LEN,
    diversify_card_key,
    encode_sign_public_key_file,
    legacy_cryptogram,
)

#: ``rng(n)`` returns n random bytes; tests pass a seeded one.
RandomSource = Callable[[int], bytes]

INS_VERIFY: Final = 0x20
INS_GET_CHALLENGE: Final = 0x84
INS_INTERNAL_AUTHENTICATE: Final = 0x88
INS_SELECT: Final = 0xA4
INS_READ_BINARY: Final = 0xB0
INS_READ_RECORD: Final = 0xB2
INS_GET_RESPONSE: Final = 0xC0

DEFAULT_PIN_TRIES: Final = 3
MIN_PIN_DIGITS: Final = 4
MAX_PIN_DIGITS: Final = 12
SSSE_SFI_EF05: Final = 5
SSSE_SFI_EF06: Final = 6
_PIN_DIGEST_DOMAIN: Final = b"sscard.softcard PIN v1\x00"
_MAX_CERT_LEN: Final = 0x7FFF  # READ BINARY's 15-bit offset reaches no further
# Historical bytes: our own, saying "software card" so nobody mistakes a log for a real card.
_HISTORICAL_GEN3: Final = b"SH-SSC3-SOFT"
_HISTORICAL_GEN2: Final = b"SH-SSC2-SOFT"
_READ_RECORD_BY_NUMBER: Final = 0b100
_READ_RECORD_FIRST_BY_ID: Final = 0b000
_SFI_MASK_P1: Final = 0x80


def encode_pin_block(pin: str) -> bytes:
    """A PIN as the card expects it in VERIFY: packed BCD, an odd count padded with F.

    Written here rather than imported from :mod:`sscard.apdu` so that card and reader do not
    share one encoder (a shared bug would pass every test); the tests check they agree.
    """
    if not MIN_PIN_DIGITS <= len(pin) <= MAX_PIN_DIGITS or not all(c in "0123456789" for c in pin):
        raise ValueError(f"PIN must be {MIN_PIN_DIGITS}..{MAX_PIN_DIGITS} ASCII digits")
    return bytes.fromhex(pin + "F" * (len(pin) % 2))


class _Pin:
    """The card's PIN (持卡人密码): a retry counter in 'EEPROM' and a flag in 'RAM'.

    Only a digest of the PIN block is kept, so a debugger, a pickle or a repr never shows it.
    """

    __slots__ = ("_digest", "max_tries", "tries_left", "verified")

    def __init__(self, pin: str, max_tries: int) -> None:
        if not 1 <= max_tries <= 15:
            raise ValueError("PIN tries must be 1..15 (the x of 63Cx is one nibble)")
        self._digest = self._hash(encode_pin_block(pin))
        self.max_tries = max_tries
        self.tries_left = max_tries
        self.verified = False

    @staticmethod
    def _hash(block: bytes) -> bytes:
        return sm3(_PIN_DIGEST_DOMAIN + block)

    def matches(self, block: bytes) -> bool:
        return hmac.compare_digest(self._hash(block), self._digest)

    def __repr__(self) -> str:
        return f"_Pin(tries_left={self.tries_left}, verified={self.verified})"


class SoftCard:
    """Common ISO 7816-4 behaviour of the software social security cards.

    Persistent state (survives :meth:`reset`, as EEPROM does): the PIN retry counter and the
    application lock. Volatile state (lost on reset or power-off): the current DF and EF, the
    verified-PIN flag, the last GET CHALLENGE value and pending T=0 response data.

    Commands (CLA 00 only; anything else 6E00; unknown INS 6D00):

    ======================  ====================================================================
    SELECT 00A4             P1 04 by AID (searched among the applications, the current DF's
                            children and its siblings; FCI ``6F 84 AID`` unless P2 0C);
                            P1 00 by FID (3F00 = MF, or an EF / DF of the current DF);
                            P1 02 EF of the current DF. 6A82 not found, 9303 locked app.
    READ RECORD 00B2        P2 = SFI<<3 | 100 (record P1) or | 000 (first record with tag P1);
                            SFI 0 = current EF. Le 00 or exact length, else 6Cxx; no Le 6700.
    READ BINARY 00B0        offset P1P2 (15 bits) or P1 = 80|SFI with offset P2. Le 00 gives up
                            to 256 bytes; a larger Le than the bytes left gives 6Cxx; an offset
                            at or past the end 6B00.
    VERIFY 0020 00 00       PIN as packed BCD (F-padded). Wrong: 63Cx; 0 tries: 6983. Empty
                            data: 63Cx (9000 once verified in this session).
    GET CHALLENGE 0084      Le = one of the card's challenge lengths, else 6700.
    INTERNAL AUTH 0088      see the subclasses.
    GET RESPONSE 00C0       pending T=0 data (61xx); nothing pending 6985.
    ======================  ====================================================================

    With ``t0_get_response=True`` the card behaves like a T=0 card: its ATR offers T=0 only
    and every answer that carries data is withheld behind ``61xx`` until GET RESPONSE fetches
    it (in pieces, with a new 61xx while more remains), which is what a reader's transport must
    handle because pyscard does not.
    """

    _challenge_lengths: tuple[int, ...] = (4, CHALLENGE_LEN_GEN2)

    def __init__(
        self,
        *,
        mf: DedicatedFile,
        ssse: DedicatedFile,
        identity: CardIdentity,
        pin: str,
        pin_tries: int,
        historical_bytes: bytes,
        rng: RandomSource,
        t0_get_response: bool,
    ) -> None:
        self._mf = mf
        self._ssse = ssse
        self._identity = identity
        self._pin = _Pin(pin, pin_tries)
        self._rng = rng
        self._t0 = t0_get_response
        self._atr = atr_t0(historical_bytes) if t0_get_response else atr_t1(historical_bytes)
        self._locked: set[int] = set()  # id() of locked DFs; the tree never changes
        self._current_df = mf
        self._current_ef: ElementaryFile | None = None
        self._last_challenge: bytes | None = None
        self._pending = b""
        self._handlers: dict[int, Callable[[Command], bytes]] = {
            INS_SELECT: self._select,
            INS_READ_RECORD: self._read_record,
            INS_READ_BINARY: self._read_binary,
            INS_VERIFY: self._verify,
            INS_GET_CHALLENGE: self._get_challenge,
            INS_INTERNAL_AUTHENTICATE: self._internal_authenticate,
        }

    # -- public surface ------------------------------------------------------------------------

    @property
    def atr(self) -> bytes:
        """Answer to reset (our own historical bytes ``SH-SSC3-SOFT`` / ``SH-SSC2-SOFT``)."""
        return self._atr

    @property
    def identity(self) -> CardIdentity:
        """The EF05/EF06 content the card was made with (its repr is masked)."""
        return self._identity

    @property
    def card_sn(self) -> CardSn:
        return self._identity.card_sn

    @property
    def pin_tries_left(self) -> int:
        return self._pin.tries_left

    @property
    def pin_verified(self) -> bool:
        return self._pin.verified

    @property
    def last_challenge(self) -> bytes | None:
        """The value of the last GET CHALLENGE in this session, for EXTERNAL AUTHENTICATE."""
        return self._last_challenge

    @property
    def ssse_locked(self) -> bool:
        return id(self._ssse) in self._locked

    def lock_application(self) -> None:
        """Permanently lock the SSSE application, as the issuer does to a voided card.

        From then on SELECT of the SSSE AID, and any command while it is current, answer 9303.
        """
        self._locked.add(id(self._ssse))

    def reset(self) -> None:
        """Warm/cold reset or power-off: volatile state is lost, the PIN counter is kept."""
        self._current_df = self._mf
        self._current_ef = None
        self._pin.verified = False
        self._last_challenge = None
        self._pending = b""

    def transmit(self, apdu: bytes) -> bytes:
        """Execute one command APDU; return response data ‖ SW1 SW2."""
        try:
            command = parse_command(bytes(apdu))
            if command.cla != 0x00:
                raise CardStatus(SW_CLA_NOT_SUPPORTED)
            if command.ins == INS_GET_RESPONSE:
                return self._get_response(command)
            # Any other command discards an unread T=0 response, as on a real card.
            self._pending = b""
            handler = self._handlers.get(command.ins)
            if handler is None:
                raise CardStatus(SW_INS_NOT_SUPPORTED)
            if self._in_locked_app() and not self._may_leave_locked_app(command):
                raise CardStatus(SW_APP_LOCKED)
            data = handler(command)
        except CardStatus as status:
            return sw_bytes(status.sw)
        if self._t0 and data:
            self._pending = data
            return sw_bytes(SW_MORE_DATA_BASE | length_byte(min(len(data), MAX_SHORT_LE)))
        return data + sw_bytes(SW_OK)

    def __repr__(self) -> str:
        # No identity here: card_sn is an identifier, the holder's data stays out of logs.
        return (
            f"{type(self).__name__}(card_sn={self.card_sn.hex}, "
            f"pin_tries_left={self._pin.tries_left}, locked={self.ssse_locked})"
        )

    # -- helpers ---------------------------------------------------------------------------------

    def _in_locked_app(self) -> bool:
        return any(id(df) in self._locked for df in self._current_df.lineage())

    @staticmethod
    def _may_leave_locked_app(command: Command) -> bool:
        """Only a SELECT of another application or of the MF leads out of a locked one."""
        if command.ins != INS_SELECT:
            return False
        return command.p1 == 0x04 or (command.p1 == 0x00 and command.data == MF_FID)

    @staticmethod
    def _fit_le(data: bytes, le: int | None, *, le_required: bool) -> bytes:
        """Apply a short Le to an answer of fixed size: 00 or the exact size, else 6Cxx."""
        if le is None:
            if le_required:
                raise CardStatus(SW_WRONG_LENGTH)
            return data  # case 3/4 without Le on T=1: the card may still answer
        if not data or le in (MAX_SHORT_LE, len(data)):
            return data
        raise CardStatus(SW_WRONG_LE_BASE | length_byte(len(data)))

    @staticmethod
    def _require_p1p2(command: Command, p1: int, p2: int) -> None:
        if (command.p1, command.p2) != (p1, p2):
            raise CardStatus(SW_WRONG_P1P2)

    def _select_df(self, df: DedicatedFile) -> None:
        if any(id(node) in self._locked for node in df.lineage()):
            raise CardStatus(SW_APP_LOCKED)
        self._current_df = df
        self._current_ef = None

    def _ef_for_read(self, sfi: int) -> ElementaryFile:
        """The EF named by an SFI (which becomes current), or the current EF for SFI 0."""
        if sfi == 0:
            if self._current_ef is None:
                raise CardStatus(SW_NO_CURRENT_EF)
            return self._current_ef
        ef = self._current_df.ef_by_sfi(sfi)
        if ef is None:
            raise CardStatus(SW_FILE_NOT_FOUND)
        self._current_ef = ef
        return ef

    # -- command handlers --------------------------------------------------------------------------

    def _select(self, command: Command) -> bytes:
        if command.p2 not in (0x00, 0x04, 0x0C):
            raise CardStatus(SW_WRONG_P1P2)
        want_fci = command.p2 != 0x0C
        if command.p1 == 0x04:
            if not command.data:
                raise CardStatus(SW_WRONG_LENGTH)
            df = self._find_df_by_aid(command.data)
            self._select_df(df)
            assert df.aid is not None
            fci = b"\x6f" + bytes([len(df.aid) + 2, 0x84, len(df.aid)]) + df.aid
            return self._fit_le(fci, command.le, le_required=False) if want_fci else b""
        if command.p1 in (0x00, 0x02):
            if len(command.data) != 2:
                raise CardStatus(SW_WRONG_LENGTH)
            if command.p1 == 0x00 and command.data == MF_FID:
                self._select_df(self._mf)
                return b""
            ef = self._current_df.ef_by_fid(command.data)
            if ef is not None:
                self._current_ef = ef
                return b""
            child = self._current_df.child_by_fid(command.data) if command.p1 == 0x00 else None
            if child is None:
                raise CardStatus(SW_FILE_NOT_FOUND)
            self._select_df(child)
            return b""
        raise CardStatus(SW_WRONG_P1P2)

    def _find_df_by_aid(self, aid: bytes) -> DedicatedFile:
        current = self._current_df
        candidates = [*self._mf.children, *current.children]
        if current.parent is not None:
            candidates.extend(current.parent.children)
        for df in candidates:
            if df.aid == aid:
                return df
        raise CardStatus(SW_FILE_NOT_FOUND)

    def _read_record(self, command: Command) -> bytes:
        mode, sfi = command.p2 & 0x07, command.p2 >> 3
        if command.p1 == 0 or sfi == 0x1F or mode not in (_READ_RECORD_BY_NUMBER, 0):
            raise CardStatus(SW_WRONG_P1P2)  # "current record" and next/previous: unsupported
        ef = self._ef_for_read(sfi)
        if ef.records is None:
            raise CardStatus(SW_INCOMPATIBLE_FILE)
        if command.le is None:
            raise CardStatus(SW_WRONG_LENGTH)
        if mode == _READ_RECORD_BY_NUMBER:
            record = ef.records.get(command.p1)
        else:  # first record whose identifier (its TLV tag, one byte here) is P1
            record = next(
                (ef.records[n] for n in sorted(ef.records) if ef.records[n][0] == command.p1),
                None,
            )
        if record is None:
            raise CardStatus(SW_RECORD_NOT_FOUND)
        return self._fit_le(record, command.le, le_required=True)

    def _read_binary(self, command: Command) -> bytes:
        if command.p1 & _SFI_MASK_P1:
            if command.p1 & 0x60:
                raise CardStatus(SW_WRONG_P1P2)
            ef = self._ef_for_read(command.p1 & 0x1F)
            offset = command.p2
        else:
            ef = self._ef_for_read(0)
            offset = (command.p1 << 8) | command.p2
        if ef.content is None:
            raise CardStatus(SW_INCOMPATIBLE_FILE)
        if command.le is None:
            raise CardStatus(SW_WRONG_LENGTH)
        available = len(ef.content) - offset
        if available <= 0:
            raise CardStatus(SW_WRONG_OFFSET)
        if command.le == MAX_SHORT_LE:
            return ef.content[offset : offset + min(MAX_SHORT_LE, available)]
        if command.le > available:
            raise CardStatus(SW_WRONG_LE_BASE | length_byte(available))
        return ef.content[offset : offset + command.le]

    def _verify(self, command: Command) -> bytes:
        if command.p1 != 0x00:
            raise CardStatus(SW_WRONG_P1P2)
        if command.p2 != 0x00:
            raise CardStatus(SW_REFERENCE_NOT_FOUND)  # the cards have one PIN, reference 00
        pin = self._pin
        if pin.tries_left == 0:
            raise CardStatus(SW_PIN_BLOCKED)
        if not command.data:  # ask for the state without spending a try (ISO 7816-4 §11.5.6)
            if pin.verified:
                return b""
            raise CardStatus(SW_PIN_WRONG_BASE | pin.tries_left)
        if not MIN_PIN_DIGITS // 2 <= len(command.data) <= MAX_PIN_DIGITS // 2:
            raise CardStatus(SW_WRONG_LENGTH)  # malformed, not a wrong PIN: no try is spent
        if pin.matches(command.data):
            pin.tries_left = pin.max_tries
            pin.verified = True
            return b""
        pin.tries_left -= 1
        pin.verified = False
        raise CardStatus(SW_PIN_WRONG_BASE | pin.tries_left)

    def _get_challenge(self, command: Command) -> bytes:
        self._require_p1p2(command, 0x00, 0x00)
        if command.le not in self._challenge_lengths:
            raise CardStatus(SW_WRONG_LENGTH)
        challenge = self._rng(command.le)
        assert len(challenge) == command.le
        self._last_challenge = challenge
        return challenge

    def _get_response(self, command: Command) -> bytes:
        if not self._pending:
            raise CardStatus(SW_CONDITIONS_NOT_SATISFIED)
        self._require_p1p2(command, 0x00, 0x00)
        if command.le is None:
            raise CardStatus(SW_WRONG_LENGTH)
        pending = self._pending
        if command.le != MAX_SHORT_LE and command.le > len(pending):
            return sw_bytes(SW_WRONG_LE_BASE | length_byte(len(pending)))
        chunk, self._pending = pending[: command.le], pending[command.le :]
        if self._pending:
            more = length_byte(min(len(self._pending), MAX_SHORT_LE))
            return chunk + sw_bytes(SW_MORE_DATA_BASE | more)
        return chunk + sw_bytes(SW_OK)

    def _internal_authenticate(self, command: Command) -> bytes:
        raise CardStatus(SW_INS_NOT_SUPPORTED)


def _ssse_df(identity: CardIdentity) -> DedicatedFile:
    """SSSE with EF05 (record number = tag) and EF06 (records 1, 2, 4, 5, 7 by tag)."""
    ef05 = encode_ef05(identity)
    ef06 = {EF06_RECORD_NUMBERS[tag]: record for tag, record in encode_ef06(identity).items()}
    return DedicatedFile(
        "SSSE",
        aid=SSSE_AID,
        efs=(
            ElementaryFile(EF05_FID, sfi=SSSE_SFI_EF05, records=ef05),
            ElementaryFile(EF06_FID, sfi=SSSE_SFI_EF06, records=ef06),
        ),
    )


class ThirdGenCard(SoftCard):
    """A third-generation card (spec 3.00): SSSE plus the PKI application with an SM2 key.

    INTERNAL AUTHENTICATE (``00 88 00 00 Lc message 00``), project profile:

    * the command data is exactly :func:`sscard.layout.card_auth_message` (challenge, card_sn,
      terminal id); malformed, or naming another card_sn: 6A80;
    * only with SS.CERT.ADF1 selected (SELECT PKI_AID, then CERT_ADF_AID), else 6985: the key
      belongs to that application;
    * answer: SM2-with-SM3 signature r‖s (64 bytes) over the data, default signer id;
      Le 00 or 40, else 6C40;
    * no PIN needed by default. Card authentication proves the card is present and genuine;
      the holder's consent is a separate VERIFY that the settlement flow asks for. With
      ``require_pin_for_auth=True`` the card answers 6982 until the PIN is verified.

    GET CHALLENGE gives 4, 8 or 16 bytes. EF 0012 holds the public key (see
    :func:`encode_sign_public_key_file`), EF 0018 the certificate DER, EF 0019 the encryption
    certificate when one was given (else 6A82).
    """

    _challenge_lengths = (4, CHALLENGE_LEN_GEN2, CHALLENGE_LEN_GEN3)

    def __init__(
        self,
        identity: CardIdentity,
        key: SM2PrivateKey,
        cert_der: bytes,
        pin: str,
        *,
        enc_cert_der: bytes | None = None,
        pin_tries: int = DEFAULT_PIN_TRIES,
        require_pin_for_auth: bool = False,
        rng: RandomSource = secrets.token_bytes,
        t0_get_response: bool = False,
    ) -> None:
        if identity.generation != 3:
            raise ValueError("a third-generation card needs spec version 3.xx in its identity")
        for name, der in (("cert_der", cert_der), ("enc_cert_der", enc_cert_der)):
            if der is not None and not 0 < len(der) <= _MAX_CERT_LEN:
                raise ValueError(f"{name} must be 1..{_MAX_CERT_LEN} bytes")
        pki_efs = [
            ElementaryFile(
                EF_SIGN_PUBLIC_KEY_FID, content=encode_sign_public_key_file(key.public_key)
            ),
            ElementaryFile(EF_SIGN_CERT_FID, content=cert_der),
        ]
        if enc_cert_der is not None:
            pki_efs.append(ElementaryFile(EF_ENC_CERT_FID, content=enc_cert_der))
        self._cert_adf = DedicatedFile("SS.CERT.ADF1", aid=CERT_ADF_AID, efs=tuple(pki_efs))
        pki = DedicatedFile("PKI", aid=PKI_AID, children=(self._cert_adf,))
        ssse = _ssse_df(identity)
        super().__init__(
            mf=DedicatedFile("MF", fid=MF_FID, children=(ssse, pki)),
            ssse=ssse,
            identity=identity,
            pin=pin,
            pin_tries=pin_tries,
            historical_bytes=_HISTORICAL_GEN3,
            rng=rng,
            t0_get_response=t0_get_response,
        )
        self._key = key
        self._cert_der = cert_der
        self._require_pin_for_auth = require_pin_for_auth

    @property
    def public_key(self) -> SM2PublicKey:
        return self._key.public_key

    @property
    def certificate_der(self) -> bytes:
        return self._cert_der

    def _internal_authenticate(self, command: Command) -> bytes:
        if self._current_df is not self._cert_adf:
            raise CardStatus(SW_CONDITIONS_NOT_SATISFIED)
        self._require_p1p2(command, 0x00, 0x00)
        if self._require_pin_for_auth and not self._pin.verified:
            raise CardStatus(SW_SECURITY_NOT_SATISFIED)
        if not command.data:
            raise CardStatus(SW_WRONG_LENGTH)
        try:
            message = parse_card_auth_message(command.data)
        except CardDataError:
            raise CardStatus(SW_WRONG_DATA) from None
        if message.card_sn != self.card_sn:
            raise CardStatus(SW_WRONG_DATA)  # a card signs for itself only
        signature = sm2_sign(self._key, command.data)
        assert len(signature) == SIGNATURE_LEN
        return self._fit_le(signature, command.le, le_required=False)


class LegacyCard(SoftCard):
    """A second-generation card (spec 2.00/1.00): SSSE only, symmetric card authentication.

    There is no PKI application: SELECT PKI_AID answers 6A82. GET CHALLENGE gives 4 or 8 bytes.

    INTERNAL AUTHENTICATE (``00 88 00 00 08 challenge 00``) with SSSE selected (else 6985): the
    data is the 8-byte challenge (else 6700) and the answer the 8-byte
    :func:`legacy_cryptogram` under the card key :func:`diversify_card_key` derives from the
    issuer master key and card_sn. Le 00 or 08, else 6C08. No PIN needed.
    """

    def __init__(
        self,
        identity: CardIdentity,
        master_key: bytes,
        pin: str,
        *,
        pin_tries: int = DEFAULT_PIN_TRIES,
        rng: RandomSource = secrets.token_bytes,
        t0_get_response: bool = False,
    ) -> None:
        if identity.generation == 3:
            raise ValueError("a legacy card needs spec version 1.xx or 2.xx in its identity")
        ssse = _ssse_df(identity)
        super().__init__(
            mf=DedicatedFile("MF", fid=MF_FID, children=(ssse,)),
            ssse=ssse,
            identity=identity,
            pin=pin,
            pin_tries=pin_tries,
            historical_bytes=_HISTORICAL_GEN2,
            rng=rng,
            t0_get_response=t0_get_response,
        )
        # The card holds only its own diversified key, never the master key.
        self._card_key = diversify_card_key(master_key, identity.card_sn)
        assert len(identity.card_sn.raw) == CARD_SN_LEN

    def _internal_authenticate(self, command: Command) -> bytes:
        if self._current_df is not self._ssse:
            raise CardStatus(SW_CONDITIONS_NOT_SATISFIED)
        self._require_p1p2(command, 0x00, 0x00)
        if len(command.data) != CHALLENGE_LEN_GEN2:
            raise CardStatus(SW_WRONG_LENGTH)
        cryptogram = legacy_cryptogram(self._card_key, command.data, self.card_sn)
        assert len(cryptogram) == LEGACY_CRYPTOGRAM_LEN
        return self._fit_le(cryptogram, command.le, le_required=False)


def make_third_gen_card(
    identity: CardIdentity,
    key: SM2PrivateKey,
    cert_der: bytes,
    pin: str,
    *,
    enc_cert_der: bytes | None = None,
    pin_tries: int = DEFAULT_PIN_TRIES,
    require_pin_for_auth: bool = False,
    rng: RandomSource = secrets.token_bytes,
    t0_get_response: bool = False,
) -> ThirdGenCard:
    """A personalised third-generation card; see :class:`ThirdGenCard` for the options."""
    return ThirdGenCard(
        identity,
        key,
        cert_der,
        pin,
        enc_cert_der=enc_cert_der,
        pin_tries=pin_tries,
        require_pin_for_auth=require_pin_for_auth,
        rng=rng,
        t0_get_response=t0_get_response,
    )


def make_legacy_card(
    identity: CardIdentity,
    master_key: bytes,
    pin: str,
    *,
    pin_tries: int = DEFAULT_PIN_TRIES,
    rng: RandomSource = secrets.token_bytes,
    t0_get_response: bool = False,
) -> LegacyCard:
    """A personalised second-generation card; see :class:`LegacyCard`."""
    return LegacyCard(
        identity, master_key, pin, pin_tries=pin_tries, rng=rng, t0_get_response=t0_get_response
    )
