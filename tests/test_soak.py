"""A long run at a tiny size: memory, open files and step time stay flat."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = 2000

#: pix2pix at 32 px with a 5-level U-Net, batch 1, two loading processes, and everything a
#: long run does on a schedule: metric records, sample grids with the report, checkpoints
#: with retention, epoch ends (the bundled sample has 20 pairs: 100 epochs).
SETTINGS = ["data.load_size=36", "data.crop_size=32", "generator.name=unet",
            "generator.num_downs=5", "generator.ngf=4", "discriminator.ndf=4", "run.device=cpu",
            "data.batch_size=1", "data.num_workers=2", "schedule.n_epochs=1000",
            "schedule.n_epochs_decay=0", f"train.max_steps={STEPS}", "train.log_every=100",
            "train.sample_every=500", "train.checkpoint_every=500", "train.keep_last=2",
            "train.keep_every_epochs=0"]


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) the process has used: unlike wall time, it does not
    grow when other work on the machine takes the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_thousands_of_steps_without_growth(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTRANS_")}
    env |= {"IMTRANS_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    sets = [*SETTINGS, f"run.output_dir={tmp_path}"]
    proc = subprocess.Popen([sys.executable, "-m", "imtrans", "run",
                             str(ROOT / "recipes" / "pix2pix_edges2shoes.toml"),
                             *[a for s in sets for a in ("--set", s)]],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    metrics = tmp_path / "pix2pix_edges2shoes" / "metrics.jsonl"
    samples: list[tuple[int, int, int]] = []  # (step, resident bytes, open files)
    cpu: list[tuple[int, float]] = []  # (step, CPU seconds used)
    while proc.poll() is None:
        time.sleep(0.5)
        try:
            lines = metrics.read_text().splitlines() if metrics.exists() else []
            step = json.loads(lines[-1])["step"] if lines else 0
            samples.append((step, resident_bytes(proc.pid),
                            len(os.listdir(f"/proc/{proc.pid}/fd"))))
            cpu.append((step, cpu_seconds(proc.pid)))
        except (FileNotFoundError, ProcessLookupError, ValueError, AssertionError):
            continue  # the process ended, or a line was being written
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert records[-1]["step"] == STEPS

    # Compare the second quarter (after warm-up) with the last one.
    early = [s for s in samples if STEPS // 4 <= s[0] < STEPS // 2]
    late = [s for s in samples if s[0] >= 3 * STEPS // 4]
    assert early and late, samples
    print(f"resident MiB, median: early {statistics.median(r for _, r, _ in early) / 2**20:.1f}"
          f", late {statistics.median(r for _, r, _ in late) / 2**20:.1f}; open files, median: "
          f"early {statistics.median(f for *_, f in early)}, "
          f"late {statistics.median(f for *_, f in late)}")
    # Medians: a file being written, or a buffer being filled, at one sample is not a trend.
    growth = statistics.median(r for _, r, _ in late) - statistics.median(r for _, r, _ in early)
    assert growth < 16 * 2**20, f"resident memory grew by {growth / 2**20:.1f} MiB"
    assert statistics.median(f for *_, f in late) <= statistics.median(f for *_, f in early)

    # Step time as CPU time per step, early against late: wall time (images/s) also measures
    # whatever else the machine ran meanwhile, which a shared machine changes by more than a
    # leak would. A per-step leak (a list walked every step, a growing graph) costs CPU time.
    def per_step(low: int, high: int) -> float:
        window = [(step, used) for step, used in cpu if low <= step < high]
        assert len(window) >= 2, cpu
        (first_step, first_used), (last_step, last_used) = window[0], window[-1]
        return (last_used - first_used) / max(last_step - first_step, 1)

    early_cpu, late_cpu = per_step(STEPS // 4, STEPS // 2), per_step(3 * STEPS // 4, STEPS + 1)
    print(f"CPU ms per step: early {1000 * early_cpu:.2f}, late {1000 * late_cpu:.2f}")
    assert late_cpu < 1.6 * early_cpu, (early_cpu, late_cpu)
