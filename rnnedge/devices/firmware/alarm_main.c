/* A bed-exit firmware: the generated step, then the monitor's get-up score and alarm (rnnedge/monitor/score.py
   and alarm.py, ported line for line, in double precision as the host computes them), over a recording compiled
   into flash (recording.h) from a sensor attached upright as recorded. Writes each alarm start and end
   (step, 1 = start / 0 = end) to alarms.bin on the host through semihosting. alarm_config.h is generated from the
   bundle's operating point (rnnedge/monitor/firmware.py). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include MODEL_HEADER
#include "alarm_config.h"
#include "recording.h"

extern void initialise_monitor_handles(void);

static int16_t state[MODEL_STATE];
static int16_t y[MODEL_OUTPUTS];
static int32_t transitions[2 * MAX_TRANSITIONS];

int main(void) {
  double ema = 0.0;
  long last_lying = -(1L << 30), blocked_until = 0;
  int active = 0, count = 0, k;
  uint32_t t;
  FILE *out;
  initialise_monitor_handles();
  for (t = 0; t < RECORDING_STEPS; ++t) {
    double logits[MODEL_OUTPUTS], top, sum = 0.0, raw, score;
    MODEL_STEP(state, recording[t], y);
    for (k = 0; k < MODEL_OUTPUTS; ++k) logits[k] = y[k] * (double)Y_SCALE;
    top = logits[0];
    for (k = 1; k < MODEL_OUTPUTS; ++k) top = logits[k] > top ? logits[k] : top;
    for (k = 0; k < MODEL_OUTPUTS; ++k) sum += logits[k] = exp(logits[k] - top);
    raw = logits[GET_UP_A] / sum + logits[GET_UP_B] / sum;
    ema += SCORE_ALPHA * (raw - ema);
    score = (long)t >= SCORE_HOLD_STEPS ? ema : 0.0;
    if (SCORE_GATE_STEPS > 0) {
      if (logits[LYING] / sum >= LYING_MIN) last_lying = (long)t;
      if ((long)t - last_lying > SCORE_GATE_STEPS) score = 0.0;
    }
    if (active ? score < ALARM_RELEASE : ((long)t >= blocked_until && score >= ALARM_THRESHOLD)) {
      if (active) blocked_until = (long)t + ALARM_REFRACTORY_STEPS;
      active = !active;
      if (count < MAX_TRANSITIONS) {
        transitions[2 * count] = (int32_t)t;
        transitions[2 * count + 1] = active;
        ++count;
      }
    }
  }
  out = fopen("alarms.bin", "wb");
  if (!out || (count && fwrite(transitions, sizeof(int32_t), 2 * count, out) != (size_t)(2 * count))) return 2;
  fclose(out);
  printf("steps %lu transitions %d\n", (unsigned long)t, count);
  return 0;
}
