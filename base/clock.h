/* base/clock.h — the clocks: monotonic (intervals, deadlines) and wall
 * (Unix epoch, for records that outlive the process). */
#ifndef LOOM_BASE_CLOCK_H
#define LOOM_BASE_CLOCK_H
#include <stdint.h>

int64_t loom__now_ms(void);   /* CLOCK_MONOTONIC, ms */
int64_t loom__now_us(void);   /* CLOCK_MONOTONIC, us */
int64_t loom__wall_ms(void);  /* CLOCK_REALTIME: Unix time in ms */
#endif
