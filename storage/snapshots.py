"""Content-addressed snapshot storage: canonical JSON, SHA-256, zlib.

A server that has not changed produces the same snapshot every few hours except for fields that
change on every probe; those are dropped before hashing (and are not stored), so identical states
are stored once however often they are checked.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any

from .redaction import could_need_redaction, redact

#: Top-level snapshot v1 fields that change on every probe of an unchanged server. Events are kept:
#: they are evidence, and they only change when something happened.
VOLATILE_FIELDS = frozenset({"collected_at", "vpn_connections"})
#: The same inside the client view (DESIGN 11): its own time stamp. Its handshakes and SSTP answer
#: are evidence and stay. (Kept, it made every check of an unchanged server store a new body.)
VOLATILE_CLIENT_VIEW_FIELDS = frozenset({"collected_at"})


def stable_snapshot(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The snapshot without its volatile fields: what is hashed and stored."""
    stable = {key: value for key, value in snapshot.items() if key not in VOLATILE_FIELDS}
    view = stable.get("client_view")
    if isinstance(view, dict) and VOLATILE_CLIENT_VIEW_FIELDS & view.keys():
        stable["client_view"] = {k: v for k, v in view.items() if k not in VOLATILE_CLIENT_VIEW_FIELDS}
    return stable


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



def encode_redacted_snapshot(snapshot: dict[str, Any]) -> tuple[str, bytes, int]:
    """`encode_snapshot(redact(snapshot))`, without walking the snapshot when redaction cannot change it.

    The canonical JSON of the unredacted stable part is made first: when `could_need_redaction` finds
    nothing in it that redaction acts on (no secret word in any key or string, no control character,
    all ASCII), redaction leaves every key and string as it is, so that JSON *is* the canonical JSON
    of the redacted snapshot (tuples and lists are the same JSON either way). Otherwise, and for
    values that are not JSON as they are, the full redaction runs, exactly as before.
    """
    try:
        text = json.dumps(stable_snapshot(snapshot), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        # Not JSON as it is (an object under a secret key, which redaction replaces): redact first.
        return encode_snapshot(redact(snapshot))
    if could_need_redaction(text):
        return encode_snapshot(redact(snapshot))
    raw = text.encode("utf-8")
    return hashlib.sha256(raw).hexdigest(), zlib.compress(raw, 6), len(raw)
