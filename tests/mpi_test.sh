#!/usr/bin/env bash
# `mpirun -n 3 lamda generate` on loopback (docs/scale.md): a capacity search and (with a trainer)
# a short accuracy search; the journal has each candidate once, records name the rank that
# evaluated them, the report is written, and the results equal a sequential run's in count and
# validity; a worker rank killed with kill -9 ends the job, and --resume under a different N
# completes it with nothing lost. Also `--workers 2` without MPI.
# usage: bash tests/mpi_test.sh PATH_TO_LAMDA SOURCE_DIR [MPIRUN]
set -u
lamda=$1
src=$2
mpirun=${3:-mpirun}
failures=0
passes=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3
# CI runs as root; several ranks on few cores; no binding (ranks would share one core).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI does not free its own strings at MPI_Finalize (LeakSanitizer reports them from libmpi
# under the sanitizer build): leak checks are off for the ranks here; every other ASan and UBSan
# check stays on, and lamda's own leaks are covered by the rest of the suite.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
mpi=("$mpirun" --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader
     --mca btl_vader_single_copy_mechanism none)

pass() { passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
expect_rc() {  # expect_rc RC COMMAND...: stdout to $tmp/out, stderr to $tmp/err
    local want=$1; shift
    "$@" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    if [ "$got" -eq "$want" ]; then pass; else fail "exit $got (wanted $want): $*"; tail -20 "$tmp/err"; fi
}
# check_journal DIR N [evaluated_by prefix]: N records, indices 0..N-1, each hash once, report written.
check_journal() {
    $py - "$1" "$2" "${3:-}" <<'PY'
import json, sys
d, n, who = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = open(d + "/journal.jsonl").read().splitlines()
assert json.loads(lines[0])["type"] == "header"
records = [json.loads(l) for l in lines[1:]]
assert len(records) == n, f"{len(records)} records, wanted {n}"
assert [r["index"] for r in records] == list(range(n)), "indices not 0..n-1"
assert len({r["hash"] for r in records}) == n, "a candidate was recorded twice"
report = json.load(open(d + "/report.json"))
assert report["candidates"] == n, report["candidates"]
if who:
    run = [r for r in records if r.get("measured_ms") is not None]
    assert run, "no candidate was measured"
    names = {r.get("evaluated_by", "") for r in run}
    assert all(x.startswith(who) for x in names), names
    assert all("@" in x for x in names), names
    print("evaluated by:", sorted(names))
PY
}

fast=$src/examples/tasks/fmnist_large.json
n=24
common=(--objective capacity --max-candidates $n --runs 5 --confirm-runs 5 --seed 3)

# ---- Capacity search: sequential, --workers 2, and mpirun -n 3 --------------------------------
expect_rc 0 "$lamda" generate "$fast" --out "$tmp/seq" "${common[@]}" -q
check_journal "$tmp/seq" $n && pass || fail "sequential journal"
expect_rc 0 "$lamda" generate "$fast" --out "$tmp/threads" "${common[@]}" -q --workers 2
check_journal "$tmp/threads" $n "worker " && pass || fail "--workers 2 journal"
expect_rc 0 timeout 300 "${mpi[@]}" -n 3 "$lamda" generate "$fast" --out "$tmp/mpi" "${common[@]}" -q
check_journal "$tmp/mpi" $n "rank " && pass || fail "mpirun -n 3 journal"
$py - "$tmp/seq" "$tmp/mpi" "$fast" <<'PY' && pass || fail "mpirun -n 3 and the sequential run disagree in validity"
import json, sys
seq, par = (json.load(open(d + "/report.json")) for d in sys.argv[1:3])
task = json.load(open(sys.argv[3]))
limit = task["constraints"]["latency_ms"]
for rep in (seq, par):
    assert rep["best"] is not None and rep["best"]["verdict"] == "feasible"
    assert rep["best_confirmed_ms"] <= limit
    for c in rep["summary"]:
        if c["verdict"] == "feasible" and c["measured_ms"] is not None:
            assert c["measured_ms"] <= limit, c
ranks = {c.get("evaluated_by", "").split(" @")[0] for c in par["summary"] if c.get("evaluated_by")}
assert ranks <= {"rank 1", "rank 2"}, ranks
assert "MPI worker ranks" in par["device"], par["device"]
print("feasible: sequential", seq["verdicts"]["feasible"], "mpi", par["verdicts"]["feasible"], "ranks", sorted(ranks))
PY

# ---- "measure_on": "one_device": rank 0 measures every candidate, the report says so -----------
$py - "$fast" "$tmp/one.json" "$src/examples/tasks" <<'PY'
import json, os, sys
task = json.load(open(sys.argv[1]))
task["measure_on"] = "one_device"
if "profile" in task:  # resolved against the task file's directory
    task["profile"] = os.path.join(sys.argv[3], task["profile"])
json.dump(task, open(sys.argv[2], "w"))
PY
expect_rc 0 timeout 300 "${mpi[@]}" -n 3 "$lamda" generate "$tmp/one.json" --out "$tmp/one" "${common[@]}" -q
check_journal "$tmp/one" $n "measured by rank 0 @" && pass || fail "measure_on one_device: a record not measured by rank 0"
$py - "$tmp/one" <<'PY' && pass || fail "measure_on one_device: report.json does not say who measured"
import json, sys
rep = json.load(open(sys.argv[1] + "/report.json"))
assert "every latency measured by rank 0" in rep["device"], rep["device"]
PY

# ---- A worker rank killed with kill -9: the job ends, --resume with another N completes it ------
big=60
run=$tmp/kill
"${mpi[@]}" -n 3 "$lamda" generate "$fast" --out "$run" --objective capacity --max-candidates $big \
    --runs 20 --confirm-runs 5 --seed 4 -q >"$tmp/kill.out" 2>"$tmp/kill.err" &
job=$!
victim=""
for _ in $(seq 1 3000); do  # until the journal has a few records, then a worker's pid
    lines=$({ wc -l <"$run/journal.jsonl"; } 2>/dev/null || echo 0)
    if [ "$lines" -gt 6 ]; then
        for p in $(pgrep -P $job); do
            if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then victim=$p; fi
        done
        break
    fi
    kill -0 $job 2>/dev/null || break
    sleep 0.02
done
if [ -n "$victim" ]; then
    kill -9 "$victim"
    pass
else
    fail "could not find worker rank 1 to kill"
fi
timeout 60 tail --pid=$job -f /dev/null
wait $job
rc=$?
[ $rc -ne 0 ] && pass || fail "the job went on after a rank was killed (exit $rc)"
before=$(( $(wc -l <"$run/journal.jsonl") - 1 ))
echo "killed rank 1 after $before records"
expect_rc 0 timeout 300 "${mpi[@]}" -n 2 "$lamda" generate "$fast" --out "$run" --objective capacity \
    --max-candidates $big --runs 20 --confirm-runs 5 --seed 4 -q --resume
check_journal "$run" $big "rank " && pass || fail "journal after kill -9 of a rank and --resume with -n 2"
$py - "$run" "$before" <<'PY' && pass || fail "the resumed journal lost records of the killed run"
import json, sys
d, before = sys.argv[1], int(sys.argv[2])
records = [json.loads(l) for l in open(d + "/journal.jsonl").read().splitlines()[1:]]
assert len(records) >= before
PY

# ---- Accuracy search: a few candidates on a slice of Fashion-MNIST, when lamda has a trainer ----
if [ -d /usr/share/datasets/fashion-mnist ] && ! "$lamda" train x 2>&1 | grep -q "without a trainer"; then
    mkdir -p "$tmp/fm"
    $py - /usr/share/datasets/fashion-mnist "$tmp/fm" <<'PY'
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
    printf '{"name": "fm_slice", "input": [28, 28, 1], "classes": 10, "dataset": "./fm",\n "constraints": {"latency_ms": 0.05}, "budget": {"max_candidates": 4}}\n' >"$tmp/slice.json"
    expect_rc 0 timeout 500 "${mpi[@]}" -n 3 "$lamda" generate "$tmp/slice.json" --out "$tmp/acc" --final-top 1 \
        --final-epochs 1 --runs 5 --confirm-runs 5 -q
    check_journal "$tmp/acc" 4 "rank " && pass || fail "accuracy search under mpirun -n 3"
    $py - "$tmp/acc" <<'PY' && pass || fail "accuracy search: no proxy accuracy from the worker ranks"
import json, sys
rep = json.load(open(sys.argv[1] + "/report.json"))
assert rep["objective"] == "accuracy", rep["objective"]
trained = [c for c in rep["summary"] if c["accuracy"] is not None]
assert trained and all(c.get("evaluated_by", "").startswith("rank ") for c in trained), trained
PY
else
    echo "note: this lamda has no trainer (libtorch) or no fashion-mnist: the accuracy search is skipped"
fi

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
