/*
 * rope.c — rotary position embeddings: the inverse frequencies of every scaling variant that
 * Hugging Face's modeling_rope_utils.py defines (default, linear, llama3, yarn, longrope), a
 * table of cos/sin per position built once at compile time, and the rotation itself. The
 * rotation is memory-bound and a few percent of a layer, so one plain C version serves every ISA
 * (the compiler vectorises the NeoX layout's contiguous halves).
 */
#include <math.h>
#include <string.h>

#include "kernels.h"

static double yarn_get_mscale(double scale, double mscale) {
    return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

/* The dimension index at which a rotation count of num_rot fits into max_pos positions. */
static double yarn_correction_dim(double num_rot, int dim, double base, double max_pos) {
    return (dim * log(max_pos / (num_rot * 2 * M_PI))) / (2 * log(base));
}

void eft__rope_inv_freq(const eft__rope_params *p, double *inv, double *attn_factor) {
    const int dim = p->rot_dims, half = dim / 2;
    const double base = p->base > 0 ? p->base : 10000.0;
    for (int i = 0; i < half; i++) inv[i] = 1.0 / pow(base, (2.0 * i) / dim);
    *attn_factor = 1.0;
    const double factor = p->factor > 0 ? p->factor : 1.0;
    switch (p->scaling) {
    case EFT__ROPE_SCALING_NONE: break;
    case EFT__ROPE_SCALING_LINEAR:
        for (int i = 0; i < half; i++) inv[i] /= factor;
        break;
    case EFT__ROPE_SCALING_LLAMA3: {
        double orig = p->original_max_pos > 0 ? (double)p->original_max_pos : 8192.0;
        double lo = p->low_freq_factor > 0 ? p->low_freq_factor : 1.0, hi = p->high_freq_factor > 0 ? p->high_freq_factor : 4.0;
        double lo_wavelen = orig / lo, hi_wavelen = orig / hi;
        for (int i = 0; i < half; i++) {
            double wavelen = 2 * M_PI / inv[i];
            if (wavelen < hi_wavelen) continue; /* high frequencies: unchanged */
            if (wavelen > lo_wavelen) {
                inv[i] /= factor; /* low frequencies: interpolated */
            } else {
                double smooth = (orig / wavelen - lo) / (hi - lo);
                inv[i] = (1 - smooth) * inv[i] / factor + smooth * inv[i];
            }
        }
        break;
    }
    case EFT__ROPE_SCALING_YARN: {
        double orig = p->original_max_pos > 0 ? (double)p->original_max_pos : (double)p->max_pos;
        double bf = p->beta_fast > 0 ? p->beta_fast : 32.0, bs = p->beta_slow > 0 ? p->beta_slow : 1.0;
        if (p->attention_factor > 0) *attn_factor = p->attention_factor;
        else if (p->mscale > 0 && p->mscale_all_dim > 0)
            *attn_factor = yarn_get_mscale(factor, p->mscale) / yarn_get_mscale(factor, p->mscale_all_dim);
        else *attn_factor = yarn_get_mscale(factor, 1.0);
        double low = floor(yarn_correction_dim(bf, dim, base, orig));
        double high = ceil(yarn_correction_dim(bs, dim, base, orig));
        if (low < 0) low = 0;
        if (high > dim - 1) high = dim - 1;
        if (low == high) high += 0.001; /* avoid a division by zero in the ramp */
        for (int i = 0; i < half; i++) {
            double ramp = (i - low) / (high - low);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            double extrap = 1 - ramp; /* 1: keep the original frequency */
            inv[i] = inv[i] / factor * (1 - extrap) + inv[i] * extrap;
        }
        break;
    }
    case EFT__ROPE_SCALING_LONGROPE: {
        double orig = p->original_max_pos > 0 ? (double)p->original_max_pos : (double)p->max_pos;
        /* Hugging Face picks by the running sequence length; a compiled program has one context. */
        const float *ext = (p->ctx_len > orig && p->long_factor) ? p->long_factor : p->short_factor;
        if (ext)
            for (int i = 0; i < half; i++) inv[i] /= ext[i];
        if (p->attention_factor > 0) {
            *attn_factor = p->attention_factor;
        } else {
            double scale = p->max_pos > 0 && orig > 0 ? (double)p->max_pos / orig : 1.0;
            *attn_factor = scale <= 1 ? 1.0 : sqrt(1 + log(scale) / log(orig));
        }
        break;
    }
    }
}

eft_status eft__rope_table_init(eft__rope_table *t, const eft__rope_params *p, int64_t n_pos, eft__error *err) {
    memset(t, 0, sizeof *t);
    if (p->rot_dims < 2 || p->rot_dims % 2 || p->rot_dims > 4096 || n_pos < 1 || n_pos > ((int64_t)1 << 24))
        return eft__fail(err, EFT_ERR_INVALID_ARGUMENT, "rope: rot_dims %d must be even in 2..4096 and positions %lld in 1..2^24",
                         p->rot_dims, (long long)n_pos);
    int half = p->rot_dims / 2;
    double inv[2048], af;
    eft__rope_inv_freq(p, inv, &af);
    t->cos_sin = eft__malloc_array((size_t)n_pos * (size_t)half * 2, sizeof(float));
    if (!t->cos_sin) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "rope: out of memory for %lld positions", (long long)n_pos);
    for (int64_t pos = 0; pos < n_pos; pos++)
        for (int i = 0; i < half; i++) {
            /* In double: pos * inv_freq reaches 1e5 radians, where float would lose the phase. */
            double a = (double)pos * inv[i];
            t->cos_sin[(pos * half + i) * 2] = (float)(cos(a) * af);
            t->cos_sin[(pos * half + i) * 2 + 1] = (float)(sin(a) * af);
        }
    t->n_pos = n_pos;
    t->half = half;
    t->attn_factor = (float)af;
    return EFT_OK;
}

void eft__rope_table_free(eft__rope_table *t) {
    if (!t) return;
    eft__free(t->cos_sin);
    memset(t, 0, sizeof *t);
}

void eft__rope_apply(const eft__rope_table *t, eft__rope_layout layout, float *x, int64_t ldx, int64_t T, int nh,
                     int hs, const int32_t *pos) {
    const int half = t->half;
    for (int64_t r = 0; r < T; r++) {
        const float *cs = t->cos_sin + (int64_t)pos[r] * half * 2;
        for (int h = 0; h < nh; h++) {
            float *v = x + r * ldx + (int64_t)h * hs;
            if (layout == EFT__ROPE_NEOX) {
                for (int i = 0; i < half; i++) {
                    float a = v[i], b = v[i + half], c = cs[2 * i], s = cs[2 * i + 1];
                    v[i] = a * c - b * s;
                    v[i + half] = b * c + a * s;
                }
            } else {
                for (int i = 0; i < half; i++) {
                    float a = v[2 * i], b = v[2 * i + 1], c = cs[2 * i], s = cs[2 * i + 1];
                    v[2 * i] = a * c - b * s;
                    v[2 * i + 1] = b * c + a * s;
                }
            }
        }
    }
}
