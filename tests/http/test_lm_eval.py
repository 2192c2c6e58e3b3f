"""lm-evaluation-harness, unchanged (its own command line, in a child process), runs its
``local-completions`` model against the server on a small task of our own
(tests/http/lm_eval_task) and scores above chance. It finds the server's tokenizer by
itself (``/models/{id}/tokenizer_info``: its remote backend), sends token ids, and reads
the continuations' log-probabilities from echo, as it does with any OpenAI-style server.

lm-eval is the ``eval`` extra, not ``dev`` (it brings ~500 MB): without it this skips,
and .ci/run installs it and runs this file in a step of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.http.conftest import MODEL

pytest.importorskip("lm_eval", reason="lm-eval is not installed: pip install -e '.[eval]'")
pytestmark = pytest.mark.lm_eval

ROOT = Path(__file__).resolve().parents[2]
TASK_DIR = Path(__file__).parent / "lm_eval_task"
CHANCE = 0.25  # four choices


def test_lm_eval_scores_above_chance(base_url, tmp_path):
    command = [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "local-completions",
        "--model_args",
        f"model={MODEL},base_url={base_url}/models/{MODEL}/v1/completions",
        "--include_path",
        str(TASK_DIR.relative_to(ROOT)),
        "--tasks",
        "rnnlm_fluency",
        "--output_path",
        str(tmp_path),
    ]
    # Offline: the task's data is a local file; nothing may be fetched from a hub.
    env = {
        **os.environ,
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    (results_file,) = tmp_path.rglob("results*.json")
    results = json.loads(results_file.read_text())["results"]["rnnlm_fluency"]
    assert results["acc,none"] > CHANCE, results
    # It tokenised with the server (remote backend), not a tokenizer of its own.
    assert "remote" in done.stdout + done.stderr.lower()
