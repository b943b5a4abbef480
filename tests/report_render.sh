#!/usr/bin/env bash
# Renders report.html in headless Chromium (Debian's `chromium`) and checks, in the DOM Chromium
# built from the page, that the plot is there: <svg id="scatter"> with one circle.candidate per
# plotted candidate, the Pareto front (<polyline id="pareto">, one point per front candidate, as
# many circles marked on-front), the latency limit, the legend, the best model's DSL with its
# markup escaped, and no script; over-budget candidates that were never trained as crosses
# (path.untrained), the best model's name and its per-layer bar chart, the latency limit's label
# clear of the legend (also with the limit at the plot's right edge), and no "#27 #27"-style
# repetition. The page comes from lamda_report_demo (tests/report_demo.cpp), which prints how many
# candidates it plots, how many are on the front and how many are untrained crosses.
#
#   tests/report_render.sh LAMDA_REPORT_DEMO [EMULATOR ARGS...]
#
# Exit 77 (skipped) when Chromium is not installed; LAMDA_CHROMIUM names another binary.
set -u

demo=${1:?usage: report_render.sh LAMDA_REPORT_DEMO [EMULATOR ARGS...]}
shift
emulator=("$@")  # e.g. qemu-aarch64 -L /usr/aarch64-linux-gnu when cross-compiled

chromium=${LAMDA_CHROMIUM:-}
if [ -z "$chromium" ]; then
    for candidate in chromium chromium-browser google-chrome; do
        if command -v "$candidate" >/dev/null 2>&1; then
            chromium=$(command -v "$candidate")
            break
        fi
    done
fi
if [ -z "$chromium" ]; then
    echo "SKIP: chromium is not installed (apt-get install chromium)"
    exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

count() {  # count PATTERN FILE: occurrences of a fixed string
    grep -o -F -- "$1" "$2" | wc -l | tr -d ' '
}

# check_dom DOM PLOTTED FRONT UNTRAINED: prints what is wrong, returns the number of problems.
check_dom() {
    local dom=$1 plotted=$2 front=$3 untrained=${4:-0} problems=0 n points
    if [ "$(count '<svg id="scatter"' "$dom")" != 1 ]; then
        echo "  no <svg id=\"scatter\"> in the rendered DOM"; problems=$((problems + 1))
    fi
    n=$(count '<circle class="candidate ' "$dom")
    if [ "$n" != "$plotted" ]; then
        echo "  $n candidate circles, expected $plotted"; problems=$((problems + 1))
    fi
    n=$(grep -o -E '<circle class="candidate [a-z -]*on-front' "$dom" | wc -l | tr -d ' ')
    if [ "$n" != "$front" ]; then
        echo "  $n circles on the front, expected $front"; problems=$((problems + 1))
    fi
    points=$(grep -o -E '<polyline id="pareto" class="pareto" points="[^"]*"' "$dom" | sed -E 's/.*points="([^"]*)"/\1/')
    n=$(printf '%s' "$points" | tr ' ' '\n' | grep -c ',')
    if [ "$n" != "$front" ]; then
        echo "  the Pareto polyline has $n points, expected $front"; problems=$((problems + 1))
    fi
    for id in 'id="constraint"' 'id="legend"' 'id="best-ring"' 'id="best-table"' '<pre id="best-dsl">' '</html>' \
            'id="progress"' 'id="best-so-far"' 'class="progress-point' 'id="next-step"' 'class="num weight-bytes"' \
            'class="num activation-bytes"' 'RAM (peak activations)' 'id="layer-chart"' 'class="layer-bar"' \
            'class="layer-bar other"' 'id="best-name"' 'Best model: demo_fashion_mnist_friends' \
            'model demo_fashion_mnist_friends' 'id="constraint-label"'; do
        if [ "$(count "$id" "$dom")" -lt 1 ]; then
            echo "  missing: $id"; problems=$((problems + 1))
        fi
    done
    n=$(count '<path class="untrained infeasible"' "$dom")
    if [ "$n" != "$untrained" ]; then
        echo "  $n untrained crosses, expected $untrained"; problems=$((problems + 1))
    fi
    if grep -q -E '#([0-9]+) #\1([^0-9]|$)' "$dom"; then
        echo "  a candidate's number twice in a row: $(grep -o -E '#([0-9]+) #\1' "$dom" | head -1)"; problems=$((problems + 1))
    fi
    # The limit's label stays inside the plot (the legend is right of x = 760), either side of the line.
    if ! /usr/bin/python3 - "$dom" <<'PY'
import re, sys
m = re.search(r'<text id="constraint-label"[^>]* x="([0-9.]+)"[^>]* text-anchor="(start|end)" data-width="([0-9.]+)"', open(sys.argv[1]).read())
if not m:
    sys.exit(1)
x, anchor, w = float(m.group(1)), m.group(2), float(m.group(3))
left, right = (x, x + w) if anchor == "start" else (x - w, x)
sys.exit(0 if left >= 84 and right <= 760 else 1)
PY
    then
        echo "  the latency limit's label runs into the legend or out of the plot"; problems=$((problems + 1))
    fi
    # The DSL and notes carry markup; rendered as text, it is no element.
    if [ "$(count '<b>' "$dom")" != 0 ] || [ "$(count '&lt;b&gt;not bold&lt;/b&gt;' "$dom")" -lt 1 ]; then
        echo "  the DSL's markup was not escaped"; problems=$((problems + 1))
    fi
    if [ "$(count '<script' "$dom")" != 0 ]; then
        echo "  the page has a script"; problems=$((problems + 1))
    fi
    return "$problems"
}

for run in capacity accuracy accuracy:0.19; do
    objective=${run%%:*}
    limit=0.1
    [ "$run" != "$objective" ] && limit=${run#*:}
    page="$tmp/report-$objective-$limit.html"
    if ! expected=$("${emulator[@]}" "$demo" "$page" "$objective" "$limit"); then
        fail "$objective: lamda_report_demo failed"
        continue
    fi
    read -r plotted front untrained <<<"$expected"
    if [ -z "${plotted:-}" ] || [ -z "${front:-}" ] || [ "$plotted" -lt 10 ] || [ "$front" -lt 2 ]; then
        fail "$objective: lamda_report_demo printed '$expected', expected two counts (plotted >= 10, front >= 2)"
        continue
    fi
    if [ "$objective" = accuracy ] && [ "${untrained:-0}" -lt 1 ]; then
        fail "accuracy: the demo has no over-budget, untrained candidate to draw"
    fi
    dom="$tmp/dom-$objective-$limit.html"
    timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --no-first-run --disable-extensions \
        --user-data-dir="$tmp/chromium-profile" --dump-dom "file://$page" >"$dom" 2>"$tmp/chromium.log"
    status=$?
    if [ "$status" != 0 ] || [ ! -s "$dom" ]; then
        fail "$objective: chromium exited with $status and dumped $(wc -c <"$dom") bytes"
        tail -n 20 "$tmp/chromium.log"
        continue
    fi
    if ! check_dom "$dom" "$plotted" "$front" "$untrained"; then
        fail "$objective: the rendered page lacks the plot (see above)"
        continue
    fi
    # The checks can fail: the same DOM with its candidates or its front taken out must not pass.
    sed -E 's/<circle class="candidate [^>]*>//' "$dom" >"$tmp/mangled.html"
    if check_dom "$tmp/mangled.html" "$plotted" "$front" "$untrained" >/dev/null; then
        fail "$objective: the check passed a page with a candidate taken out"
    fi
    sed -E 's/<polyline id="pareto"[^>]*>//' "$dom" >"$tmp/mangled.html"
    if check_dom "$tmp/mangled.html" "$plotted" "$front" "$untrained" >/dev/null; then
        fail "$objective: the check passed a page without the Pareto front"
    fi
    if [ "$untrained" -gt 0 ]; then
        sed -E 's/<path class="untrained[^>]*>//' "$dom" >"$tmp/mangled.html"
        if check_dom "$tmp/mangled.html" "$plotted" "$front" "$untrained" >/dev/null; then
            fail "$objective: the check passed a page with an untrained cross taken out"
        fi
    fi
    sed -E 's/(<text id="constraint-label"[^>]* x=")[0-9.]+(")/\1755\2/; s/text-anchor="end" data-width/text-anchor="start" data-width/' "$dom" >"$tmp/mangled.html"
    if check_dom "$tmp/mangled.html" "$plotted" "$front" "$untrained" >/dev/null; then
        fail "$objective: the check passed a limit label that runs into the legend"
    fi
    echo "ok: $objective (limit $limit ms): $plotted candidates, $untrained untrained, $front on the Pareto front, rendered by $("$chromium" --version 2>/dev/null | head -n 1)"
done

if [ "$failures" != 0 ]; then
    echo "report_render: $failures failure(s)"
    exit 1
fi
echo "report_render: ok"
