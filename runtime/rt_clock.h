/* rt_clock: an injectable wall clock, and a seeded PRNG.
 *
 * Nothing in the apply path reads the clock: the leader stamps each batch with its time and
 * every replica uses that stamp (determinism). The clock is read by the leader, timers and
 * the API; tests inject a manual clock to drive time.
 */
#ifndef RT_CLOCK_H
#define RT_CLOCK_H

#include <stdint.h>

struct rt_clock {
    /* Unix time in milliseconds. */
    uint64_t (*now_ms)(struct rt_clock *clock);
    /* For the manual clock: the time it returns. */
    uint64_t manual_ms;
};

/* A clock reading CLOCK_REALTIME. */
void rt_clock_init_system(struct rt_clock *clock);
/* A clock that returns @start_ms until moved with rt_clock_advance(). */
void rt_clock_init_manual(struct rt_clock *clock, uint64_t start_ms);
void rt_clock_advance(struct rt_clock *clock, uint64_t delta_ms);

static inline uint64_t rt_clock_now_ms(struct rt_clock *clock)
{
    return clock->now_ms(clock);
}

/* Monotonic milliseconds, for timeouts and durations (never for stored times). */
uint64_t rt_monotonic_ms(void);

/* CPU seconds this process has used (user + system), for benchmarks' client-CPU figures. */
double rt_process_cpu_seconds(void);

/* xoshiro256** seeded through splitmix64: fast, good enough for jitter, ids in tests and
 * simulation. Not for secrets: those come from OpenSSL's RAND_bytes. */
struct rt_prng {
    uint64_t s[4];
};

void rt_prng_seed(struct rt_prng *prng, uint64_t seed);
uint64_t rt_prng_next(struct rt_prng *prng);
/* Uniform in [0, bound), bound > 0. */
uint64_t rt_prng_below(struct rt_prng *prng, uint64_t bound);

#endif /* RT_CLOCK_H */
