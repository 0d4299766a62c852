"""docs/findings.md against the code's catalogue: every ID documented, no ID the code lacks, each in
the family that raises it, and its fixability as the family declares it."""

from __future__ import annotations

import re
from pathlib import Path

from commands.rules import CATALOGUE, FAMILIES, FIXABLE_IDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "findings.md"
ROW_RE = re.compile(r"^\| `([A-Z0-9_]+)` \| [^|]+ \| (\w+) \| (yes|no) \|", re.M)


def _rows() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    for m in ROW_RE.finditer(DOC.read_text(encoding="utf-8")):
        assert m.group(1) not in rows, f"{m.group(1)} has two rows"
        rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


CODE_IDS = set(CATALOGUE)


def test_every_id_has_exactly_one_family() -> None:
    declared = [str(id) for module in FAMILIES for id in module.FINDINGS]
    assert len(declared) == len(set(declared)) == len(CODE_IDS)


def test_the_table_names_exactly_the_code_ids() -> None:
    documented = set(_rows())
    assert documented - CODE_IDS == set(), "the docs name IDs the code lacks"
    assert CODE_IDS - documented == set(), "IDs missing from docs/findings.md"


def test_family_and_fixability_match_the_code() -> None:
    for id, (family, fixable) in _rows().items():
        assert CATALOGUE[id] == family, id
        assert (fixable == "yes") == (id in FIXABLE_IDS), id


def test_no_backticked_upper_case_id_in_the_doc_is_unknown() -> None:
    text = DOC.read_text(encoding="utf-8")
    mentioned = set(re.findall(r"`([A-Z][A-Z0-9]+(?:_[A-Z0-9]+)+)`", text))
    assert mentioned <= CODE_IDS, sorted(mentioned - CODE_IDS)
