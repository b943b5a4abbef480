#!/usr/bin/env bash
# Candidates/min of a parallel search (docs/scale.md, "Throughput"): an 8-candidate accuracy search on a
# 2,000/500-image slice of Fashion-MNIST, one process vs --workers 2 (RUNS="1 w2 n3": also mpirun -n 3).
# usage: RUNS="1 w2" bash bench/scale_throughput.sh PATH_TO_LAMDA WORKDIR
set -u
lamda=$1; w=$2; mkdir -p "$w/fm"; cd "$w"
/usr/bin/python3 - /usr/share/datasets/fashion-mnist "$w/fm" <<'PY'
import gzip, struct, sys
src, dst = sys.argv[1], sys.argv[2]
for split, n in (("train", 2000), ("t10k", 500)):
    with gzip.open(f"{src}/{split}-images-idx3-ubyte.gz") as f:
        magic, count, rows, cols = struct.unpack(">IIII", f.read(16))
        images = f.read(n * rows * cols)
    with gzip.open(f"{src}/{split}-labels-idx1-ubyte.gz") as f:
        f.read(8)
        labels = f.read(n)
    open(f"{dst}/{split}-images-idx3-ubyte", "wb").write(struct.pack(">IIII", magic, n, rows, cols) + images)
    open(f"{dst}/{split}-labels-idx1-ubyte", "wb").write(struct.pack(">II", 2049, n) + labels)
PY
printf '{"name": "fm_slice", "input": [28, 28, 1], "classes": 10, "dataset": "./fm",\n "constraints": {"latency_ms": 0.05}, "budget": {"max_candidates": 8}}\n' > slice.json
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
common=(--final-top 1 --final-epochs 1 --runs 10 --confirm-runs 10 --seed 2 -q)
for run in ${RUNS:-1 w2}; do
  rm -rf "runs/$run"; start=$(date +%s.%N); load=$(cut -d' ' -f1 /proc/loadavg)
  case $run in
    1) "$lamda" generate slice.json --out runs/1 "${common[@]}" ;;
    w2) "$lamda" generate slice.json --out runs/w2 --workers 2 "${common[@]}" ;;
    n3) mpirun --allow-run-as-root --oversubscribe --bind-to none -n 3 "$lamda" generate slice.json --out runs/n3 "${common[@]}" ;;
  esac
  rc=$?
  /usr/bin/python3 - "runs/$run" "$rc" "$load" <<'PY'
import json, sys
d, rc, load = sys.argv[1], sys.argv[2], sys.argv[3]
recs = [json.loads(l) for l in open(d + "/journal.jsonl") if l.strip()]
recs = [r for r in recs if "hash" in r]
rep = json.load(open(d + "/report.json"))
st = rep.get("timings", {}).get("stages", {})
el = recs[-1]["elapsed_s"]
print(f"{d}: rc {rc}, {len(recs)} records in {el:.1f} s = {60*len(recs)/el:.1f} candidates/min; stages {st}; load at start {load}")
PY
done
