#!/usr/bin/env bash
# The offline designer against the random baseline at equal budget: both proposers search each
# example task with the same candidate budget and seeds, and the best feasible result of each is
# printed side by side (capacity objective: the most MACs under the constraints; equal budgets,
# no training, so that the comparison takes minutes).
#
#   bash bench/compare_proposers.sh [LAMDA] [--candidates N] [--seeds "1 2 3"] [--profile P.json]
#
# LAMDA defaults to build/lamda. Without --profile every candidate is measured (no prediction).
set -euo pipefail

lamda=build/lamda
candidates=60
seeds="1 2 3"
profile=()
tasks=(examples/tasks/fmnist_fast.json examples/tasks/fmnist_medium.json examples/tasks/fmnist_large.json)
while [ $# -gt 0 ]; do
    case $1 in
        --candidates) candidates=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --profile) profile=(--profile "$2"); shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        -*) echo "compare_proposers: unknown option '$1'" >&2; exit 2 ;;
        *) lamda=$1; shift ;;
    esac
done
[ -x "$lamda" ] || { echo "compare_proposers: $lamda is not an executable (build lamda first)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

printf '%-22s %-5s %-9s %14s %10s %9s   %14s %10s %9s\n' task seed budget \
    "offline MMACs" "ms" feasible "random MMACs" "ms" feasible
offline_wins=0; random_wins=0; ties=0
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
            row+=("$(python3 - "$out/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
feasible = r["verdicts"]["feasible"]
best = r.get("best")
if best:
    ms = r.get("best_confirmed_ms") or best.get("measured_ms") or best.get("predicted_ms")
    print(f'{best["macs"] / 1e6:.3f} {ms:.4f} {feasible}')
else:
    print(f'0 - {feasible}')
PY
)")
        done
        read -r om oms of <<<"${row[0]}"
        read -r rm rms rf <<<"${row[1]}"
        printf '%-22s %-5s %-9s %14s %10s %9s   %14s %10s %9s\n' "$(basename "$task" .json)" "$seed" \
            "${budget}ms" "$om" "$oms" "$of" "$rm" "$rms" "$rf"
        if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)" "$om" "$rm"; then
            offline_wins=$((offline_wins + 1))
        elif [ "$om" = "$rm" ]; then ties=$((ties + 1)); else random_wins=$((random_wins + 1)); fi
    done
done
echo "offline better: $offline_wins, random better: $random_wins, ties: $ties (best feasible MACs, $candidates candidates each)"
