"""manifest.yml: the app is created in one step with the minimal scopes the code uses."""

from __future__ import annotations

import re
from pathlib import Path

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yml"


def test_manifest_scopes_and_settings() -> None:
    text = MANIFEST.read_text(encoding="utf-8")
    scopes = re.findall(r"^\s+- ([a-z:.]+)\s+#", text, flags=re.MULTILINE)
    assert scopes == ["commands", "chat:write", "usergroups:read", "files:write"]
    assert "chat:write.public" not in text.split("oauth_config")[1]
    assert re.search(r"^\s+- command: /sstp$", text, flags=re.MULTILINE)
    assert re.search(r"^\s+usage_hint: ", text, flags=re.MULTILINE)
    assert re.search(r"^\s+socket_mode_enabled: true$", text, flags=re.MULTILINE)
    assert re.search(r"interactivity:\n\s+is_enabled: true", text)
    assert "\t" not in text
