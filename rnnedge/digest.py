"""SHA-256 for the device path (bundle files, snapshot payloads).

CPython's own implementation, not hashlib's: hashlib maps OpenSSL's libcrypto, 4 MB of the runtime's 60 MB
resident-memory budget, to hash a few hundred KB once at load (~1 ms either way).
"""

from __future__ import annotations

from pathlib import Path

try:
    from _sha256 import sha256  # CPython 3.10-3.11
except ImportError:
    try:
        from _sha2 import sha256  # CPython 3.12+
    except ImportError:
        from hashlib import sha256


def sha256_bytes(data: bytes) -> str:
    return sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
