"""The quick path of `storage.redaction` scrubs exactly what running every pattern on every string does.

`_reference_*` below is the plain algorithm (control characters stripped, then the five secret
patterns on every string, every key looked up): the fast path must agree with it on every input,
including the non-ASCII letters that `(?i)` folds onto ASCII ones.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commands.errors import strip_control
from storage import redaction
from storage.redaction import REDACTED, could_need_redaction, redact, redact_text
from storage.snapshots import decode_snapshot, encode_redacted_snapshot, encode_snapshot, stable_snapshot


def _reference_text(text: str) -> str:
    text = strip_control(text)
    for pattern in redaction._SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def _reference(value: Any) -> Any:
    if isinstance(value, str):
        return _reference_text(value)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if (
                isinstance(key, str)
                and key not in redaction._HARMLESS_KEYS
                and redaction._SECRET_KEY_RE.search(key)
                and item not in (None, "", False)
            ):
                out[key] = REDACTED
            else:
                out[key] = _reference(item)
        return out
    if isinstance(value, list | tuple):
        return [_reference(item) for item in value]
    return value


# Pieces that make the patterns match, nearly match, or match only through case folding.
_PIECES = [
    "xoxb-", "xoxp-12ab", "xapp-1-A", "XOXB-", "Authorization: Bearer ", "authorization=", "abcdefgh12345678",
    "password", "PassWord", "passwd", "pwd", "secret", "token", "Token", "credential", "-Password ", "-secret ",
    "-token", "=", ": ", '"', "'", "\"password\": ", " ", "\t", "\n", "\x1b[31m", "\x00", "\x7f", "\x85", "\x9f",
    "pa\x01ssword=", "to\x1bken=", "pa\u017fsword=", "\u017fecret=", "\u212a", "tok\u0130en", "\u00e9",
    "xo\x07xb-abc", "[REDACTED]",
    "pwd=", "PWD: ", "passwd:", "secret=", "token:", "-Credential ", "x", "-", "SSTP", "C65230B546AE82A89E55C7AC1C37A92F21C40BB4",
]
_texts = st.one_of(
    st.lists(st.sampled_from(_PIECES), max_size=8).map("".join),
    st.text(max_size=40),
    st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=6)), max_size=8).map("".join),
)
_keys = st.one_of(
    st.sampled_from(["password", "Password_env", "message_ts", "token_kind", "api-key", "Cookie", "name", "detail",
                     "credential", "authorization", "thumbprint", "pa\u017fsword"]),
    st.text(max_size=12),
)
_leaves = st.one_of(_texts, st.none(), st.booleans(), st.integers(-2, 2), st.floats(allow_nan=False), st.just(""))
_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(_keys, inner, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(_texts)
def test_redact_text_matches_every_pattern_on_every_string(text: str) -> None:
    assert redact_text(text) == _reference_text(text)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_redact_matches_the_full_walk(value: Any) -> None:
    assert redact(value) == _reference(value)


@pytest.mark.parametrize(
    "text",
    ["xoxb-1a", "xoxr-1a", "xapp-1a", "Authorization: abcdefgh", "AUTHORIZATION=Bearer abcdefgh", "Password=x",
     "passwd: x", "pwd=x", "PWD='x'", "secret: x", "Token=x", "-Credential x", "-PASSWORD 'x y'", "-secret x",
     "-token x"],
)
def test_each_secret_word_alone_is_redacted(text: str) -> None:
    # One minimal secret per word of `_SECRET_WORDS`: dropping a word from the quick look fails here.
    assert REDACTED in redact_text(text)
    assert redact_text(f"ok {text} ok") == _reference_text(f"ok {text} ok")


def test_case_folded_and_control_split_secrets_are_still_caught() -> None:
    # `(?i)` matches U+017F (long s) as `s`: such a string must take the full path.
    assert redact_text("pa\u017f\u017fword=hunter2") == f"pa\u017f\u017fword={REDACTED}"
    # A control character inside the word is stripped first, which makes the word whole.
    assert redact_text("pass\x1bword=hunter2 ok") == f"password={REDACTED} ok"
    assert redact_text("TOKEN: abc def") == f"TOKEN: {REDACTED} def"
    assert redact_text("xoxb-123-abc") == REDACTED
    assert redact_text("plain thumbprint C65230B546AE82A89E55C7AC1C37A92F21C40BB4\n") == (
        "plain thumbprint C65230B546AE82A89E55C7AC1C37A92F21C40BB4\n"
    )
    assert redact_text("bell\x07 and csi\x9b") == "bell and csi"


def test_secret_keys_are_redacted_whatever_the_value_type_and_harmless_keys_kept() -> None:
    value = {"password": 5, "token": [1], "secret": {"a": 1}, "api_key": 0, "cookie": None, "credential": "",
             "message_ts": "1.2", "token_kind": "bot", "nested": ({"Authorization": "x"},), 3: "password=abc"}
    assert redact(value) == {
        "password": REDACTED, "token": REDACTED, "secret": REDACTED, "api_key": 0, "cookie": None,
        "credential": "", "message_ts": "1.2", "token_kind": "bot", "nested": [{"Authorization": REDACTED}],
        3: f"password={REDACTED}",
    }
    # Asked twice (the second answer comes from the key cache): the same verdicts.
    assert redact(value) == _reference(value)


_snapshots = st.dictionaries(
    st.one_of(_keys, st.sampled_from(["collected_at", "vpn_connections", "schema"])), _values, max_size=6
)


@settings(max_examples=100, deadline=None)
@given(_snapshots)
def test_snapshot_encoding_without_the_walk_is_the_redacted_encoding(snapshot: dict[str, Any]) -> None:
    assert encode_redacted_snapshot(snapshot) == encode_snapshot(redact(snapshot))


@pytest.mark.parametrize(
    "snapshot",
    [
        {"host": {"name": "SRV1"}, "certificates": ({"der": "MIIB+/="},), "n": [1, 2.5, None, True]},
        {"cookie": "abc"},
        {"API-Key": 1},
        {"detail": "xoxb-123-abc"},
        {"detail": "line\r\nnext"},
        {"detail": "esc\x1b[0m"},
        {"detail": "del\x7f"},
        {"detail": "c1\x85"},
        {"detail": "pa\u017fsword=x"},
        {"detail": "tab\tand newline\n stay"},
        {"password": object()},  # not JSON as it is: redaction replaces it
        {"collected_at": "2026-01-01T00:00:00Z", "vpn_connections": 3, "x": "y"},
    ],
)
def test_snapshot_encoding_examples(snapshot: dict[str, Any]) -> None:
    fast = encode_redacted_snapshot(snapshot)
    assert fast == encode_snapshot(redact(snapshot))
    stored = decode_snapshot(fast[1])
    assert stored == _reference(stable_snapshot(snapshot))


def test_a_value_that_is_not_json_still_fails_as_before() -> None:
    with pytest.raises(TypeError):
        encode_redacted_snapshot({"when": object()})


def test_could_need_redaction_sees_what_redaction_acts_on() -> None:
    assert not could_need_redaction('{"a":"b","c":[1,2.5,null,true]}')
    for text in ('{"token_kind":"bot"}', '{"x":"PWD=1"}', '{"x":"\\u001b"}', '{"x":"\\r"}', '{"x":"\x7f"}',
                 '{"x":"\u00e9"}', '{"Cookie":1}', '{"x":"XAPP-1"}'):
        assert could_need_redaction(text), text
