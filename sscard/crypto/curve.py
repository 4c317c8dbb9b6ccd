"""The SM2 recommended curve (GB/T 32918.5) and the few pure-integer checks we need ourselves.

Backends do the heavy scalar multiplication; this module only holds the parameters and the
cheap checks that must never be left to a backend we do not fully trust (gmssl skips them).
"""

from __future__ import annotations

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

#: Byte length of a field element, a scalar, and one half of an r||s signature.
COORD_LEN = 32

CURVE_OID = "1.2.156.10197.1.301"
SM2_WITH_SM3_OID = "1.2.156.10197.1.501"
SM3_OID = "1.2.156.10197.1.401"
SM4_OID = "1.2.156.10197.1.104"


def is_on_curve(x: int, y: int) -> bool:
    """True when (x, y) is an affine point of the SM2 curve (the point at infinity is not)."""
    if not (0 <= x < P and 0 <= y < P):
        return False
    return (y * y - (x * x * x + A * x + B)) % P == 0


def is_valid_scalar(k: int) -> bool:
    """True for a usable private key or signature component: 1 <= k <= n-1."""
    return 1 <= k < N
