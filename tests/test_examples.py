"""The README's quick start really runs offline and leaves whole result files on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_generates_and_saves_every_prompt(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\nодин кот\n\n  a dog  \n", encoding="utf-8")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(prompts), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["0000.webp", "0001.webp", "0002.webp"]
    for f in files:
        data = f.read_bytes()
        assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert "failed" not in done.stdout
