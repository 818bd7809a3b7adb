/*
 * compile.c — eft_compile and the program inspection functions of the public API, and the cache
 * key and header of encoder programs. Compiling an encoder is opening an embedder with the
 * compile's plan (so the model, its tokenizer and every option are checked exactly as a later
 * open will check them) and writing its packed encoder out; embedder.c's cache does the same.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/json.h"
#include "graph/program.h"
#include "kernels/cpu/kernels.h"
#include "models/decoder.h"
#include "models/encoder.h"
#include "runtime/compile.h"

eft_status eft__encoder_program_key(const eft_model *m, eft_dtype dtype, char *out, eft__error *err) {
    uint64_t mh;
    eft_status s = eft__encoder_model_hash(m, &mh, err);
    if (s != EFT_OK) return s;
    char text[256];
    int n = snprintf(text, sizeof text, "eft-program/%u|eft %s|isa %s|panels %d|kind encoder|model %016llx|weights %s",
                     EFT__PROGRAM_VERSION, eft_version(), eft__isa_name(eft__kernels_get()->isa), EFT__SGEMM_NR,
                     (unsigned long long)mh, eft_dtype_name(dtype));
    snprintf(out, 17, "%016llx", (unsigned long long)eft__fnv1a64(EFT__FNV1A64_INIT, text, (size_t)n));
    return EFT_OK;
}

/* The --dtype spelling of a weight type. */
static const char *dtype_option(eft_dtype d) {
    const char *n = eft_weight_dtype_label(d);
    return n ? n : "f32";
}

eft_status eft__decoder_program_key(const eft_model *m, eft_dtype weight_dtype, char *out, eft__error *err) {
    uint64_t mh;
    eft_status s = eft__decoder_model_hash(m, &mh, err);
    if (s != EFT_OK) return s;
    char text[256];
    int n = snprintf(text, sizeof text, "eft-program/%u|eft %s|isa %s|panels %d|kind decoder|model %016llx|weights %s",
                     EFT__PROGRAM_VERSION, eft_version(), eft__isa_name(eft__kernels_get()->isa), EFT__SGEMM_NR,
                     (unsigned long long)mh, weight_dtype == EFT_DTYPE_COUNT ? "keep" : eft_dtype_name(weight_dtype));
    snprintf(out, 17, "%016llx", (unsigned long long)eft__fnv1a64(EFT__FNV1A64_INIT, text, (size_t)n));
    return EFT_OK;
}

char *eft__decoder_program_header_new(const char *key, const eft_generator_params *p) {
    json_t *h = json_pack("{s:s, s:s, s:I, s:{s:i, s:i, s:i, s:i, s:s, s:s, s:s}}", "key", key, "isa",
                          eft__isa_name(eft__kernels_get()->isa), "created_unix", (json_int_t)time(NULL), "options",
                          "ctx_len", p->ctx_len, "prefill_seq_len", p->prefill_seq_len, "full_batch_size",
                          p->full_batch_size, "num_cores", p->n_threads, "weight_dtype",
                          p->weight_dtype == EFT_DTYPE_COUNT ? "keep" : eft_dtype_name(p->weight_dtype), "kv_dtype",
                          eft_dtype_name(p->kv_dtype), "act_dtype", eft_dtype_name(p->activation_dtype));
    char *text = h ? json_dumps(h, JSON_PRESERVE_ORDER | JSON_COMPACT) : NULL;
    json_decref(h);
    return text;
}

char *eft__program_header_new(const char *key, const int *seq_lens, int n_seq_lens, int batch_size,
                              int num_cores, eft_dtype dtype) {
    json_t *lens = json_array();
    for (int i = 0; lens && i < n_seq_lens; i++)
        if (json_array_append_new(lens, json_integer(seq_lens[i]))) {
            json_decref(lens);
            lens = NULL;
        }
    json_t *h = lens ? json_pack("{s:s, s:s, s:I, s:{s:o, s:i, s:i, s:s}}", "key", key, "isa",
                                 eft__isa_name(eft__kernels_get()->isa), "created_unix", (json_int_t)time(NULL),
                                 "options", "seq_lens", lens, "batch_size", batch_size, "num_cores", num_cores,
                                 "dtype", dtype_option(dtype))
                     : NULL;
    char *text = h ? json_dumps(h, JSON_PRESERVE_ORDER | JSON_COMPACT) : NULL;
    json_decref(h);
    return text;
}

eft_compile_params eft_compile_params_default(void) {
    eft_generator_params g = eft_generator_params_default();
    return (eft_compile_params){.seq_lens = NULL, .n_seq_lens = 0, .batch_size = 8, .num_cores = 1,
                                .dtype = EFT_DTYPE_COUNT, .ctx_len = g.ctx_len,
                                .prefill_seq_len = g.prefill_seq_len, .full_batch_size = g.full_batch_size,
                                .kv_dtype = g.kv_dtype, .activation_dtype = g.activation_dtype};
}

/* True when model opens as a causal LM's config (not an encoder's); anything else goes the
 * encoder's way, whose checks name the problem. */
static bool is_decoder_model(const char *model) {
    eft_model *m = NULL;
    if (eft_model_open(model, NULL, &m) != EFT_OK) return false;
    bool dec = m->has_cfg && !m->cfg.is_encoder;
    eft_model_close(m);
    return dec;
}

/* A causal LM: a generator opened with the compile's plan (so every option and the model are
 * checked as a later open checks them), its decoder written out. */
static eft_status compile_decoder(const char *model, const eft_compile_params *p, const char *out_dir,
                                  eft__error *err) {
    eft_generator_params gp = eft_generator_params_default();
    gp.n_threads = p->num_cores;
    gp.ctx_len = p->ctx_len;
    gp.prefill_seq_len = p->prefill_seq_len;
    gp.full_batch_size = p->full_batch_size;
    gp.weight_dtype = p->dtype;
    gp.kv_dtype = p->kv_dtype;
    gp.activation_dtype = p->activation_dtype;
    gp.no_cache = true; /* compile fresh: what is written must come from the model as it is now */
    eft_generator *g = NULL;
    eft_status s = eft_generator_open(model, &gp, &g);
    if (s != EFT_OK) {
        snprintf(err->msg, sizeof err->msg, "%s", eft_last_error());
        return err->status = s;
    }
    /* The ctx_len the generator settled on (0 means the model's), so the program says it. */
    gp.ctx_len = eft_generator_ctx_len(g);
    char key[17];
    char *header = NULL, *path = NULL;
    s = eft__decoder_program_key(eft__generator_model(g), gp.weight_dtype, key, err);
    if (s == EFT_OK) {
        header = eft__decoder_program_header_new(key, &gp);
        path = eft__path_join(out_dir, EFT__PROGRAM_FILE);
        if (!header || !path) s = eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if (s == EFT_OK) s = eft__mkdir_p(out_dir, err);
    if (s == EFT_OK) s = eft__generator_save_program(g, header, path, err);
    eft__free(header);
    eft__free(path);
    eft_generator_close(g);
    return s;
}

eft_status eft_compile(const char *model, const eft_compile_params *params, const char *out_dir) {
    eft__error err;
    eft__error_clear(&err);
    eft_compile_params p = params ? *params : eft_compile_params_default();
    if (!model || !out_dir) {
        eft__fail(&err, EFT_ERR_INVALID_ARGUMENT, "eft_compile: NULL argument");
        return eft__set_last_error(&err);
    }
    if (is_decoder_model(model)) {
        eft_status s = compile_decoder(model, &p, out_dir, &err);
        if (s != EFT_OK) return eft__set_last_error(&err);
        eft__clear_last_error();
        return EFT_OK;
    }
    if (p.dtype == EFT_DTYPE_COUNT) p.dtype = EFT_DTYPE_F32;
    if (!eft_weight_dtype_label(p.dtype)) {
        eft__fail(&err, EFT_ERR_UNSUPPORTED, "eft_compile: dtype %s; encoders compile to F32, F16, BF16 or a "
                  "group-quantised int8/int4 layout (Q8_0, Q4_0, Q4_1, I8_G64, I8_G128, I8_CH, I4_G64, I4_G128, "
                  "U4_G64, U4_G128)", eft_dtype_name(p.dtype));
        return eft__set_last_error(&err);
    }
    eft_embedder_params ep = eft_embedder_params_default();
    ep.seq_lens = p.seq_lens;
    ep.n_seq_lens = p.n_seq_lens;
    ep.max_batch = p.batch_size;
    ep.n_threads = p.num_cores;
    ep.dtype = p.dtype;
    ep.no_cache = true; /* compile fresh: what is written must come from the model as it is now */
    eft_embedder *e = NULL;
    eft_status s = eft_embedder_open(model, &ep, &e);
    if (s != EFT_OK) return s; /* the embedder's checks name the problem (lengths, batch, model) */
    int limit = eft_embedder_max_tokens(e);
    const int *lens = p.n_seq_lens > 0 ? p.seq_lens : &limit;
    int n_lens = p.n_seq_lens > 0 ? p.n_seq_lens : 1;
    char key[17];
    char *header = NULL, *path = NULL;
    s = eft__encoder_program_key(eft__embedder_model(e), p.dtype, key, &err);
    if (s == EFT_OK) {
        header = eft__program_header_new(key, lens, n_lens, p.batch_size, p.num_cores, p.dtype);
        path = eft__path_join(out_dir, EFT__PROGRAM_FILE);
        if (!header || !path) s = eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if (s == EFT_OK) s = eft__mkdir_p(out_dir, &err);
    if (s == EFT_OK) s = eft__embedder_save_program(e, header, path, &err);
    eft__free(header);
    eft__free(path);
    eft_embedder_close(e);
    if (s != EFT_OK) return eft__set_last_error(&err);
    eft__clear_last_error();
    return EFT_OK;
}

bool eft_is_program(const char *path) {
    char *p = eft__program_resolve(path);
    eft__free(p);
    return p != NULL;
}

char *eft_program_info_json(const char *path) {
    eft__error err;
    eft__error_clear(&err);
    char *file = path ? eft__program_resolve(path) : NULL;
    if (!file) {
        eft__fail(&err, EFT_ERR_NOT_FOUND, "%s: not an eft program (nor a folder holding %s)", path ? path : "(null)",
                  EFT__PROGRAM_FILE);
        eft__set_last_error(&err);
        return NULL;
    }
    eft__program *pg = NULL;
    if (eft__program_open(file, &pg, &err) != EFT_OK) {
        eft__free(file);
        eft__set_last_error(&err);
        return NULL;
    }
    json_t *blobs = json_array();
    uint64_t total = 0;
    bool ok = blobs != NULL;
    for (size_t i = 0; ok && i < eft__program_blob_count(pg); i++) {
        const eft__program_blob *b = eft__program_blob_at(pg, i);
        total += b->size;
        ok = !json_array_append_new(blobs, json_pack("{s:s, s:s, s:I}", "name", b->name, "dtype",
                                                     eft_dtype_name(b->dtype), "bytes", (json_int_t)b->size));
    }
    json_t *info = ok ? json_pack("{s:s, s:I, s:O, s:I, s:o}", "file", file, "size",
                                  (json_int_t)eft__program_size(pg), "header", (json_t *)eft__program_header(pg),
                                  "blob_bytes", (json_int_t)total, "blobs", blobs)
                      : NULL;
    if (!ok) json_decref(blobs);
    char *text = info ? json_dumps(info, JSON_PRESERVE_ORDER | JSON_INDENT(2)) : NULL;
    json_decref(info);
    eft__program_close(pg);
    eft__free(file);
    if (!text) {
        eft__fail(&err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        eft__set_last_error(&err);
    }
    return text;
}
