/*
 * fuzz_gguf.c — feeds arbitrary bytes to the GGUF reader. For a file that opens, every key/value
 * is walked (every array element read, nested arrays and strings included, each string touched at
 * both ends) and every tensor view is touched at its first and last byte and has its first block
 * dequantized, so anything that strays outside the input is caught by AddressSanitizer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/quant.h"
#include "formats/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

static void touch_str(eft__gguf_str s) {
    if (s.len) sink ^= (uint8_t)(s.ptr[0] ^ s.ptr[s.len - 1]);
}

static void walk_array(const eft__gguf *g, const eft__gguf_kv *kv) {
    uint64_t n = eft__gguf_arr_len(kv);
    for (uint64_t i = 0; i < n; i++) {
        eft__gguf_str s;
        int64_t iv;
        double fv;
        eft__gguf_kv sub;
        switch (eft__gguf_arr_type(kv)) {
        case EFT__GGUF_STRING:
            if (!eft__gguf_arr_str(g, kv, i, &s)) abort();
            touch_str(s);
            break;
        case EFT__GGUF_ARRAY:
            if (!eft__gguf_arr_sub(kv, i, &sub)) abort();
            walk_array(g, &sub);
            break;
        case EFT__GGUF_FLOAT32:
        case EFT__GGUF_FLOAT64:
            if (!eft__gguf_arr_f64(kv, i, &fv)) abort();
            sink ^= (uint8_t)(fv != fv);
            break;
        case EFT__GGUF_UINT64: /* values above INT64_MAX are refused; read as double instead */
            if (!eft__gguf_arr_f64(kv, i, &fv)) abort();
            break;
        default:
            if (!eft__gguf_arr_i64(kv, i, &iv)) abort();
            sink ^= (uint8_t)iv;
            break;
        }
    }
    /* One past the end must be refused. */
    eft__gguf_str s;
    int64_t iv;
    if (eft__gguf_arr_str(g, kv, n, &s) || eft__gguf_arr_i64(kv, n, &iv)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    eft__gguf *g = NULL;
    eft__error err;
    if (eft__gguf_open_memory(data, size, "fuzz", &g, &err) != EFT_OK) {
        if (g) abort(); /* a failed open leaves nothing to close */
        return 0;
    }
    for (size_t i = 0; i < eft__gguf_kv_count(g); i++) {
        const eft__gguf_kv *kv = eft__gguf_kv_at(g, i);
        touch_str(kv->key);
        if (kv->type == EFT__GGUF_STRING) touch_str(kv->v.s);
        if (kv->type == EFT__GGUF_ARRAY) walk_array(g, kv);
        /* Keys without a NUL inside must be found by hash (the first of a duplicate is refused). */
        if (!memchr(kv->key.ptr, 0, kv->key.len) && kv->key.len < 256) {
            char key[256];
            memcpy(key, kv->key.ptr, kv->key.len);
            key[kv->key.len] = 0;
            if (eft__gguf_find(g, key) != kv) abort();
        }
    }
    uint64_t u;
    int64_t iv;
    double f;
    bool b;
    eft__gguf_str s;
    sink ^= (uint8_t)(eft__gguf_get_u64(g, "general.alignment", &u) + eft__gguf_get_i64(g, "general.alignment", &iv) +
                      eft__gguf_get_f64(g, "general.alignment", &f) + eft__gguf_get_bool(g, "general.alignment", &b) +
                      eft__gguf_get_str(g, "general.architecture", &s));
    float block[256];
    for (size_t i = 0; i < eft__gguf_tensor_count(g); i++) {
        const eft__tensor_view *v = eft__gguf_tensor(g, i);
        if (eft__gguf_find_tensor(g, v->name) != v) abort(); /* the index must agree with the list */
        if (v->nbytes) {
            const uint8_t *p = v->data;
            sink ^= p[0];
            sink ^= p[v->nbytes - 1];
            const eft__dtype_traits *tr = eft__dtype_traits_of(v->dtype);
            if (v->nbytes >= tr->block_bytes) eft__dequantize_row(v->dtype, p, block, tr->block_elems);
        }
    }
    eft__gguf_close(g);
    return 0;
}
