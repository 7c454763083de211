"""`ult serve` exit codes: a tree that cannot run exits 1 after one line saying why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def test_serve_exits_1_naming_the_child_and_error_when_the_root_gives_up() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        root = Path(tmp)
        (root / "not-a-dir").write_text("")
        run = root / "run"
        run.mkdir(mode=0o700)
        config = root / "ult.toml"
        # The journal cannot be created inside a regular file: its actor fails to start.
        config.write_text(f'[journal]\npath = "{root}/not-a-dir/journal.db"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ULT_", "NOTIFY_"))}
        proc = subprocess.run(
            [sys.executable, "-m", "ult_actors.cli", "serve", "--config", str(config),
             "--socket", str(run / "ult.sock"), "--state-dir", str(root / "state"),
             "--log-format", "json"],
            capture_output=True, text=True, timeout=60, env=env,
        )
    assert proc.returncode == 1
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    final = [line for line in lines if line.get("level") == "critical"]
    assert len(final) == 1
    assert final[0]["child"] == "journal"
    assert "FileExistsError" in final[0]["error"] or "NotADirectoryError" in final[0]["error"]
    assert not (run / "ult.sock").exists()  # the socket never opened on a broken tree
