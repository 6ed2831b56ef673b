"""Start-up cost of the command line: ``image2point --help`` beside a bare interpreter.

Run: ``.venv/bin/python benchmarks/bench_startup.py [--quick] [--repetitions N] [--json out.json]``.

Each candidate is a fresh interpreter (``subprocess.run``, output discarded) started with this
repository first on ``PYTHONPATH``: ``python -c pass`` (the baseline), ``python -m image2point.cli --help``,
``... train --help``, ``python -c "import image2point"``, and, for scale, ``python -c "import torch"``,
which the package root and the help commands must not pay for. Candidates are interleaved (common.py);
the report gives the minimum and the median wall time of each, the median over the baseline's median
and the median minus it. Target: ``--help`` under 0.3 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

BASELINE = "python -c pass"
HELP = "image2point --help"
TARGET_HELP_SECONDS = 0.3
REPETITIONS = 15
QUICK_REPETITIONS = 5
COMMANDS = {
    BASELINE: ["-c", "pass"],
    HELP: ["-m", "image2point.cli", "--help"],
    "image2point train --help": ["-m", "image2point.cli", "train", "--help"],
    "import image2point": ["-c", "import image2point"],
    "import torch": ["-c", "import torch"],
}


@dataclass(frozen=True)
class StartupResult:
    command: str
    min_s: float
    median_s: float
    ratio_to_baseline: float
    extra_s: float


def measure(repetitions: int) -> list[StartupResult]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(common.REPO_ROOT), os.environ.get("PYTHONPATH", "")])}

    def runner(arguments: list[str]):
        return lambda: subprocess.run([sys.executable, *arguments], env=env, stdout=subprocess.DEVNULL, check=True)

    times = common.time_interleaved({name: runner(arguments) for name, arguments in COMMANDS.items()}, repetitions)
    baseline = common.median(times[BASELINE])
    return [StartupResult(name, min(seconds), common.median(seconds), common.median(seconds) / baseline,
                          common.median(seconds) - baseline) for name, seconds in times.items()]


def main() -> int:
    parser = common.standard_arguments(__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, help=f"runs per command (default {REPETITIONS}, "
                                                        f"{QUICK_REPETITIONS} with --quick)")
    args = parser.parse_args()
    repetitions = args.repetitions or (QUICK_REPETITIONS if args.quick else REPETITIONS)
    results = measure(repetitions)
    print(common.format_table(f"start-up, {repetitions} interleaved runs each (seconds)",
                              ["command", "min", "median", f"x {BASELINE}", "extra"],
                              [(r.command, r.min_s, r.median_s, r.ratio_to_baseline, r.extra_s) for r in results]))
    help_median = next(r.median_s for r in results if r.command == HELP)
    verdict = "meets" if help_median < TARGET_HELP_SECONDS else "misses"
    print(f"\n{HELP}: median {help_median:.3f} s, {verdict} the {TARGET_HELP_SECONDS} s target")
    if args.json:
        common.write_json(args.json, "bench_startup", results, {"repetitions": repetitions})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
