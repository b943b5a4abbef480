#!/usr/bin/env bash
# How well the search's proxy training ranks candidates: every proxy-trained candidate of a
# `lamda generate` journal is trained again in full (`lamda train`), and the Kendall rank
# correlation (tau-b) between its proxy accuracy and its full-training accuracy is printed, with
# the seconds the search spent on each candidate. Issue 18's "tau table".
#
#   bash bench/proxy_tau.sh DIR [--lamda build/lamda] [--epochs 3] [--threads 1] [--limit 30]
#                                [--dataset fashion-mnist] [--variant "ARGS"]... [--proxy-threads T]
#
# DIR is a generate output directory (DIR/journal.jsonl). Candidates are taken in journal order;
# the trainings' JSON lines are kept in DIR/tau/ so that a second run reuses them (delete it to
# start again). The full trainings use `lamda train`'s defaults (seed 1: the same validation
# split as a search with --seed 1).
#
# --variant "ARGS" (repeatable) compares cheaper proxies: every candidate is proxy-trained again
# with `lamda train --proxy ARGS` (e.g. "--epochs 1", "--subset 3000", "--batch 64"), and so is
# the proxy as it is (ARGS empty), one after the other in this run so that their times compare;
# a table gives each variant's training seconds, its tau-b against the full trainings, and the
# full accuracy of the candidate it ranks first.
set -euo pipefail

lamda=build/lamda
epochs=3
threads=1
limit=30
dataset=fashion-mnist
proxy_threads=
variants=()
dir=
while [ $# -gt 0 ]; do
    case $1 in
        --lamda) lamda=$2; shift 2 ;;
        --epochs) epochs=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --limit) limit=$2; shift 2 ;;
        --dataset) dataset=$2; shift 2 ;;
        --variant) variants+=("$2"); shift 2 ;;
        --proxy-threads) proxy_threads=$2; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        -*) echo "proxy_tau: unknown option '$1'" >&2; exit 2 ;;
        *) dir=$1; shift ;;
    esac
done
[ -n "$dir" ] && [ -f "$dir/journal.jsonl" ] || { echo "proxy_tau: give a generate output DIR with journal.jsonl" >&2; exit 2; }
[ -x "$lamda" ] || { echo "proxy_tau: $lamda is not an executable (build lamda first)" >&2; exit 2; }
py=/usr/bin/python3
mkdir -p "$dir/tau"

# The proxy-trained candidates: index, proxy accuracy, seconds, DSL file.
$py - "$dir" "$limit" <<'PY' >"$dir/tau/candidates.tsv"
import json, sys
out, limit = sys.argv[1], int(sys.argv[2])
n = 0
for line in open(out + "/journal.jsonl"):
    r = json.loads(line)
    if r.get("type") != "candidate" or r.get("accuracy") is None:
        continue
    path = "%s/tau/candidate_%d.lamda" % (out, r["index"])
    open(path, "w").write(r["dsl"])
    print("%d\t%.6f\t%.3f\t%d\t%.4f\t%s" % (r["index"], r["accuracy"], r.get("seconds", 0.0), r["params"],
                                           r["macs"] / 1e6, path))
    n += 1
    if n >= limit:
        break
PY
# train_once RESULT MODEL LAMDA-TRAIN-OPTIONS...: `lamda train --json` into RESULT (its log beside
# it), unless RESULT is there from an earlier run; a failed training is reported and skipped.
train_once() {
    local result=$1 model=$2
    shift 2
    [ -s "$result" ] && return 0
    "$lamda" train "$model" --dataset "$dataset" --json "$@" >"$result.tmp" 2>"${result%.json}.log" &&
        mv "$result.tmp" "$result" ||
        { echo "proxy_tau: $model failed to train (see ${result%.json}.log)" >&2; rm -f "$result.tmp"; }
}

count=$(wc -l <"$dir/tau/candidates.tsv")
echo "proxy_tau: $count proxy-trained candidates; full training: $epochs epochs, $threads thread(s)" >&2
while IFS=$'\t' read -r index proxy seconds params mmacs path; do
    [ -s "$dir/tau/candidate_$index.json" ] || echo "proxy_tau: training #$index ($params params, $mmacs MMACs)" >&2
    train_once "$dir/tau/candidate_$index.json" "$path" --epochs "$epochs" --threads "$threads"
done <"$dir/tau/candidates.tsv"

# The proxy variants: the proxy as it is first, then each --variant, every candidate in turn.
[ ${#variants[@]} -gt 0 ] && variants=("" "${variants[@]}")
: >"$dir/tau/variants.tsv"
for args in "${variants[@]}"; do
    slug=proxy$(printf '%s' "$args" | tr -c 'A-Za-z0-9' '_')
    mkdir -p "$dir/tau/$slug"
    printf '%s\t%s\n' "$slug" "--proxy $args" >>"$dir/tau/variants.tsv"
    echo "proxy_tau: proxy variant '--proxy $args'" >&2
    while IFS=$'\t' read -r index proxy seconds params mmacs path; do
        # shellcheck disable=SC2086  # ARGS is a list of options
        train_once "$dir/tau/$slug/candidate_$index.json" "$path" --proxy $args --threads "${proxy_threads:-$threads}"
    done <"$dir/tau/candidates.tsv"
done

$py - "$dir" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = []
for line in open(out + "/tau/candidates.tsv"):
    index, proxy, seconds, params, mmacs, path = line.rstrip("\n").split("\t")
    f = "%s/tau/candidate_%s.json" % (out, index)
    if not os.path.exists(f):
        continue
    r = json.load(open(f))
    rows.append((int(index), float(proxy), float(seconds), int(params), float(mmacs), r["val_accuracy"],
                 r["test_accuracy"], r["train_seconds"]))

def tau_b(x, y):
    # Kendall's tau-b: concordant minus discordant pairs over the pairs not tied in each variable.
    c = d = tx = ty = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif (dx > 0) == (dy > 0):
                c += 1
            else:
                d += 1
    denom = ((c + d + tx) * (c + d + ty)) ** 0.5
    return (c - d) / denom if denom else float("nan")

print("| # | params | MMACs | proxy val | full val | full test | search s | full training s |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print("| %d | %d | %.2f | %.2f%% | %.2f%% | %.2f%% | %.1f | %.0f |" % (r[0], r[3], r[4], 100 * r[1], 100 * r[5],
                                                                        100 * (r[6] or 0), r[2], r[7]))
if len(rows) >= 2:
    proxy = [r[1] for r in rows]
    print()
    print("candidates: %d; Kendall tau-b, proxy val against full val: %.3f, against full test: %.3f" %
          (len(rows), tau_b(proxy, [r[5] for r in rows]), tau_b(proxy, [r[6] or 0 for r in rows])))
    print("search seconds per candidate (median): %.1f" % sorted(r[2] for r in rows)[len(rows) // 2])

# The variants: each against the same full trainings.
full = {r[0]: r for r in rows}
variants = [l.rstrip("\n").split("\t") for l in open(out + "/tau/variants.tsv")] \
    if os.path.exists(out + "/tau/variants.tsv") else []
if variants:
    best_full = max(r[5] for r in rows)
    print()
    print("| proxy | candidates | training s (sum) | s per candidate (median) | tau-b vs full val | "
          "tau-b vs full test | its first: full val (best %.2f%%) |" % (100 * best_full))
    print("|---|---:|---:|---:|---:|---:|---:|")
    for slug, command in variants:
        got = []
        for index in sorted(full):
            f = "%s/tau/%s/candidate_%d.json" % (out, slug, index)
            if os.path.exists(f):
                v = json.load(open(f))
                got.append((index, v["val_accuracy"], v["train_seconds"]))
        if len(got) < 2:
            continue
        acc = [g[1] for g in got]
        secs = sorted(g[2] for g in got)
        first = max(got, key=lambda g: g[1])[0]
        print("| `%s` | %d | %.1f | %.2f | %.3f | %.3f | %.2f%% |" % (
            command.strip(), len(got), sum(secs), secs[len(secs) // 2],
            tau_b(acc, [full[g[0]][5] for g in got]), tau_b(acc, [full[g[0]][6] or 0 for g in got]),
            100 * full[first][5]))
PY
