"""Passwords as salted, slow scrypt hashes; tokens as random strings stored only as digests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# scrypt cost: 2**15 x 8 x 128 bytes = 32 MiB and ~0.1 s per hash on a CPU core (OWASP's floor
# for scrypt is N=2**17 with r=8; this is the cost the single Store replica can afford per login).
_N, _R, _P = 2**15, 8, 1
_MAXMEM = 64 * 1024 * 1024
# A password that long only costs hashing time; nobody types more.
MAX_PASSWORD_LENGTH = 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAXMEM)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored or len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), maxmem=_MAXMEM
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def new_token() -> str:
    """256 random bits, hex: what the client holds."""
    return secrets.token_hex(32)


def token_digest(token: str) -> str:
    """What the database holds: a leaked database file gives no usable token."""
    return hashlib.sha256(token.encode()).hexdigest()
