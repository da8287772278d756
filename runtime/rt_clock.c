#include "rt_clock.h"

#include <assert.h>
#include <sys/resource.h>
#include <time.h>

static uint64_t clock_system_now(struct rt_clock *clock)
{
    (void)clock;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t clock_manual_now(struct rt_clock *clock)
{
    return clock->manual_ms;
}

void rt_clock_init_system(struct rt_clock *clock)
{
    assert(clock != NULL);
    clock->now_ms = clock_system_now;
    clock->manual_ms = 0;
}

void rt_clock_init_manual(struct rt_clock *clock, uint64_t start_ms)
{
    assert(clock != NULL);
    clock->now_ms = clock_manual_now;
    clock->manual_ms = start_ms;
}

void rt_clock_advance(struct rt_clock *clock, uint64_t delta_ms)
{
    assert(clock != NULL);
    assert(clock->now_ms == clock_manual_now); /* Only a manual clock is moved by hand. */
    clock->manual_ms += delta_ms;
}

uint64_t rt_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

double rt_process_cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void rt_prng_seed(struct rt_prng *prng, uint64_t seed)
{
    assert(prng != NULL);
    for (int i = 0; i < 4; i++) {
        prng->s[i] = splitmix64(&seed);
    }
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t rt_prng_next(struct rt_prng *prng)
{
    uint64_t *s = prng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t rt_prng_below(struct rt_prng *prng, uint64_t bound)
{
    assert(bound > 0);
    /* Rejection sampling removes modulo bias. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t x;
    do {
        x = rt_prng_next(prng);
    } while (x >= limit);
    return x % bound;
}
