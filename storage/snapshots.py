"""Content-addressed snapshot storage: canonical JSON, SHA-256, zlib.

A server that has not changed produces the same snapshot every few hours except for fields that
change on every probe; those are dropped before hashing (and are not stored), so identical states
are stored once however often they are checked.
"""

from __future__ import annotations

import hashlib
import json
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

#: Top-level snapshot v1 fields that change on every probe of an unchanged server. Events are kept:
#: they are evidence, and they only change when something happened.
VOLATILE_FIELDS = frozenset({"collected_at", "vpn_connections"})


def stable_snapshot(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The snapshot without its volatile fields: what is hashed and stored."""
    return {key: value for key, value in snapshot.items() if key not in VOLATILE_FIELDS}


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: equal values give equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def snapshot_hash(snapshot: dict[str, Any]) -> str:
    """SHA-256 (lower-case hex) of the canonical JSON of the stable part of a snapshot."""
    return hashlib.sha256(canonical_json(stable_snapshot(snapshot))).hexdigest()


def encode_snapshot(snapshot: dict[str, Any]) -> tuple[str, bytes, int]:
    """(hash, compressed body, uncompressed size) of a snapshot."""
    raw = canonical_json(stable_snapshot(snapshot))
    return hashlib.sha256(raw).hexdigest(), zlib.compress(raw, 6), len(raw)


def decode_snapshot(body: bytes) -> dict[str, Any]:
    value = json.loads(zlib.decompress(body))
    if not isinstance(value, dict):
        raise ValueError("stored snapshot is not a JSON object")
    return value


class RedactedEncoder:
    """`encode_snapshot(redact(snapshot))`, remembered for the snapshots seen last.

    An unchanged server sends the same snapshot on every check, and redacting, encoding, hashing and
    compressing it again gives the same bytes: the result is a pure function of the snapshot. Equal
    canonical JSON of the *unredacted* stable part means equal input to that function as far as it
    can tell (tuples and lists, `1` and `"1"` keys aside, which redaction and encoding treat alike
    too), so the SHA-256 of that JSON keys the memory. Only the encoded result is remembered, never
    whether the database holds it: the caller still writes it every time.
    """

    def __init__(self, redact: Callable[[Any], Any], max_entries: int = 2048) -> None:
        self._redact = redact
        self._max_entries = max_entries
        self._memory: OrderedDict[bytes, tuple[str, bytes, int]] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, snapshot: dict[str, Any]) -> tuple[str, bytes, int]:
        """(hash, compressed body, uncompressed size) of the redacted snapshot."""
        try:
            key = hashlib.sha256(canonical_json(stable_snapshot(snapshot))).digest()
        except (TypeError, ValueError):
            # Not JSON as it is (an object under a secret key, which redaction replaces): no memory.
            return encode_snapshot(self._redact(snapshot))
        with self._lock:
            known = self._memory.get(key)
            if known is not None:
                self._memory.move_to_end(key)
                return known
        encoded = encode_snapshot(self._redact(snapshot))
        with self._lock:
            self._memory[key] = encoded
            if len(self._memory) > self._max_entries:
                self._memory.popitem(last=False)
        return encoded
