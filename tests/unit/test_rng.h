/*
 * test_rng.h — the kernel tests' random inputs: a xorshift64 generator, uniform floats and
 * integers. Each test file keeps its own seed (define TEST_RNG_SEED before including), so its
 * cases stay the ones it has always drawn.
 */
#ifndef EFT_TEST_RNG_H
#define EFT_TEST_RNG_H

#include <stdint.h>

#ifndef TEST_RNG_SEED
#define TEST_RNG_SEED 0x9e3779b97f4a7c15ull
#endif

static uint64_t g_rng = TEST_RNG_SEED;
static uint32_t rnd_u32(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}
static float rnd_f(float lo, float hi) { return lo + (hi - lo) * (float)(rnd_u32() & 0xffffff) / 16777216.0f; }
static int rnd_i(int lo, int hi) { return lo + (int)(rnd_u32() % (uint32_t)(hi - lo + 1)); }

#endif /* EFT_TEST_RNG_H */
