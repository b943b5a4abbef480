#!/usr/bin/python3
"""A latency profile's calibration models timed again, each in a fresh `lamda bench` process (as
eval-predictor times its models in a process of their own), against the times the profile
recorded while profiling (docs/latency.md, "On an idle machine"):

    /usr/bin/python3 bench/recheck_calibration.py build/lamda P.json [--models 60]

A median ratio below 1 means the profile recorded its calibration models slower than a fresh
process runs them, and its predictions will run high by about as much.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lamda")
    ap.add_argument("profile")
    ap.add_argument("--models", type=int, default=60, help="calibration models to time again (spread evenly)")
    a = ap.parse_args()
    prof = json.load(open(a.profile))
    seed = prof["calibration_seed"]
    # The tiny calibration models come from a sample space of their own; the rest are model i of
    # `lamda sample --seed SEED --family F`.
    rows = [c for c in prof["calibration_models"] if re.match(r"calib-\d+-", c["name"])]
    rows = rows[:: max(1, len(rows) // a.models)][: a.models]
    ratios = []
    with tempfile.TemporaryDirectory() as work:
        for c in rows:
            index, family = re.match(r"calib-(\d+)-(.*)", c["name"]).groups()
            d = os.path.join(work, family)
            if not os.path.isdir(d):
                subprocess.run([a.lamda, "sample", "--count", str(len(prof["calibration_models"])), "--seed",
                                str(seed), "--family", family, "--out", d], check=True, capture_output=True)
            out = subprocess.run([a.lamda, "bench", os.path.join(d, f"sample_{int(index):04d}.lamda"), "--runs", "15",
                                  "--json"], check=True, capture_output=True, text=True).stdout
            ms = json.loads(out)["median_ms"]
            ratios.append(ms / c["ms"])
            print(f"{c['name']:32s} profile {c['ms']:.4f} ms  bench {ms:.4f} ms  ratio {ratios[-1]:.3f}", flush=True)
    ratios.sort()
    print(f"n={len(ratios)} median bench/profile {statistics.median(ratios):.3f} "
          f"p10 {ratios[len(ratios) // 10]:.3f} p90 {ratios[9 * len(ratios) // 10]:.3f}")


if __name__ == "__main__":
    main()
