#!/usr/bin/env bash
# The float firmware export (docs/firmware.md) on a host and on an emulated Cortex-M4:
#   1. `lamda export --firmware` writes model.h/model.c for examples/firmware's Fashion-MNIST model;
#   2. examples/mcu/main.c with the generated code, built by the host's cc (-std=c99 -Werror),
#      classifies the first N test images exactly as `lamda run --dataset` does (line by line);
#   3. the same sources built with arm-none-eabi-gcc for QEMU's mps2-an386 (Cortex-M4, hard float,
#      newlib + semihosting) print the same lines under qemu-system-arm;
#   4. arm-none-eabi-size gives flash (text + data) and RAM (data + bss, stack not included).
# Usage: firmware_mcu_test.sh LAMDA_EXE SOURCE_DIR
# LAMDA_MCU_MODEL, LAMDA_MCU_WEIGHTS and LAMDA_MCU_WEIGHTS_INT8 run it on another model (default:
# examples/firmware's model.lamda, model.safetensors and model_int8.safetensors); LAMDA_MCU_IMAGES
# sets how many test images (default 20).
# Exits 77 (skipped) without gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm or
# Debian's dataset-fashion-mnist, unless CI=true, where their absence is a failure.
set -euo pipefail
lamda=$1 src=$2
n=${LAMDA_MCU_IMAGES:-20}
data=/usr/share/datasets/fashion-mnist
skip() {
    if [ "${CI:-}" = true ]; then echo "FAIL: $1 (CI=true: scripts/install-deps.sh installs it)"; exit 1; fi
    echo "skipped: $1"; exit 77
}
for tool in arm-none-eabi-gcc arm-none-eabi-size qemu-system-arm cc od; do
    command -v "$tool" > /dev/null || skip "no $tool"
done
[ -f "$data/t10k-images-idx3-ubyte.gz" ] || skip "no $data"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mcu=$src/examples/mcu fw=$src/examples/firmware
model_dsl=${LAMDA_MCU_MODEL:-$fw/model.lamda}
weights=${LAMDA_MCU_WEIGHTS:-$fw/model.safetensors}
weights8=${LAMDA_MCU_WEIGHTS_INT8:-$fw/model_int8.safetensors}

"$lamda" export "$model_dsl" --weights "$weights" --firmware "$work/fw" --json > "$work/export.json"
cat "$work/export.json"
# Over --max-ram: refused with the numbers, nothing written.
if "$lamda" export "$fw/model.lamda" --weights "$fw/model.safetensors" --firmware "$work/small" \
        --max-ram 1000 > /dev/null 2> "$work/refused.txt"; then
    echo "FAIL: --max-ram 1000 was not refused"; exit 1
fi
grep -q 'needs [0-9]* bytes of RAM (arena [0-9]*, .*over --max-ram 1000' "$work/refused.txt" ||
    { echo "FAIL: the refusal does not give the numbers: $(cat "$work/refused.txt")"; exit 1; }
[ ! -e "$work/small" ] || { echo "FAIL: a refused export wrote files"; exit 1; }
if "$lamda" export "$fw/model.lamda" --weights "$fw/model.safetensors" --firmware "$work/small" \
        --max-flash 20000 > /dev/null 2> "$work/refused.txt"; then
    echo "FAIL: --max-flash 20000 was not refused"; exit 1
fi
grep -q 'needs [0-9]* bytes of flash ([0-9]* weights + [0-9]* code, estimated), over --max-flash 20000' \
    "$work/refused.txt" || { echo "FAIL: the refusal does not give the numbers: $(cat "$work/refused.txt")"; exit 1; }
[ ! -e "$work/small" ] || { echo "FAIL: a refused export wrote files"; exit 1; }

# The first N test images and labels as a C header.
gunzip -c "$data/t10k-images-idx3-ubyte.gz" > "$work/t10k-images-idx3-ubyte"
gunzip -c "$data/t10k-labels-idx1-ubyte.gz" > "$work/t10k-labels-idx1-ubyte"
ln -s t10k-images-idx3-ubyte "$work/train-images-idx3-ubyte"
ln -s t10k-labels-idx1-ubyte "$work/train-labels-idx1-ubyte"
{
    echo "#define IMAGES_N $n"
    echo "static const unsigned char images[IMAGES_N][784] = {"
    od -An -v -tu1 -j16 -N$((n * 784)) -w784 "$work/t10k-images-idx3-ubyte" |
        sed 's/^ *//; s/  */,/g; s/^/{/; s/$/},/'
    echo "};"
    echo "static const unsigned char labels[IMAGES_N] = {"
    od -An -v -tu1 -j8 -N"$n" "$work/t10k-labels-idx1-ubyte" | sed 's/^ *//; s/  */,/g; s/$/,/'
    echo "};"
} > "$work/images.h"

# Host.
cc -std=c99 -O2 -Wall -Wextra -Werror -I"$work/fw" -I"$work" -o "$work/host" \
    "$mcu/main.c" "$work/fw/model.c" -lm
"$work/host" > "$work/host.txt"
if "$lamda" run "$model_dsl" --weights "$weights" --dataset "$work" --limit "$n" \
        > "$work/lamda.txt" 2> "$work/lamda.err"; then
    diff -u "$work/lamda.txt" "$work/host.txt" || { echo "FAIL: the generated code's predictions differ from lamda run's"; exit 1; }
else
    echo "note: lamda run --dataset is unavailable (built without XNNPACK?): $(cat "$work/lamda.err")"
fi

# int8: examples/firmware/model_int8.safetensors (post-training quantized, docs/firmware.md) exported
# as int8 firmware; on the host it must predict as the integer reference does (the doctest checks
# the outputs bit for bit) and score what `lamda eval` scores through XNNPACK's int8 operators;
# here its host run is the baseline for the Cortex-M4 run.
variants="default fast"
if [ -f "$weights8" ]; then
    "$lamda" export "$model_dsl" --weights "$weights8" --firmware "$work/fw8" --json > "$work/export8.json"
    cat "$work/export8.json"
    cc -std=c99 -O2 -Wall -Wextra -Werror -I"$work/fw8" -I"$work" -o "$work/host8" \
        "$mcu/main.c" "$work/fw8/model.c" -lm
    "$work/host8" > "$work/host8.txt"
    variants="default fast int8"
    if "$lamda" eval "$model_dsl" --weights "$weights8" --dataset "$work" --limit "$n" --json \
            > "$work/eval8.json" 2> "$work/eval8.err"; then
        eval_correct=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["correct"])' "$work/eval8.json")
        [ "$(tail -1 "$work/host8.txt")" = "correct: $eval_correct of $n" ] ||
            { echo "FAIL: int8 firmware on the host: $(tail -1 "$work/host8.txt"); lamda eval int8: $eval_correct of $n"; exit 1; }
    else
        echo "note: lamda eval is unavailable (built without XNNPACK?): $(cat "$work/eval8.err")"
    fi
fi

# Cortex-M4 under QEMU: the default build (double accumulation, as the reference) and
# MODEL_FAST_FLOAT (float accumulation, what an FPv4-SP part runs fast), and the int8 model; each
# must predict as its host build.
arm_flags=(-std=c99 -mcpu=cortex-m4 -mthumb -O2 -mfloat-abi=hard -mfpu=fpv4-sp-d16
    -ffunction-sections -fdata-sections -Wall -Wextra -Werror)
for variant in $variants; do
    extra=()
    [ "$variant" = fast ] && extra=(-DMODEL_FAST_FLOAT)
    model=$work/fw host=$work/host.txt
    [ "$variant" = int8 ] && model=$work/fw8 host=$work/host8.txt
    arm-none-eabi-gcc "${arm_flags[@]}" "${extra[@]}" --specs=rdimon.specs -nostartfiles \
        -T "$mcu/mps2_an386.ld" -Wl,--gc-sections -I"$model" -I"$work" -o "$work/fw_$variant.elf" \
        "$mcu/startup.c" "$mcu/main.c" "$model/model.c" -lm
    arm-none-eabi-gcc "${arm_flags[@]}" "${extra[@]}" -c -o "$work/model_$variant.o" "$model/model.c"
    echo "== $variant: whole program (newlib's printf included), then model.o alone"
    arm-none-eabi-size "$work/fw_$variant.elf"
    arm-none-eabi-size -A "$work/model_$variant.o" |
        awk '/^\.text/ { t += $2 } /^\.rodata/ { r += $2 } END { print "model.o: code " t " bytes, weights " r " bytes" }'
    timeout 300 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
        -semihosting-config enable=on,target=native -icount shift=0 -kernel "$work/fw_$variant.elf" \
        > "$work/qemu_raw.txt"
    grep '^systick' "$work/qemu_raw.txt" | sed 's/$/ (relative cost only: QEMU -icount, not cycles)/' || true
    grep -v '^systick' "$work/qemu_raw.txt" > "$work/qemu.txt"
    diff -u "$host" "$work/qemu.txt" ||
        { echo "FAIL: the Cortex-M4 ($variant) predictions differ from the host's"; exit 1; }
done
echo "ok: host, lamda and Cortex-M4 (QEMU mps2-an386) agree on $n images, variants: $variants ($(tail -1 "$work/host.txt"); int8: $(tail -1 "$work/host8.txt" 2> /dev/null || echo none))"
