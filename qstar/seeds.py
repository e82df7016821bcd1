"""Seeds derived from parts (a run seed, a problem id, a request count): the same parts give the same seed on any
machine and in any process, so a problem's samples do not depend on which worker or batch it ran in."""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from the parts' text (`repr`, so 1 and "1" differ)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
