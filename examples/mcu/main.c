/* examples/mcu/main.c: classifies Fashion-MNIST test images with the generated model (model.h,
   model.c from `lamda export --firmware`). The images come from images.h (written by
   tests/firmware_mcu_test.sh), or, built with -DMCU_STDIN on a host, from stdin as records of
   784 pixel bytes and one label byte. Prints what `lamda run --dataset` prints:
     image I: predicted P, label L      ...      correct: C of N
   Pixels are scaled by 1/255 as lamda's dataset reader does and written straight into the arena
   at MODEL_INPUT(arena), where the plan keeps the input (no separate input buffer: RAM is the
   arena plus the 10 output values; an int8 model, MODEL_INT8, gets the input quantized there by
   model_quantize_input). C99, no heap. */
#include <stdio.h>
#include <string.h>

#include "model.h"

#if MODEL_INPUT_SIZE != 784
#error "this example expects a 28x28x1 model"
#endif

static float arena[(MODEL_ARENA_BYTES + 3) / 4];
static float output[MODEL_OUTPUT_SIZE];

static int classify(const unsigned char* pixels) {
    int i, best = 0;
#ifdef MODEL_INT8 /* an int8 model: the input is quantized straight into the arena */
    int8_t* input = MODEL_INPUT(arena);
    for (i = 0; i < MODEL_INPUT_SIZE; ++i) input[i] = model_quantize_input((float)pixels[i] * (1.0f / 255.0f));
    if (model_run(0, output, arena) != 0) return -1;
#else
    float* input = MODEL_INPUT(arena);
    for (i = 0; i < MODEL_INPUT_SIZE; ++i) input[i] = (float)pixels[i] * (1.0f / 255.0f);
    if (model_run(input, output, arena) != 0) return -1;
#endif
    for (i = 1; i < MODEL_OUTPUT_SIZE; ++i)
        if (output[i] > output[best]) best = i;
    return best;
}

#ifdef MCU_STDIN
int main(void) {
    unsigned char record[MODEL_INPUT_SIZE + 1];
    long n = 0, correct = 0;
    while (fread(record, 1, sizeof record, stdin) == sizeof record) {
        const int p = classify(record);
        if (p < 0) return 1;
        correct += p == record[MODEL_INPUT_SIZE];
        printf("image %ld: predicted %d, label %d\n", n, p, record[MODEL_INPUT_SIZE]);
        ++n;
    }
    printf("correct: %ld of %ld\n", correct, n);
    return 0;
}
#else
#include "images.h" /* IMAGES_N, images[IMAGES_N][784], labels[IMAGES_N] */

#if defined(__ARM_ARCH) && !defined(MCU_NO_SYSTICK)
/* SysTick counts down at the core clock. Under QEMU with -icount the clock follows executed
   instructions, so the ticks of one inference are a relative cost only (QEMU is not cycle-accurate). */
#define SYST_CSR (*(volatile unsigned long*)0xE000E010u)
#define SYST_RVR (*(volatile unsigned long*)0xE000E014u)
#define SYST_CVR (*(volatile unsigned long*)0xE000E018u)
static unsigned long ticks_of_first(void) {
    unsigned long t0, t1;
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 5u; /* enable, core clock, no interrupt */
    t0 = SYST_CVR;
    (void)classify(images[0]);
    t1 = SYST_CVR;
    SYST_CSR = 0;
    return (t0 - t1) & 0xFFFFFFu;
}
#endif

int main(void) {
    int n, correct = 0;
#if defined(__ARM_ARCH) && !defined(MCU_NO_SYSTICK)
    printf("systick ticks per inference: %lu\n", ticks_of_first());
#endif
    for (n = 0; n < IMAGES_N; ++n) {
        const int p = classify(images[n]);
        if (p < 0) return 1;
        correct += p == labels[n];
        printf("image %d: predicted %d, label %d\n", n, p, labels[n]);
    }
    printf("correct: %d of %d\n", correct, IMAGES_N);
    return 0;
}
#endif
