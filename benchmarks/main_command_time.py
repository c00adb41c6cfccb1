"""Time the README's main command exactly as written, and say where its time went.

    python benchmarks/main_command_time.py CACHE_DIR WORK_DIR    # run twice with one CACHE_DIR: cold, then warm

Runs ``levit-bench --device cpu --model levit_256`` in WORK_DIR with ``LEVIT_BENCH_CACHE=CACHE_DIR``,
timestamps its stderr lines (the moment it says "timing N prepared entries" ends the preparation),
and reads from the results file it wrote the timed calls' seconds, the export seconds and the
canary's cost.  Prints one JSON object.  Figures: docs/performance.md.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time


def main(cache: str, cwd: str) -> int:
    os.makedirs(cwd, exist_ok=True)
    env = {**os.environ, "LEVIT_BENCH_CACHE": cache}
    t0 = time.perf_counter()
    proc = subprocess.Popen(["levit-bench", "--device", "cpu", "--model", "levit_256"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marks = [(round(time.perf_counter() - t0, 1), line.rstrip()[:120]) for line in proc.stderr]
    out = proc.stdout.read()
    proc.wait()
    total = time.perf_counter() - t0
    if proc.returncode:
        print(json.dumps({"rc": proc.returncode, "stderr": marks[-10:], "stdout": out[-2000:]}, indent=1))
        return 1
    newest = max(glob.glob(os.path.join(cwd, "results", "*.json")), key=os.path.getmtime)
    entries = json.load(open(newest))["results"]
    started = next((t for t, line in marks if "prepared entries" in line), None)
    print(json.dumps({
        "total_s": round(total, 1), "until_timing_s": started,
        "timed_calls_s": round(sum(sum((e["timing"] or {}).get("samples_s") or []) for e in entries), 1),
        "export_s": round(sum(e["export"].get("export_s") or 0 for e in entries), 1),
        "canary_s": round(sum(((e["timing"] or {}).get("canary") or {}).get("cost_s") or 0 for e in entries), 1),
        "entries": len(entries), "ok": sum(e["status"] == "ok" for e in entries), "results": newest}, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
