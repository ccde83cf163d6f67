/* Bare-metal start for the QEMU Cortex-M boards (mps2-an386: M4F, mps2-an505: M33): copy .data, zero .bss,
   switch the FPU on, run main, exit through semihosting (QEMU then exits with main's status). */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t __etext, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
extern int main(void);

void reset_handler(void) {
  uint32_t *src = &__etext, *dst = &__data_start;
  while (dst < &__data_end) *dst++ = *src++;
  for (dst = &__bss_start; dst < &__bss_end;) *dst++ = 0;
#if defined(__ARM_FP)
  *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20; /* CPACR: the FPU on before any float instruction */
  __asm volatile("dsb\n isb");
#endif
  exit(main());
}

void fault_handler(void) {
  for (;;) {
  }
}

void _init(void) {}
void _fini(void) {}

__attribute__((section(".vectors"), used)) const void *const vectors[16] = {
    &__stack_top, (const void *)reset_handler, (const void *)fault_handler, (const void *)fault_handler,
    (const void *)fault_handler, (const void *)fault_handler, (const void *)fault_handler, 0, 0, 0, 0,
    (const void *)fault_handler, (const void *)fault_handler, 0, (const void *)fault_handler,
    (const void *)fault_handler};
