/*
 * postprocess.c — loading Hugging Face post-processors. TemplateProcessing, BertProcessing and
 * RobertaProcessing all become one template (special token ids and sequence slots with their type
 * ids) for a single text and one for a pair; ByteLevel only trims offsets; a Sequence holds at
 * most one template. tokenizer.c applies them.
 */
#include <jansson.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

static eft_status tpl_add(eft__tpl_item **v, size_t *n, int seq, uint32_t type_id, const int32_t *ids,
                          size_t n_ids, eft__error *err) {
    eft__tpl_item *nv = eft__realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
    *v = nv;
    eft__tpl_item *it = &nv[(*n)++];
    memset(it, 0, sizeof *it);
    it->seq = seq;
    it->type_id = type_id;
    if (n_ids) {
        if (!(it->ids = eft__malloc_array(n_ids, sizeof *ids))) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        memcpy(it->ids, ids, n_ids * sizeof *ids);
        it->n_ids = n_ids;
    }
    return EFT_OK;
}

/* ["[CLS]", 101] */
static eft_status token_pair(const json_t *j, const char *what, int32_t *id, eft__error *err) {
    const json_t *v = json_array_get(j, 1);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
        return eft__fail(err, EFT_ERR_FORMAT, "post-processor: \"%s\" must be [\"token\", id]", what);
    *id = (int32_t)json_integer_value(v);
    return EFT_OK;
}

static eft_status load_template(eft__tpl_item **out, size_t *n, const json_t *tpl, const json_t *specials,
                                const char *which, eft__error *err) {
    if (!json_is_array(tpl)) return eft__fail(err, EFT_ERR_FORMAT, "TemplateProcessing: \"%s\" must be an array", which);
    for (size_t i = 0; i < json_array_size(tpl); i++) {
        const json_t *e = json_array_get(tpl, i);
        const json_t *sq = json_object_get(e, "Sequence"), *sp = json_object_get(e, "SpecialToken");
        const json_t *body = sq ? sq : sp;
        const json_t *tid = json_object_get(body, "type_id");
        uint32_t type_id = json_is_integer(tid) && json_integer_value(tid) >= 0 ? (uint32_t)json_integer_value(tid) : 0;
        const char *id = eft__json_str(body, "id", NULL);
        if (!id) return eft__fail(err, EFT_ERR_FORMAT, "TemplateProcessing: %s[%zu] has no \"id\"", which, i);
        eft_status st;
        if (sq) {
            if (strcmp(id, "A") && strcmp(id, "B"))
                return eft__fail(err, EFT_ERR_FORMAT, "TemplateProcessing: sequence \"%s\" is neither A nor B", id);
            st = tpl_add(out, n, id[0] == 'A' ? 0 : 1, type_id, NULL, 0, err);
        } else if (sp) {
            const json_t *tok = json_object_get(specials, id);
            const json_t *ids = json_object_get(tok, "ids");
            if (!json_is_array(ids))
                return eft__fail(err, EFT_ERR_FORMAT, "TemplateProcessing: special token \"%s\" is not in special_tokens", id);
            size_t k = json_array_size(ids);
            int32_t buf[64];
            if (k > 64) return eft__fail(err, EFT_ERR_LIMIT, "TemplateProcessing: special token \"%s\" has %zu ids", id, k);
            for (size_t q = 0; q < k; q++) {
                const json_t *x = json_array_get(ids, q);
                if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX)
                    return eft__fail(err, EFT_ERR_FORMAT, "TemplateProcessing: special token \"%s\" has a bad id", id);
                buf[q] = (int32_t)json_integer_value(x);
            }
            st = tpl_add(out, n, -1, type_id, buf, k, err);
        } else {
            return eft__fail(err, EFT_ERR_FORMAT, "TemplateProcessing: %s[%zu] is neither Sequence nor SpecialToken", which, i);
        }
        if (st) return st;
    }
    return EFT_OK;
}

eft_status eft__post_load(eft__post *p, const json_t *j, eft__error *err) {
    memset(p, 0, sizeof *p);
    const char *type = eft__json_str(j, "type", NULL);
    if (!type) return eft__fail(err, EFT_ERR_FORMAT, "post_processor: no \"type\"");
    eft_status st;
    if (!strcmp(type, "TemplateProcessing")) {
        p->kind = EFT__POST_TEMPLATE;
        const json_t *sp = json_object_get(j, "special_tokens");
        if ((st = load_template(&p->single, &p->n_single, json_object_get(j, "single"), sp, "single", err))) return st;
        return load_template(&p->pair, &p->n_pair, json_object_get(j, "pair"), sp, "pair", err);
    }
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        bool roberta = type[0] == 'R';
        p->kind = EFT__POST_TEMPLATE;
        p->trim_offsets = roberta && eft__json_bool(j, "trim_offsets", true);
        p->add_prefix_space = roberta && eft__json_bool(j, "add_prefix_space", true);
        int32_t cls, sep;
        if ((st = token_pair(json_object_get(j, "cls"), "cls", &cls, err))) return st;
        if ((st = token_pair(json_object_get(j, "sep"), "sep", &sep, err))) return st;
        uint32_t b_type = roberta ? 0 : 1;
        if ((st = tpl_add(&p->single, &p->n_single, -1, 0, &cls, 1, err)) ||
            (st = tpl_add(&p->single, &p->n_single, 0, 0, NULL, 0, err)) ||
            (st = tpl_add(&p->single, &p->n_single, -1, 0, &sep, 1, err)) ||
            (st = tpl_add(&p->pair, &p->n_pair, -1, 0, &cls, 1, err)) ||
            (st = tpl_add(&p->pair, &p->n_pair, 0, 0, NULL, 0, err)) ||
            (st = tpl_add(&p->pair, &p->n_pair, -1, 0, &sep, 1, err)))
            return st;
        if (roberta && (st = tpl_add(&p->pair, &p->n_pair, -1, 0, &sep, 1, err))) return st;
        if ((st = tpl_add(&p->pair, &p->n_pair, 1, b_type, NULL, 0, err)) ||
            (st = tpl_add(&p->pair, &p->n_pair, -1, b_type, &sep, 1, err)))
            return st;
        return EFT_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        p->kind = EFT__POST_BYTE_LEVEL;
        p->trim_offsets = eft__json_bool(j, "trim_offsets", true);
        p->add_prefix_space = eft__json_bool(j, "add_prefix_space", true);
        return EFT_OK;
    }
    if (!strcmp(type, "Sequence")) {
        p->kind = EFT__POST_SEQUENCE;
        const json_t *a = json_object_get(j, "processors");
        if (!json_is_array(a)) return eft__fail(err, EFT_ERR_FORMAT, "Sequence post-processor: no \"processors\" array");
        p->items = eft__calloc(json_array_size(a) + 1, sizeof *p->items);
        if (!p->items) return eft__fail(err, EFT_ERR_OUT_OF_MEMORY, "out of memory");
        size_t templates = 0;
        for (size_t i = 0; i < json_array_size(a); i++) {
            p->n_items = i + 1;
            if ((st = eft__post_load(&p->items[i], json_array_get(a, i), err))) return st;
            if (p->items[i].kind == EFT__POST_SEQUENCE)
                return eft__fail(err, EFT_ERR_UNSUPPORTED, "a Sequence post-processor inside a Sequence is not supported");
            if (p->items[i].kind == EFT__POST_TEMPLATE && ++templates > 1)
                return eft__fail(err, EFT_ERR_UNSUPPORTED, "a Sequence post-processor with two templates is not supported");
        }
        return EFT_OK;
    }
    return eft__fail(err, EFT_ERR_UNSUPPORTED, "post-processor \"%s\" is not supported", type);
}

void eft__post_free(eft__post *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_single; i++) eft__free(p->single[i].ids);
    for (size_t i = 0; i < p->n_pair; i++) eft__free(p->pair[i].ids);
    eft__free(p->single);
    eft__free(p->pair);
    for (size_t i = 0; i < p->n_items; i++) eft__post_free(&p->items[i]);
    eft__free(p->items);
    memset(p, 0, sizeof *p);
}

size_t eft__post_added(const eft__post *p, bool pair) {
    size_t n = 0;
    if (p->kind == EFT__POST_SEQUENCE) {
        for (size_t i = 0; i < p->n_items; i++) n += eft__post_added(&p->items[i], pair);
        return n;
    }
    const eft__tpl_item *v = pair ? p->pair : p->single;
    size_t k = pair ? p->n_pair : p->n_single;
    for (size_t i = 0; i < k; i++) n += v[i].n_ids;
    return n;
}
