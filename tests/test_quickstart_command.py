"""The README's Quick start main command, exactly: an offline batch over examples/prompts.txt."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_offline_batch_of_the_example_prompts_leaves_files_and_a_manifest(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    assert "gptunnel --offline batch examples/prompts.txt -o out" in readme
    out = tmp_path / "out"
    prompts_file = str(ROOT / "examples" / "prompts.txt")
    command = [sys.executable, "-m", "gptunnel_async.cli", "--offline", "batch"]
    done = subprocess.run(
        [*command, prompts_file, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    prompts = [p for p in (ROOT / "examples" / "prompts.txt").read_text("utf-8").splitlines() if p]
    manifest = [
        json.loads(line) for line in (out / "manifest.jsonl").read_text("utf-8").splitlines()
    ]
    assert len(manifest) == len(prompts) and all(entry["ok"] for entry in manifest)
    assert sorted(entry["prompt"] for entry in manifest) == sorted(prompts)
    for entry in manifest:
        data = (out / entry["file"]).read_bytes()
        assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
