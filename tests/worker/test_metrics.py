"""Metrics aggregate across processes in multiprocess mode (several workers or gateway processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RECORD = (
    "from worker import metrics\n"
    "metrics.IMAGES.labels('auto').inc()\n"
    "metrics.INFLIGHT.inc(2)\n"
    "metrics.BATCH_SIZE.observe(3)\n"
)
REPORT = "from worker import metrics\nprint(metrics.exposition()[0].decode())\n"


def run(code: str, multiproc_dir: Path) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_two_processes_add_up(tmp_path: Path) -> None:
    """Counters, histograms and live-sum gauges add up over processes; a process that marks itself
    dead on exit (as `emvnet worker` and `emvnet serve` do) leaves the gauges."""
    run(RECORD, tmp_path)
    run(RECORD, tmp_path)
    text = run(REPORT, tmp_path)
    lines = {
        line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("emvnet_")
    }
    assert lines['emvnet_images_processed_total{model="auto"}'] == 2
    assert lines["emvnet_batch_size_count"] == 2 and lines["emvnet_batch_size_sum"] == 6
    assert lines["emvnet_inflight_jobs"] == 4
    run(RECORD + "metrics.mark_process_dead()\n", tmp_path)
    text = run(REPORT, tmp_path)
    lines = {
        line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("emvnet_")
    }
    assert lines['emvnet_images_processed_total{model="auto"}'] == 3 and lines["emvnet_inflight_jobs"] == 4
