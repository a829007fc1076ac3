"""Benchmark: evaluating each committed stack under the mock engine vs. importing the SDKs alone.

    .venv/bin/python -m benchmarks.offline [--repeat 5]

Every measurement is the wall time of a fresh interpreter (`python -c ...`), so start-up and imports
count the same way on both sides; each is repeated and the median is reported.

- evaluate:   read the stack file and evaluate the program with the mock engine (`render.load`; for a
              tenant stack that includes evaluating its central stack), nothing written.
- SDK import: import exactly the SDK modules (pulumi, pulumi_aws, pulumi_eks, pulumi_kubernetes,
              pulumi_random, pulumi_tls and their submodules) that the evaluation loaded — the SDKs
              load their big submodules (e.g. pulumi_aws.ec2) lazily, so `import pulumi_aws` alone
              would understate what any program using them pays.
- ratio:      evaluate / SDK import: what the program itself costs on top of its SDKs (target <= 1.5).

The top-level-only import time (`import pulumi_aws, ...`) is printed too, for reference.
Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDKS = ("pulumi", "pulumi_aws", "pulumi_eks", "pulumi_kubernetes", "pulumi_random", "pulumi_tls")
TARGET = 1.5

EVALUATE = """
import sys
from pathlib import Path
from klutch.offline import render
project, directory, stack = next(
    (p, d, s) for p, d, s in render.committed_stacks() if p.name == sys.argv[1] and s == sys.argv[2])
render.load(project, directory, stack)
if sys.argv[3:] == ["--modules"]:
    import json
    sdks = {SDKS!r}
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in sdks)))
"""

IMPORT = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
"""


def wall(code: str, *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{done.stderr}")
    return elapsed, done.stdout


def median(code: str, *args: str, repeat: int) -> float:
    return statistics.median(wall(code, *args)[0] for _ in range(repeat))


def paired(a: tuple[str, ...], b: tuple[str, ...], repeat: int) -> tuple[float, float]:
    """Medians of two measurements taken alternately, so machine drift hits both alike."""
    times = [(wall(*a)[0], wall(*b)[0]) for _ in range(repeat)]
    return statistics.median(t for t, _ in times), statistics.median(t for _, t in times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (median reported)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from klutch.offline import render

    evaluate = EVALUATE.replace("{SDKS!r}", repr(SDKS))
    top_level = median(IMPORT, json.dumps(list(SDKS)), repeat=args.repeat)
    print(f"{'stack':<28} {'evaluate':>9} {'SDK import':>11} {'ratio':>6}")
    worst = 0.0
    for project, _, stack in render.committed_stacks():
        name = f"{project.name}/{stack}"
        modules = wall(evaluate, project.name, stack, "--modules")[1].strip().splitlines()[-1]
        t_eval, t_sdk = paired((evaluate, project.name, stack), (IMPORT, modules), args.repeat)
        ratio = t_eval / t_sdk
        worst = max(worst, ratio)
        print(f"{name:<28} {t_eval:>8.2f}s {t_sdk:>10.2f}s {ratio:>5.2f}x   ({len(json.loads(modules))} SDK modules)")
    print(f"top-level SDK import only (import {', '.join(SDKS)}): {top_level:.2f}s")
    print(
        f"median of {args.repeat} fresh interpreters each; worst ratio {worst:.2f}x "
        f"({'meets' if worst <= TARGET else 'misses'} the target <= {TARGET}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
