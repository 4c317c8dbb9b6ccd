"""Software social security cards that answer APDUs as the real cards do.

Pure state machines (bytes in, bytes out), to drive in-process or through pcscd with
:class:`sscard.vpcd.VirtualCardSlot`::

    card.transmit(apdu: bytes) -> bytes     response data || SW1 SW2
    card.atr                                 answer to reset
    card.reset()                             power cycle: volatile state lost, PIN counter kept

Cards:

* :class:`ThirdGenCard` (``make_third_gen_card(identity, key, cert_der, pin)``): SSSE with EF05
  and EF06, PIN, GET CHALLENGE (16 bytes), the PKI application with EF 0012 / 0018 / 0019,
  and INTERNAL AUTHENTICATE answering an SM2 signature over
  :func:`sscard.layout.card_auth_message`.
* :class:`LegacyCard` (``make_legacy_card(identity, master_key, pin)``): second generation,
  SSSE only, GET CHALLENGE (8 bytes), INTERNAL AUTHENTICATE answering
  :func:`legacy_cryptogram` under the key :func:`diversify_card_key` derives.

Status words (DOMAIN §2): 9000; 61xx and GET RESPONSE with ``t0_get_response=True``; 6Cxx for
a wrong Le; 63Cx wrong PIN; 6983 PIN blocked; 6A82 file or application not found; 6A83
record not found; 6982 PIN needed (``require_pin_for_auth=True``); 6985 no data for GET
RESPONSE or INTERNAL AUTHENTICATE outside its application; 9303 application locked
(:meth:`SoftCard.lock_application`); 6D00 INS, 6E00 CLA not supported; 6700 wrong length;
6A86 / 6B00 wrong P1-P2 / offset; 6981 command does not fit the file; 6986 no current EF;
6A80 wrong data; 6A88 PIN reference other than 00.

The card parses APDUs with its own parser and encodes PINs with its own encoder, rather than
with :mod:`sscard.apdu`, so a bug shared by reader and card cannot hide (the tests check both
agree). A card keeps only a digest of its PIN, and no repr shows the holder's data.

>>> from sscard.softcard._command import parse_command
>>> parse_command(bytes.fromhex("00A40400")).data
b''
"""

from ._card import (
    DEFAULT_PIN_TRIES,
    LegacyCard,
    RandomSource,
    SoftCard,
    ThirdGenCard,
    encode_pin_block,
    make_legacy_card,
    make_third_gen_card,
)
from ._keys import (
    LEGACY_CRYPTOGRAM_LEN,
    SIGN_PUBLIC_KEY_TAG,
    decode_sign_public_key_file,
    diversify_card_key,
    encode_sign_public_key_file,
    legacy_cryptogram,
)

__all__ = [
    "DEFAULT_PIN_TRIES",
    "LEGACY_CRYPTOGRAM_LEN",
    "SIGN_PUBLIC_KEY_TAG",
    "LegacyCard",
    "RandomSource",
    "SoftCard",
    "ThirdGenCard",
    "decode_sign_public_key_file",
    "diversify_card_key",
    "encode_pin_block",
    "encode_sign_public_key_file",
    "legacy_cryptogram",
    "make_legacy_card",
    "make_third_gen_card",
]
