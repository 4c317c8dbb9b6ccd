"""SM2 throughput of each backend beside the system OpenSSL, measured in one run.

Each figure is single-threaded, like ``openssl speed`` without ``-multi``, so the ratios compare
like with like on the same machine at the same moment. "verify" goes through the public
:func:`sscard.crypto.sm2_verify` with the key already seen (the gateway caches card keys), over a
message the size of the card-authentication profile message.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

from sscard.crypto import SM2PrivateKey, get_backend, sm2_sign, sm2_verify

_MESSAGE = bytes(range(64))
_OPENSSL_LINE = re.compile(
    r"SM2 \(CurveSM2\)\s+[\d.]+s\s+[\d.]+s\s+(?P<sign>[\d.]+)\s+(?P<verify>[\d.]+)"
)


def _rate(op: Callable[[], object], seconds: float) -> float:
    """Operations per second of ``op`` over about ``seconds`` of wall time."""
    op()  # warm caches (key objects, Z) as a long-running gateway would have them
    done, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(8):
            op()
        done += 8
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def openssl_speed(seconds: float) -> dict[str, float] | None:
    """``openssl speed -seconds N sm2`` sign/s and verify/s, or None where unavailable."""
    exe = shutil.which("openssl")
    if exe is None:
        return None
    out = subprocess.run(
        [exe, "speed", "-seconds", str(max(1, round(seconds))), "sm2"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    ).stdout
    match = _OPENSSL_LINE.search(out)
    if match is None:
        return None
    return {"sign": float(match["sign"]), "verify": float(match["verify"])}


def measure_backend(name: str, seconds: float) -> dict[str, float]:
    backend = get_backend(name)
    key = SM2PrivateKey.generate()
    signature = sm2_sign(key, _MESSAGE, backend=backend)
    return {
        "sign": _rate(lambda: sm2_sign(key, _MESSAGE, backend=backend), seconds),
        "verify": _rate(
            lambda: sm2_verify(key.public_key, _MESSAGE, signature, backend=backend), seconds
        ),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    seconds = float(args.seconds)
    fast = measure_backend("tongsuo", seconds)
    reference = measure_backend("gmssl", seconds)
    openssl = openssl_speed(seconds)
    openssl_sign = openssl["sign"] if openssl else None
    openssl_verify = openssl["verify"] if openssl else None

    def ratio(a: float, b: float | None) -> float | None:
        return round(a / b, 3) if b else None

    result: dict[str, Any] = {
        "bench": "crypto",
        "backend": "tongsuo",
        "reference_backend": "gmssl",
        "verify_per_s": round(fast["verify"], 1),
        "sign_per_s": round(fast["sign"], 1),
        "verify_per_s_reference": round(reference["verify"], 1),
        "sign_per_s_reference": round(reference["sign"], 1),
        "verify_per_s_openssl": openssl_verify,
        "sign_per_s_openssl": openssl_sign,
        "ratio_verify_to_openssl": ratio(fast["verify"], openssl_verify),
        "ratio_sign_to_openssl": ratio(fast["sign"], openssl_sign),
        "ratio_verify_to_reference": ratio(fast["verify"], reference["verify"]),
    }
    rows = [
        ("tongsuo (fast)", fast["sign"], fast["verify"]),
        ("gmssl (reference)", reference["sign"], reference["verify"]),
    ]
    if openssl:
        rows.append(("openssl speed", openssl["sign"], openssl["verify"]))
    print(f"{'SM2, one core':<22}{'sign/s':>12}{'verify/s':>12}")
    for label, sign, verify in rows:
        print(f"{label:<22}{sign:>12,.0f}{verify:>12,.0f}")
    print(
        f"verify ratio fast/openssl = {result['ratio_verify_to_openssl']}, "
        f"fast/reference = {result['ratio_verify_to_reference']}"
    )
    return result
