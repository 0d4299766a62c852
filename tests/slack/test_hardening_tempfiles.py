"""Issue 14: a lab run leaves neither its TLS folder (with a private key) nor its NTLM user file in the
system's temporary directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, os
from commands.lab import Lab
from commands.lab.lab import lab_ca_bundle
with Lab(["iis-binding"], tls=True) as lab:
    print(json.dumps({"tls": os.path.dirname(lab_ca_bundle()), "users": os.environ.get("NTLM_USER_FILE")}))
"""


def test_a_lab_run_cleans_its_temporary_files(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "TMPDIR": str(tmp_path)}
    env.pop("NTLM_USER_FILE", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, env=env, timeout=60, check=True, text=True)
    paths = json.loads(done.stdout.strip().splitlines()[-1])
    assert paths["tls"].startswith(str(tmp_path)) and paths["users"].startswith(str(tmp_path))
    assert not Path(paths["tls"]).exists()
    assert not Path(paths["users"]).exists()
    assert [p.name for p in tmp_path.iterdir()] == []
