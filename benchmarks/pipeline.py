"""Benchmark the Roman exposure pipeline on a full-size simulated exposure.

Each stage runs in a fresh process so its peak RSS is its own:

* ``detector``: dq_init → saturation → refpix → dark_decay → wfi18_transient →
  linearity → dark_current, in memory (the issue-3 steps);
* ``rampfit``: the pipeline from the _uncal file to the written _rampfit image;
* ``cal``: the whole pipeline, file in → _cal, _cat, _segm, _wcs out.

Usage::

    python benchmarks/pipeline.py                       # 4096x4096, MA table 4, warm cache
    python benchmarks/pipeline.py --cold --ma-table 110 # also a run with an empty numba cache
    python benchmarks/pipeline.py --shape 1024 1024 --stages detector

Prints a table and writes ``benchmarks/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
STAGES = ("detector", "rampfit", "cal")
DETECTOR_STEPS = (
    "dq_init.DQInitStep",
    "saturation.SaturationStep",
    "refpix.RefPixStep",
    "dark_decay.DarkDecayStep",
    "wfi18_transient.WFI18TransientStep",
    "linearity.LinearityStep",
    "dark_current.DarkCurrentStep",
)
LATER_STEPS = ("assign_wcs", "flatfield", "photom", "source_catalog", "tweakreg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=2, default=(4096, 4096))
    parser.add_argument("--ma-table", type=int, default=4)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--cold", action="store_true", help="also run with an empty numba cache")
    parser.add_argument("--json", type=Path, default=RESULTS / "pipeline.json")
    parser.add_argument("--worker", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_run_stage(args.worker, args.input, args.out)))
        return

    RESULTS.mkdir(parents=True, exist_ok=True)
    uncal = _exposure(tuple(args.shape), args.ma_table)
    report = {
        "shape": list(args.shape),
        "ma_table": args.ma_table,
        "cpu_count": os.cpu_count(),
        "input": str(uncal),
        "runs": [],
    }
    for stage in args.stages:
        if args.cold:
            with tempfile.TemporaryDirectory() as cache:
                report["runs"].append(_spawn(stage, uncal, numba_cache=cache, label="cold"))
        _spawn(stage, uncal, label="warm-up")  # fills the numba cache
        report["runs"].append(_spawn(stage, uncal, label="warm"))
    _print(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


def _exposure(shape: tuple[int, int], ma_table: int) -> Path:
    """The simulated _uncal file of this shape and MA table (made once, then reused)."""
    from rampcal.core.readpattern import MA_TABLES
    from rampcal.simulate.roman import write_exposure

    path = RESULTS / f"bench_{shape[0]}x{shape[1]}_ma{ma_table}_uncal.asdf"
    if not path.exists():
        t0 = time.perf_counter()
        write_exposure(path, shape=shape, seed=2027, read_pattern=MA_TABLES[ma_table])
        print(f"simulated {path.name} in {time.perf_counter() - t0:.1f} s")
    return path


def _spawn(stage: str, uncal: Path, *, label: str, numba_cache: str | None = None) -> dict:
    env = dict(os.environ)
    if numba_cache is not None:
        env["NUMBA_CACHE_DIR"] = numba_cache
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, __file__, "--worker", stage, "--input", str(uncal), "--out", out]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{stage} ({label}) failed with status {proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(stage=stage, label=label, process_wall_s=wall)
    return result


def _run_stage(stage: str, uncal: Path, out: Path) -> dict:
    """Worker: run one stage in this process and report its timings and peak RSS."""
    import importlib
    import logging

    from rampcal.timing import StepTimer, peak_rss_mb

    logging.getLogger("stpipe").setLevel(logging.WARNING)
    t_import = time.perf_counter()
    import rampcal.pipeline.exposure as exposure

    t0 = time.perf_counter()
    with StepTimer() as timer:
        if stage == "detector":
            model = str(uncal)
            for dotted in DETECTOR_STEPS:
                module, cls = dotted.rsplit(".", 1)
                step = getattr(importlib.import_module(f"rampcal.steps.{module}"), cls)
                model = step().run(model)
        else:
            steps = {}
            suffix = "cal"
            if stage == "rampfit":
                steps = {key: {"skip": True} for key in LATER_STEPS}
                suffix = "rampfit"
            exposure.ExposurePipeline.call(
                str(uncal), save_results=True, output_dir=str(out), suffix=suffix, steps=steps
            )
    total = time.perf_counter() - t0
    return {
        "import_s": t0 - t_import,
        "total_s": total,
        "steps_s": {k: v for k, v in timer.times.items() if k != "ExposurePipeline"},
        "steps_peak_rss_mb": {k: v for k, v in timer.peak_mb.items() if k != "ExposurePipeline"},
        "steps_start_rss_mb": {k: v for k, v in timer.start_mb.items() if k != "ExposurePipeline"},
        "peak_rss_mb": peak_rss_mb(),
        "outputs": sorted(p.name for p in out.iterdir()) if out.exists() else [],
    }


def _print(report: dict) -> None:
    print(f"\nRoman exposure pipeline, {report['shape'][0]}x{report['shape'][1]}, "
          f"MA table {report['ma_table']}, {report['cpu_count']} CPUs")  # fmt: skip
    for run in report["runs"]:
        print(f"  {run['stage']:<9s} {run['label']:<5s} total {run['total_s']:7.2f} s   "
              f"peak RSS {run['peak_rss_mb']:7.0f} MB")  # fmt: skip
        for name, sec in run["steps_s"].items():
            mem = run["steps_peak_rss_mb"].get(name, float("nan"))
            start = run.get("steps_start_rss_mb", {}).get(name, float("nan"))
            print(f"      {name:<22s} {sec:7.2f} s   {start:7.0f} -> {mem:5.0f} MB")


if __name__ == "__main__":
    main()
