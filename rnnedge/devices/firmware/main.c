/* Streams a recording (recording.h, quantized on the host) through the generated step, one sample per call, as a
   sensor would: writes every output to y.bin on the host (semihosting), and prints the step's cost: SysTick
   ticks (QEMU with -icount counts instructions, calibrated below against a loop of known length) and the
   stack it used (painted before, looked at after). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include MODEL_HEADER
#include "recording.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018)
#define PAINT 0xA5A5A5A5u
#define PAINTED_WORDS 8192 /* 32 KB below the caller's frame */

extern void initialise_monitor_handles(void);

static int16_t state[MODEL_STATE];
static int16_t outputs[RECORDING_STEPS][MODEL_OUTPUTS];

static uint32_t ticks_since(uint32_t start) { return (start - SYST_CVR) & 0xFFFFFFu; }

__attribute__((noinline)) static void known_loop(uint32_t n) {
  __asm volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(n));
}

__attribute__((noinline)) static uint32_t stream(uint64_t *total, uint32_t *worst) {
  uint32_t t, start, spent;
  for (t = 0; t < RECORDING_STEPS; ++t) {
    start = SYST_CVR;
    MODEL_STEP(state, recording[t], outputs[t]);
    spent = ticks_since(start);
    *total += spent;
    if (spent > *worst) *worst = spent;
  }
  return t;
}

int main(void) {
  uint64_t total = 0;
  uint32_t worst = 0, start, calibration, steps, used = 0, i;
  volatile uint32_t *low;
  FILE *out;
  initialise_monitor_handles();
  SYST_RVR = 0xFFFFFFu;
  SYST_CVR = 0;
  SYST_CSR = 5; /* the processor clock, no interrupt */
  start = SYST_CVR;
  known_loop(100000); /* 200,000 instructions (subs + bne) */
  calibration = ticks_since(start);
  low = (volatile uint32_t *)__builtin_frame_address(0) - PAINTED_WORDS;
  for (i = 0; i < PAINTED_WORDS - 64; ++i) low[i] = PAINT;
  steps = stream(&total, &worst);
  for (i = 0; i < PAINTED_WORDS - 64 && low[i] == PAINT; ++i) {
  }
  used = (PAINTED_WORDS - i) * 4u;
  out = fopen("y.bin", "wb");
  if (!out || fwrite(outputs, sizeof outputs, 1, out) != 1) return 2;
  fclose(out);
  printf("steps %lu ticks %llu worst %lu calibration_ticks %lu calibration_instructions 200000 stack_bytes %lu\n",
         (unsigned long)steps, (unsigned long long)total, (unsigned long)worst, (unsigned long)calibration,
         (unsigned long)used);
  return 0;
}
