#!/usr/bin/env bash
# The offline designer against the random baseline at equal budget: both proposers search each
# example task with the same candidate budget and seeds, and the best feasible result of each is
# printed side by side (capacity objective: the most MACs under the constraints; equal budgets,
# no training, so that the comparison takes minutes).
#
# --trained compares what a user gets instead: each task's own budget and objective (accuracy),
# proxy training, and the best candidate trained in full (--final-top 1, 15 epochs); both
# proposers of a task and seed run side by side, one libtorch thread each, and the final test
# accuracies are compared (about 25 minutes per task and seed on 2 cores; needs libtorch and
# Fashion-MNIST).
#
#   bash bench/compare_proposers.sh [LAMDA] [--candidates N] [--seeds "1 2 3"] [--profile P.json] [--trained]
#
# LAMDA defaults to build/lamda. Without --profile every candidate is measured (no prediction).
set -euo pipefail

lamda=build/lamda
candidates=""  # default 60; with --trained, the task's own
seeds=""       # default "1 2 3"; with --trained, 1
profile=()
trained=false
tasks=(examples/tasks/fmnist_fast.json examples/tasks/fmnist_medium.json examples/tasks/fmnist_large.json)
while [ $# -gt 0 ]; do
    case $1 in
        --candidates) candidates=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --profile) profile=(--profile "$2"); shift 2 ;;
        --trained) trained=true; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        -*) echo "compare_proposers: unknown option '$1'" >&2; exit 2 ;;
        *) lamda=$1; shift ;;
    esac
done
$trained || candidates=${candidates:-60}
[ -n "$seeds" ] || { $trained && seeds=1 || seeds="1 2 3"; }
[ -x "$lamda" ] || { echo "compare_proposers: $lamda is not an executable (build lamda first)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# report_row MODE REPORT: "TEST VAL PARAMS MS FEASIBLE" (MODE trained) or "MMACS MS FEASIBLE" of the best.
report_row() {
    python3 - "$1" "$2" <<'PY'
import json, sys
mode, r = sys.argv[1], json.load(open(sys.argv[2]))
feasible = r["verdicts"]["feasible"]
best, final = r.get("best"), r.get("final_training")
ms = (r.get("best_confirmed_ms") or best.get("measured_ms") or best.get("predicted_ms")) if best else None
if mode == "trained":
    if best and final:
        print(f'{100 * final["test_accuracy"]:.2f} {100 * final["val_accuracy"]:.2f} {best["params"]} {ms:.4f} {feasible}')
    else:
        print(f'0 - - - {feasible}')
elif best:
    print(f'{best["macs"] / 1e6:.3f} {ms:.4f} {feasible}')
else:
    print(f'0 - {feasible}')
PY
}
offline_wins=0; random_wins=0; ties=0
tally() {  # tally OFFLINE RANDOM: the larger figure wins
    if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)" "$1" "$2"; then
        offline_wins=$((offline_wins + 1))
    elif [ "$1" = "$2" ]; then ties=$((ties + 1)); else random_wins=$((random_wins + 1)); fi
}

if $trained; then
    budget_args=()
    [ -n "$candidates" ] && budget_args=(--max-candidates "$candidates")
    printf '%-14s %-5s %9s %9s %8s %8s %9s   %9s %9s %8s %8s %9s\n' task seed "offline %" "val %" params ms feasible \
        "random %" "val %" params ms feasible
    for task in "${tasks[@]}"; do
        name=$(basename "$task" .json)
        for seed in $seeds; do
            for proposer in offline random; do
                "$lamda" generate "$task" --out "$work/$name-$proposer-$seed" --proposer "$proposer" --seed "$seed" \
                    --final-top 1 --train-threads 1 --quiet "${budget_args[@]}" "${profile[@]}" \
                    >/dev/null 2>"$work/$name-$proposer-$seed.log" &
            done
            wait
            row=()
            for proposer in offline random; do
                report="$work/$name-$proposer-$seed/report.json"
                [ -f "$report" ] || { cat "$work/$name-$proposer-$seed.log" >&2; exit 1; }
                row+=("$(report_row trained "$report")")
            done
            read -r ot ov op oms of <<<"${row[0]}"
            read -r rt rv rp rms rf <<<"${row[1]}"
            printf '%-14s %-5s %9s %9s %8s %8s %9s   %9s %9s %8s %8s %9s\n' "$name" "$seed" "$ot" "$ov" "$op" "$oms" "$of" \
                "$rt" "$rv" "$rp" "$rms" "$rf"
            tally "$ot" "$rt"
        done
    done
    echo "offline better: $offline_wins, random better: $random_wins, ties: $ties (final test accuracy, each task's budget)"
    exit 0
fi

printf '%-22s %-5s %-9s %14s %10s %9s   %14s %10s %9s\n' task seed budget \
    "offline MMACs" "ms" feasible "random MMACs" "ms" feasible
for task in "${tasks[@]}"; do
    budget=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["constraints"]["latency_ms"])' "$task")
    for seed in $seeds; do
        row=()
        for proposer in offline random; do
            out="$work/$(basename "$task" .json)-$proposer-$seed"
            "$lamda" generate "$task" --out "$out" --proposer "$proposer" --seed "$seed" \
                --max-candidates "$candidates" --objective capacity --quiet "${profile[@]}" \
                >/dev/null 2>"$out.log" || true
            [ -f "$out/report.json" ] || { cat "$out.log" >&2; exit 1; }
            row+=("$(report_row capacity "$out/report.json")")
        done
        read -r om oms of <<<"${row[0]}"
        read -r rm rms rf <<<"${row[1]}"
        printf '%-22s %-5s %-9s %14s %10s %9s   %14s %10s %9s\n' "$(basename "$task" .json)" "$seed" \
            "${budget}ms" "$om" "$oms" "$of" "$rm" "$rms" "$rf"
        tally "$om" "$rm"
    done
done
echo "offline better: $offline_wins, random better: $random_wins, ties: $ties (best feasible MACs, $candidates candidates each)"
