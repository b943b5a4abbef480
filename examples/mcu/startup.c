/* examples/mcu/startup.c: reset and vector table for QEMU's mps2-an386 (Cortex-M4), C99.
   Copies .data from flash, zeroes .bss, enables the FPU (CP10/CP11), sets up newlib's semihosting
   (rdimon) and calls main(); its return value ends QEMU through semihosting's exit. */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
void Default_Handler(void);
void _init(void);
void _fini(void);

/* newlib's __libc_init_array/__libc_fini_array call these (no crti/crtn with -nostartfiles). */
void _init(void) {}
void _fini(void) {}

void Default_Handler(void) {
    for (;;) {
    }
}

void Reset_Handler(void) {
    uint32_t* src = &_sidata;
    uint32_t* dst = &_sdata;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    /* CPACR: full access to CP10 and CP11 (the FPU) before any float instruction. */
    *(volatile uint32_t*)0xE000ED88u |= (0xFu << 20);
    __asm volatile("dsb\n\tisb");
    initialise_monitor_handles();
    exit(main());
}

/* The Cortex-M vector table: initial stack pointer, then the exception handlers. */
__attribute__((section(".isr_vector"), used)) void (*const vector_table[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, Default_Handler};
