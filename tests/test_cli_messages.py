"""What a newcomer's first commands say when something is missing: one clear line each."""

from __future__ import annotations

import subprocess

from tools.processes import CACHEGATE, REPO


def test_eval_without_the_shared_pairs_says_where_to_get_them(tmp_path):
    missing = tmp_path / "qqp_dev.jsonl"
    done = subprocess.run(
        [*CACHEGATE, "eval", "--pairs", str(missing)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode != 0
    assert f"no labeled pairs at {missing}" in done.stderr and "--pairs" in done.stderr
    assert "Traceback" not in done.stderr
