#!/usr/bin/env bash
# The firmware example (examples/firmware) against lamda itself:
#   1. examples/firmware/fmnist_model.hpp is what `lamda export --cpp` writes today (fresh);
#   2. the program's predictions on the first N Fashion-MNIST test images equal, line by line,
#      `lamda run --dataset` (the XNNPACK path `lamda eval` takes), and its count of correct
#      ones equals `lamda eval --limit N`'s.
# Usage: firmware_test.sh FIRMWARE_EXE LAMDA_EXE SOURCE_DIR [EMULATOR ARGS...]
# (a cross build runs both programs under the emulator, e.g. qemu-aarch64 -L ...);
# LAMDA_FIRMWARE_WRAPPER, when set, runs the firmware alone under that command (an aarch64
# firmware against a native lamda). Exits 77 (skipped) without Debian's dataset-fashion-mnist.
set -euo pipefail
firmware=$1 lamda=$2 src=$3
shift 3
emu=("$@")
data=/usr/share/datasets/fashion-mnist
n=${LAMDA_FIRMWARE_IMAGES:-50}
[ -f "$data/t10k-images-idx3-ubyte.gz" ] || { echo "skipped: no $data"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fw=$src/examples/firmware

"${emu[@]}" "$lamda" export "$fw/model.lamda" --weights "$fw/model.safetensors" \
    --cpp "$work/fmnist_model.hpp" --namespace fmnist > /dev/null
if ! cmp -s "$work/fmnist_model.hpp" "$fw/fmnist_model.hpp"; then
    echo "FAIL: examples/firmware/fmnist_model.hpp is stale; regenerate it with"
    echo "  lamda export examples/firmware/model.lamda --weights examples/firmware/model.safetensors --cpp examples/firmware/fmnist_model.hpp --namespace fmnist"
    exit 1
fi

# The test images uncompressed (a cross-built program may lack zlib); the directory reader
# wants a training pair too, so the test files stand in for it.
for f in images-idx3-ubyte labels-idx1-ubyte; do
    gunzip -c "$data/t10k-$f.gz" > "$work/t10k-$f"
    ln -s "t10k-$f" "$work/train-$f"
done

read -r -a wrapper <<< "${LAMDA_FIRMWARE_WRAPPER:-}"
"${emu[@]}" "${wrapper[@]}" "$firmware" "$work" "$n" > "$work/firmware.txt"
"${emu[@]}" "$lamda" run "$fw/model.lamda" --weights "$fw/model.safetensors" \
    --dataset "$work" --limit "$n" > "$work/lamda.txt"
if ! diff -u "$work/lamda.txt" "$work/firmware.txt"; then
    echo "FAIL: the firmware's predictions differ from lamda's"
    exit 1
fi
correct=$(sed -n 's/^correct: \([0-9]*\) of .*/\1/p' "$work/firmware.txt")
eval_json=$("${emu[@]}" "$lamda" eval "$fw/model.lamda" --weights "$fw/model.safetensors" \
    --dataset "$work" --limit "$n" --json)
case $eval_json in
    *"\"correct\":$correct,"*) ;;
    *) echo "FAIL: firmware has $correct correct, lamda eval says: $eval_json"; exit 1 ;;
esac
echo "ok: the firmware agrees with lamda on $n images ($correct correct)"
