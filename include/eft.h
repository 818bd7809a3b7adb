/*
 * eft.h — the public C API of eft ("efficient transformers").
 *
 * Everything a front end (CLI, HTTP server, Python package) may call lives here: opaque handles,
 * status codes, logging and allocation hooks, and model inspection. Internal structures stay in
 * src/. Every function that can fail returns an eft_status (0 = OK, negative = error) and leaves a
 * human-readable message behind, on the handle where there is one and always in eft_last_error().
 */
#ifndef EFT_H
#define EFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Version
 * ------------------------------------------------------------------------------------------- */

#define EFT_VERSION_MAJOR 0
#define EFT_VERSION_MINOR 1
#define EFT_VERSION_PATCH 0
#define EFT_VERSION_STRING "0.1.0"

/* The library's version string; it matches EFT_VERSION_STRING of the header it was built with. */
const char *eft_version(void);

/* ---------------------------------------------------------------------------------------------
 * Status codes and errors
 * ------------------------------------------------------------------------------------------- */

typedef enum eft_status {
    EFT_OK = 0,
    EFT_ERR_INVALID_ARGUMENT = -1, /* the caller passed something unusable */
    EFT_ERR_OUT_OF_MEMORY = -2,    /* an allocation failed */
    EFT_ERR_IO = -3,               /* a file could not be opened, read or mapped */
    EFT_ERR_NOT_FOUND = -4,        /* a file, tensor, key or model is not there */
    EFT_ERR_FORMAT = -5,           /* a file is malformed: truncated, inconsistent, hostile */
    EFT_ERR_UNSUPPORTED = -6,      /* well-formed, but uses something eft does not implement */
    EFT_ERR_LIMIT = -7,            /* a size or count is over a limit */
    EFT_ERR_INTERNAL = -8,         /* a bug in eft: please report it */
} eft_status;

/* A short fixed name for a status code ("EFT_ERR_FORMAT"); never NULL. */
const char *eft_status_str(eft_status status);

/* The message of the last failed call made on this thread, or "" when there was none. The string
 * is borrowed: valid until the next eft call on the same thread. */
const char *eft_last_error(void);

/* ---------------------------------------------------------------------------------------------
 * Logging
 * ------------------------------------------------------------------------------------------- */

typedef enum eft_log_level {
    EFT_LOG_ERROR = 0,
    EFT_LOG_WARN = 1,
    EFT_LOG_INFO = 2,
    EFT_LOG_DEBUG = 3,
} eft_log_level;

/* Receives each log line (without a trailing newline). Called from whichever thread logs. */
typedef void (*eft_log_callback)(eft_log_level level, const char *message, void *user_data);

/* Messages above this level are dropped. The default is EFT_LOG_WARN, or the value of the
 * environment variable EFT_LOG (error, warn, info, debug) when it is set. */
void eft_log_set_level(eft_log_level level);
eft_log_level eft_log_get_level(void);

/* Route log lines to cb instead of stderr; cb = NULL restores stderr. */
void eft_log_set_callback(eft_log_callback cb, void *user_data);

/* ---------------------------------------------------------------------------------------------
 * Allocation
 * ------------------------------------------------------------------------------------------- */

/* Every heap allocation of the library goes through these three functions, so that an embedding
 * application can account for memory and tests can inject failures. realloc(NULL, n) must behave
 * like alloc(n). Set it before any other eft call; swapping allocators while objects allocated by
 * the previous one are alive is undefined. */
typedef struct eft_allocator {
    void *(*alloc)(size_t size, void *user_data);
    void *(*realloc)(void *ptr, size_t size, void *user_data);
    void (*free)(void *ptr, void *user_data);
    void *user_data;
} eft_allocator;

/* a = NULL restores the C library's malloc/realloc/free. */
void eft_set_allocator(const eft_allocator *a);

/* Frees memory the library handed to the caller (strings from *_json functions). NULL is a no-op. */
void eft_free(void *ptr);

/* ---------------------------------------------------------------------------------------------
 * Element types
 * ------------------------------------------------------------------------------------------- */

/* Element types of tensors as files store them. Block-quantised types (Q*) store blocks of
 * elements with their scales, GGUF's layouts. */
typedef enum eft_dtype {
    EFT_DTYPE_F32 = 0,
    EFT_DTYPE_F16,
    EFT_DTYPE_BF16,
    EFT_DTYPE_F64,
    EFT_DTYPE_F8_E4M3,
    EFT_DTYPE_F8_E5M2,
    EFT_DTYPE_I64,
    EFT_DTYPE_I32,
    EFT_DTYPE_I16,
    EFT_DTYPE_I8,
    EFT_DTYPE_U64,
    EFT_DTYPE_U32,
    EFT_DTYPE_U16,
    EFT_DTYPE_U8,
    EFT_DTYPE_BOOL,
    EFT_DTYPE_Q4_0,
    EFT_DTYPE_Q4_1,
    EFT_DTYPE_Q5_0,
    EFT_DTYPE_Q5_1,
    EFT_DTYPE_Q8_0,
    EFT_DTYPE_Q2_K,
    EFT_DTYPE_Q3_K,
    EFT_DTYPE_Q4_K,
    EFT_DTYPE_Q5_K,
    EFT_DTYPE_Q6_K,
    EFT_DTYPE_Q8_K,
    /* eft's group-quantised weight layouts (GGUF's Q4_0, Q4_1 and Q8_0 are the members with
     * groups of 32): int4 symmetric, int4 with a per-group minimum (AWQ/GPTQ zero points), and
     * int8, each with groups of 64 or 128 along K. See src/core/quant.h. */
    EFT_DTYPE_I4_G64,
    EFT_DTYPE_I4_G128,
    EFT_DTYPE_U4_G64,
    EFT_DTYPE_U4_G128,
    EFT_DTYPE_I8_G64,
    EFT_DTYPE_I8_G128,
    /* A compile request rather than a storage type: int8 with one scale per output channel,
     * stored as I8_G128 blocks with the row's scale in each (I8_G64 or Q8_0 where 128 does not
     * divide K). */
    EFT_DTYPE_I8_CH,
    EFT_DTYPE_COUNT
} eft_dtype;

/* "F32", "Q4_K", ...; "?" for a value out of range. */
const char *eft_dtype_name(eft_dtype dtype);
/* The names compile targets go by (`--dtype`, programs' "weights"): "f32", "f16", "bf16", "int8"
 * (Q8_0), "int4" (Q4_0), "int8-g32|g64|g128", "int8-channel", "int4-g32|g64|g128" (symmetric) and
 * "int4-g32|g64|g128-asym" (with a per-group minimum). eft_weight_dtype_parse returns
 * EFT_DTYPE_COUNT for a name it does not know; eft_weight_dtype_label returns NULL for a dtype
 * that is not a weight compile target. */
eft_dtype eft_weight_dtype_parse(const char *name);
const char *eft_weight_dtype_label(eft_dtype dtype);

/* ---------------------------------------------------------------------------------------------
 * Models as published
 * ------------------------------------------------------------------------------------------- */

/* An opened model: its configuration, its weights (memory-mapped, not copied), its tokenizer and
 * sentence-transformers files, as found on disk. Reading a model checks every size and offset. */
typedef struct eft_model eft_model;

typedef struct eft_model_params {
    /* Where Hugging Face ids ("org/name") are looked up. NULL: $HF_HUB_CACHE, else
     * $HF_HOME/hub, else ~/.cache/huggingface/hub. */
    const char *hf_cache_dir;
    /* Revision to use for a Hugging Face id (a branch or tag under refs/, or a commit hash).
     * NULL: "main". */
    const char *revision;
} eft_model_params;

eft_model_params eft_model_params_default(void);

/* Opens a model. ref is one of:
 *   - a folder in Hugging Face layout (config.json, *.safetensors or model.safetensors.index.json,
 *     tokenizer.json, sentence-transformers modules),
 *   - a .gguf file,
 *   - a Hugging Face id "org/name" already present in the local Hugging Face cache.
 * params may be NULL for the defaults. On failure *out is NULL, nothing needs closing, and
 * eft_last_error() says what was wrong and where. */
eft_status eft_model_open(const char *ref, const eft_model_params *params, eft_model **out);

/* Releases everything the model holds. NULL is a no-op. */
void eft_model_close(eft_model *model);

/* The message of the last failed call on this model ("" if none). Borrowed, like eft_last_error. */
const char *eft_model_errmsg(const eft_model *model);

/* A JSON document describing the model: architecture, sizes, files read, tensor count and dtypes,
 * tokenizer kind, pooling configuration. The caller frees it with eft_free. NULL on failure: out
 * of memory, or a tokenizer.json that cannot be read (eft_model_errmsg says which). */
char *eft_model_info_json(eft_model *model);

/* ---------------------------------------------------------------------------------------------
 * Kernel benchmark (eft bench kernels)
 * ------------------------------------------------------------------------------------------- */

/* Receives the benchmark report one line at a time (without a trailing newline). */
typedef void (*eft_bench_line_fn)(const char *line, void *user_data);

typedef struct eft_bench_params {
    int n_threads;      /* 0: every online CPU */
    double min_seconds; /* time spent per measurement; the best repetition is reported. 0: 0.25 */
    int quick;          /* nonzero: small shapes only, for tests (seconds instead of a minute) */
    int no_peer;        /* nonzero: skip the OpenBLAS comparison even when libopenblas loads */
} eft_bench_params;

eft_bench_params eft_bench_params_default(void);

/* Measures, in one run, the machine's peak FMA rate and STREAM copy/triad bandwidth, then eft's
 * f32 GEMM (next to OpenBLAS sgemm, loaded at run time when present, same shapes and threads),
 * GEMV bandwidth per weight type, and attention prefill, on real model shapes (MiniLM-L6,
 * SmolLM2-135M, Llama-3.2-1B). Each line of the report goes to line_fn. params may be NULL. */
eft_status eft_bench_kernels(const eft_bench_params *params, eft_bench_line_fn line_fn, void *user_data);

/* The machine's ceilings as eft_bench_kernels measures them (best of repeated short runs over
 * min_seconds each; 0: 0.25 s): peak FMA rate of the chosen kernels in GFLOPS and STREAM triad
 * bandwidth in GB/s, with n_threads (0: every online CPU). For model-level benchmarks that quote
 * their figures as a fraction of these. */
eft_status eft_bench_machine(int n_threads, double min_seconds, double *peak_gflops, double *triad_gbs);

/* ---------------------------------------------------------------------------------------------
 * Chat templates
 * ------------------------------------------------------------------------------------------- */

/* A model's chat template (Jinja2), rendered byte for byte as transformers' apply_chat_template
 * renders it with Python's jinja2. Everything the template uses is checked when it is opened: a
 * construct eft does not implement fails there, with the construct and its line in the message. */
typedef struct eft_chat_template eft_chat_template;

/* Opens a template from its source text (UTF-8, len bytes). */
eft_status eft_chat_template_open(const char *source, size_t len, eft_chat_template **out);

/* Opens the template of a model, named as eft_model_open takes it (folder, .gguf, Hugging Face id
 * in the local cache): a folder's chat_template.jinja, else chat_template.json, else
 * "chat_template" in tokenizer_config.json (a list of named templates means "default"), or a
 * GGUF's tokenizer.chat_template. The model's special tokens (bos_token, eos_token, ...)
 * become template variables, as transformers passes them. */
eft_status eft_chat_template_open_model(const char *path, eft_chat_template **out);

/* Renders messages_json (a JSON array of message objects, or {"messages": [...]}) with
 * options_json (NULL or a JSON object): "add_generation_prompt", "tools", "documents", and any
 * other key as a template variable (bos_token, enable_thinking, ...; these override the model's).
 * On success *out_text is the prompt (NUL-terminated; out_len may be NULL), freed with eft_free.
 * When the template calls raise_exception, the status is EFT_ERR_INVALID_ARGUMENT and the error
 * message is exactly the template's message (meant for the client); other failures caused by the
 * input are EFT_ERR_INVALID_ARGUMENT too, hostile templates get EFT_ERR_LIMIT. */
eft_status eft_chat_template_render(eft_chat_template *t, const char *messages_json, const char *options_json,
                                    char **out_text, size_t *out_len);

/* The message of the last failed call on t ("" if none); borrowed until the next call on t. */
const char *eft_chat_template_errmsg(const eft_chat_template *t);

/* NULL is a no-op. */
void eft_chat_template_close(eft_chat_template *t);

/* ---------------------------------------------------------------------------------------------
 * Tokenizers
 *
 * A tokenizer reproduces Hugging Face `tokenizers` id for id: WordPiece, WordLevel, BPE (byte-level
 * and SentencePiece-style with byte fallback) and Unigram, with their normalizers, pre-tokenizers,
 * post-processors, decoders and added tokens, loaded from tokenizer.json or a GGUF vocabulary.
 * An opened tokenizer is read-only: any number of threads may encode and decode with it at once,
 * which is why errors of those calls are reported through eft_last_error() (per thread).
 * Text is UTF-8; invalid UTF-8 is not refused: each maximal invalid byte sequence is read as
 * U+FFFD (what Python's bytes.decode("utf-8", "replace") does), and offsets still point into the
 * bytes given. Offsets are byte offsets [start, end) into the text of their sequence.
 * ------------------------------------------------------------------------------------------- */


typedef struct eft_tokenizer eft_tokenizer;
typedef struct eft_encoding eft_encoding;

typedef enum eft_truncation_strategy {
    EFT_TRUNCATE_LONGEST_FIRST = 0, /* shorten the longer sequence of a pair first (HF's default) */
    EFT_TRUNCATE_ONLY_FIRST = 1,
    EFT_TRUNCATE_ONLY_SECOND = 2,
} eft_truncation_strategy;

typedef enum eft_side {
    EFT_SIDE_RIGHT = 0,
    EFT_SIDE_LEFT = 1,
} eft_side;

typedef struct eft_encode_params {
    bool add_special_tokens; /* the post-processor's [CLS]/[SEP], <s>, ...; default true */
    /* Truncation: 0 = none. Otherwise the result (special tokens included) has at most
     * max_length tokens; when that is impossible (only_first on a too-short first text) the call
     * fails with EFT_ERR_LIMIT. */
    size_t max_length;
    eft_truncation_strategy truncation;
    eft_side truncation_side;
    /* Padding with pad_id (attention mask 0, type id pad_type_id) up to pad_to_length, then to a
     * multiple of pad_to_multiple_of; 0 = none. */
    size_t pad_to_length;
    size_t pad_to_multiple_of;
    int32_t pad_id;
    int32_t pad_type_id;
    eft_side padding_side;
} eft_encode_params;

eft_encode_params eft_encode_params_default(void);

/* path: a folder with tokenizer.json, a tokenizer.json file, or a .gguf file (its
 * tokenizer.ggml.* vocabulary). A component eft does not implement is refused with its name
 * (EFT_ERR_UNSUPPORTED), never ignored. On failure *out is NULL and eft_last_error() says why. */
eft_status eft_tokenizer_open(const char *path, eft_tokenizer **out);
/* The same from the bytes of a tokenizer.json document (copied; the caller keeps nothing). */
eft_status eft_tokenizer_open_json(const char *json, size_t len, eft_tokenizer **out);
void eft_tokenizer_close(eft_tokenizer *t); /* NULL is a no-op */

/* Encodes text (len bytes), and pair when it is not NULL (a second text, for cross-encoders).
 * params may be NULL for the defaults. *out is freed with eft_encoding_free. */
eft_status eft_tokenizer_encode(const eft_tokenizer *t, const char *text, size_t len, const char *pair,
                                size_t pair_len, const eft_encode_params *params, eft_encoding **out);
void eft_encoding_free(eft_encoding *e); /* NULL is a no-op */

/* The arrays of an encoding, each eft_encoding_len(e) long, borrowed until eft_encoding_free. */
size_t eft_encoding_len(const eft_encoding *e);
const int32_t *eft_encoding_ids(const eft_encoding *e);
const int32_t *eft_encoding_type_ids(const eft_encoding *e);
const uint8_t *eft_encoding_attention_mask(const eft_encoding *e);
/* 1 for tokens the post-processor added ([CLS], <s>, ...) and padding. */
const uint8_t *eft_encoding_special_tokens_mask(const eft_encoding *e);
/* 0 or 1: which text a token came from; -1 for added special tokens and padding. */
const int8_t *eft_encoding_sequence_ids(const eft_encoding *e);
/* Two per token: byte offsets [start, end) into the token's text; (0, 0) for added tokens. */
const uint32_t *eft_encoding_offsets(const eft_encoding *e);

/* Decodes ids to UTF-8 text (NUL-terminated, out_len may be NULL), freed with eft_free. Ids that
 * are not in the vocabulary are skipped, as HF does. */
eft_status eft_tokenizer_decode(const eft_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
                                char **out, size_t *out_len);

/* Largest id + 1, added tokens included. */
size_t eft_tokenizer_vocab_size(const eft_tokenizer *t);
/* The id of a token (its text as in the vocabulary, e.g. "Ġthe"), or -1. */
int32_t eft_tokenizer_token_to_id(const eft_tokenizer *t, const char *token, size_t len);
/* The text of a token, borrowed for the tokenizer's lifetime, not NUL-terminated; NULL if none. */
const char *eft_tokenizer_id_to_token(const eft_tokenizer *t, int32_t id, size_t *len);
/* True for added tokens marked special (skipped by skip_special decoding). */
bool eft_tokenizer_is_special(const eft_tokenizer *t, int32_t id);

/* Incremental decoding for streaming generation: push ids one at a time and receive only text
 * that is final: complete UTF-8, never taken back (a run of byte-fallback tokens "<0xXX>" is
 * held until it ends). The concatenation of everything returned by push and finish equals
 * eft_tokenizer_decode of all the ids. */
typedef struct eft_detokenizer eft_detokenizer;
eft_status eft_detokenizer_open(const eft_tokenizer *t, bool skip_special, eft_detokenizer **out);
/* *text (*len bytes, possibly 0) is borrowed until the next call on d. */
eft_status eft_detokenizer_push(eft_detokenizer *d, int32_t id, const char **text, size_t *len);
/* Whatever is still held back (an incomplete UTF-8 sequence becomes U+FFFD, as in a full decode).
 * d can then be reused for a new sequence. */
eft_status eft_detokenizer_finish(eft_detokenizer *d, const char **text, size_t *len);
void eft_detokenizer_close(eft_detokenizer *d); /* NULL is a no-op */

/* ---------------------------------------------------------------------------------------------
 * Sentence embeddings
 * ------------------------------------------------------------------------------------------- */

/* Text to embedding vectors with an encoder model (BERT, RoBERTa, XLM-RoBERTa, MPNet): the
 * model's own tokenizer, its sentence-transformers pooling (mean when the folder has none) and
 * its Normalize module when present. Activations are planned once for max_batch inputs of the
 * longest compiled sequence length; inputs are bucketed by length (params.seq_lens). */
typedef struct eft_embedder eft_embedder;

typedef enum eft_truncate {
    EFT_TRUNCATE_NONE = 0,       /* an input over the limit is an error (EFT_ERR_LIMIT) */
    EFT_TRUNCATE_RIGHT_SIDE = 1, /* keep the start */
    EFT_TRUNCATE_LEFT_SIDE = 2,  /* keep the end */
} eft_truncate;

typedef struct eft_embedder_params {
    int n_threads;         /* threads, the caller's included; default 1; 0: every online CPU */
    int max_batch;         /* inputs per forward pass; default 8 */
    bool normalize;        /* L2-normalise even when the folder has no Normalize module */
    eft_truncate truncate; /* what to do with inputs over the limit; default NONE */
    int max_tokens;        /* a lower limit than the model's (0: the model's max_seq_length or positions) */
    /* Compiled sequence lengths (QEfficient's seq_len=[...]), copied at open: strictly ascending,
     * each in 1..the limit above, at most 64 of them; n_seq_lens 0 = just the limit. The longest
     * becomes the embedder's limit. Inputs are sorted by length, each batch runs at the smallest
     * length >= its longest input (up to max_batch inputs), results come back in input order. */
    const int *seq_lens;
    int n_seq_lens;
    /* Compiled programs: a model folder's checked and packed weights are kept in a program file
     * (see eft_compile) in the cache, keyed by a fingerprint of the model's files, dtype, eft's
     * version and the CPU's instruction set, so the next open maps it instead of packing again.
     * cache_dir NULL: $EFT_CACHE_DIR, else $XDG_CACHE_HOME/eft, else ~/.cache/eft. no_cache:
     * neither read nor write it. A cache that cannot be written is a warning (EFT_LOG), not an
     * error; an unreadable or corrupt cached program is compiled again. */
    const char *cache_dir;
    bool no_cache;
    eft_dtype dtype; /* weights: EFT_DTYPE_F32 (default), F16, BF16, Q8_0 (int8) or Q4_0 (int4); a program's own wins */
    /* Pooling instead of the folder's 1_Pooling config: one mode or several separated by commas,
     * concatenated in that order: "mean" (QEfficient's "avg" too), "cls", "max", "lasttoken",
     * "mean_sqrt_len_tokens", "weightedmean" — sentence-transformers' definitions. NULL: the
     * folder's (mean without one). The folder's Normalize module still applies. */
    const char *pooling;
} eft_embedder_params;

eft_embedder_params eft_embedder_params_default(void);

/* model is what eft_model_open takes, or a compiled program (a file written by eft_compile or
 * the folder holding it): then the model folder the program names is opened for the tokenizer,
 * pooling and word embeddings (and refused if its files changed since), the packed weights are
 * used in place from the program, and the program's seq_lens, batch_size and num_cores are the
 * plan unless params set them (n_seq_lens > 0, max_batch other than 8, n_threads other than 1 or 0;
 * max_tokens lowers the limit as usual). On failure *out is NULL and eft_last_error() says why. */
eft_status eft_embedder_open(const char *model, const eft_embedder_params *params, eft_embedder **out);
void eft_embedder_close(eft_embedder *e); /* NULL is a no-op */

/* D, the length of each embedding (hidden size x pooling modes). */
int64_t eft_embedder_dim(const eft_embedder *e);
/* The longest input in tokens, special tokens included. */
int eft_embedder_max_tokens(const eft_embedder *e);
/* The threads it runs on, the caller's included (n_threads 0 resolved). */
int eft_embedder_threads(const eft_embedder *e);

/* Embeds n NUL-terminated UTF-8 texts into out[n, D], in input order. One call at a time per
 * embedder. */
eft_status eft_embedder_embed(eft_embedder *e, const char *const *texts, size_t n, float *out);

/* The same with the model's prompt called prompt_name (config_sentence_transformers.json's
 * "prompts", e.g. "query" -> "query: ") put before every text, as sentence-transformers'
 * encode(prompt_name=...) does. NULL: no prompt. An unknown name is EFT_ERR_INVALID_ARGUMENT and
 * the message lists the model's prompts. */
eft_status eft_embedder_embed_prompt(eft_embedder *e, const char *prompt_name, const char *const *texts, size_t n,
                                     float *out);

/* The message of the last failed call on e ("" if none); borrowed until the next call on e. */
const char *eft_embedder_errmsg(const eft_embedder *e);

/* The embedder's tokenizer, borrowed for the embedder's lifetime (read-only: safe from any thread). */
const eft_tokenizer *eft_embedder_tokenizer(const eft_embedder *e);

/* A caller-supplied pooling function (eft_embed_request.pool), called once per input on the
 * calling thread: hidden [T, C] are the input's last hidden states padded to T, the compiled
 * length it ran at (rows t >= its token count are zeros), and mask [T] is 1 for its tokens and 0
 * for padding, as sentence-transformers hands a Pooling module token_embeddings and
 * attention_mask. Writes out [pool_dim]. Both are borrowed for the call. Returns 0, or non-zero
 * to fail the run (EFT_ERR_INVALID_ARGUMENT naming the input). */
typedef int (*eft_pool_fn)(float *out, const float *hidden, const uint8_t *mask, int64_t T, int64_t C, void *user);

/* One embedding call with per-request options: what servers need (OpenAI's /v1/embeddings and
 * TEI's /embed). Zero-initialise, or start from eft_embed_request_default(). */
typedef struct eft_embed_request {
    /* The inputs: n texts (NUL-terminated UTF-8), or, when texts is NULL, n token-id sequences
     * ids[i][0 .. n_ids[i]) used as given (no special tokens added; truncation cuts them as
     * given). A prompt_name with ids is EFT_ERR_INVALID_ARGUMENT rather than silently unused. */
    const char *const *texts;
    const int32_t *const *ids;
    const size_t *n_ids;
    size_t n;
    const char *prompt_name; /* as eft_embedder_embed_prompt; NULL: none */
    int normalize;           /* -1: the model's default (its Normalize module or params.normalize); 0 off; 1 on */
    eft_truncate truncate;   /* used as given for this call (the embedder's params.truncate is not consulted) */
    /* Matryoshka: keep the first `dimensions` values of each embedding (0: all of them). The cut
     * comes after pooling; when normalisation is on (normalize 1, or -1 on a model with a
     * Normalize module) the cut vector is then L2-normalised, so the result has norm 1. That is
     * sentence-transformers' encode(truncate_dim=k, normalize_embeddings=True); its default
     * normalize_embeddings=False on a Normalize model returns the first k values of the unit
     * vector (norm < 1) instead: with eft, ask for the full normalised vector and cut it. */
    int64_t dimensions;
    size_t *n_tokens;        /* [n] optional out: tokens each input ran with (after truncation) */
    /* Optional caller-supplied pooling instead of the model's (see eft_pool_fn): each embedding
     * is then pool_dim values (before the dimensions cut and normalisation, which still apply). */
    eft_pool_fn pool;
    int64_t pool_dim;
    void *pool_user;
} eft_embed_request;

eft_embed_request eft_embed_request_default(void); /* normalize -1, everything else 0/NULL */

/* Runs a request: out[n, dimensions ? dimensions : D] (D = pool_dim with a pool function), in
 * input order. A dimensions over D, an empty token sequence or an id outside the vocabulary is
 * EFT_ERR_INVALID_ARGUMENT; an input over the limit without truncation is EFT_ERR_LIMIT naming
 * both lengths. One call at a time per embedder. */
eft_status eft_embedder_run(eft_embedder *e, const eft_embed_request *r, float *out);

/* C, the hidden size: the width of eft_embedder_run_tokens' rows. */
int64_t eft_embedder_hidden_size(const eft_embedder *e);

/* Token-level output, no pooling (sentence-transformers' output_value="token_embeddings"): the
 * last hidden states of r's single input (r->n must be 1; texts or ids, prompt_name, truncate and
 * n_tokens as in eft_embedder_run), out [T, C] with T = the input's tokens. The caller owns out
 * and sizes it for eft_embedder_max_tokens(e) x eft_embedder_hidden_size(e) floats. Pooling
 * options (normalize 1, dimensions, pool) do not apply and are EFT_ERR_INVALID_ARGUMENT.
 * *n_tokens_out (required) receives T. */
eft_status eft_embedder_run_tokens(eft_embedder *e, const eft_embed_request *r, float *out, size_t *n_tokens_out);

/* Outputs of the model's sequence-classification head per input (cross-encoders: 1 for most
 * rerankers), 0 when it has none. */
int64_t eft_embedder_num_labels(const eft_embedder *e);

/* Cross-encoder scores for (query, texts[i]) pairs, each encoded as a text pair by the model's
 * tokenizer: scores[n, num_labels], raw logits (no sigmoid). truncate applies to each pair
 * (longest first); n_tokens[n] (optional) receives each pair's length. EFT_ERR_UNSUPPORTED when
 * the model has no classification head. */
eft_status eft_embedder_score(eft_embedder *e, const char *query, const char *const *texts, size_t n,
                              eft_truncate truncate, float *scores, size_t *n_tokens);

/* ---------------------------------------------------------------------------------------------
 * Compiled programs
 *
 * QEfficient's model.compile(num_cores=, seq_len=[...], batch_size=) for encoders: the model's
 * weights checked, converted and packed into the kernels' layout once, written as one mmap-able
 * file, so that opening it later only maps it. A program is tied to the exact model files it came
 * from: it records their folder (absolute path) and fingerprint, and opening it refuses a folder
 * whose files changed. Programs run on any CPU (the packed layout is the same for every
 * instruction set); the cache keys them by instruction set anyway, so that a layout that differs
 * per ISA later needs no new format.
 * ------------------------------------------------------------------------------------------- */

typedef struct eft_compile_params {
    const int *seq_lens; /* encoders: strictly ascending, each 1..the model's limit, at most 64; NULL/0: the limit */
    int n_seq_lens;
    int batch_size;      /* encoders: inputs per forward pass: default 8 */
    int num_cores;       /* threads: default 1 */
    /* Weights. Encoders: EFT_DTYPE_F32, F16, BF16, Q8_0
     * (int8) or Q4_0 (int4). Causal LMs: what eft_generator_params.weight_dtype
     * takes (F32, F16, BF16, Q8_0, Q4_0, Q4_1). EFT_DTYPE_COUNT (the default): the model kind's
     * own, f32 for encoders, the file's types (kept where a kernel reads them) for causal LMs. */
    eft_dtype dtype;
    /* Causal LMs (QEfficient's compile(prefill_seq_len, ctx_len, full_batch_size, ...)): recorded
     * as the plan a generator opened on the program uses unless its params say otherwise. The
     * program holds the converted matrices; the KV cache is planned at open. */
    int ctx_len;         /* 0: min(model's positions, 4096) */
    int prefill_seq_len; /* default 128 */
    int full_batch_size; /* default 1 */
    eft_dtype kv_dtype;  /* EFT_DTYPE_F32 (default), F16 or I8 */
    eft_dtype activation_dtype; /* EFT_DTYPE_F32 (default) or I8: eft_generator_params' */
} eft_compile_params;

eft_compile_params eft_compile_params_default(void);

/* Compiles the model (an encoder as eft_embedder_open takes it, or a causal LM as
 * eft_generator_open takes it: a folder or a .gguf) into the folder out_dir (created if needed)
 * as out_dir/program.eft, replacing one that is there atomically. params may be NULL. */
eft_status eft_compile(const char *model, const eft_compile_params *params, const char *out_dir);

/* True when path is a program file or a folder holding program.eft (checks the magic only). */
bool eft_is_program(const char *path);

/* A JSON document describing the program at path (file or folder), after checking it completely:
 * {"file", "size", "header": what was compiled (model path and fingerprint, architecture,
 * options, ISA, eft version, cache key), "blobs": [{"name", "dtype", "bytes"}], "blob_bytes"}.
 * The caller frees it with eft_free; NULL with eft_last_error() for a missing or bad program. */
char *eft_program_info_json(const char *path);

/* ---------------------------------------------------------------------------------------------
 * Text generation
 *
 * A generator runs a causal LM (Llama, Mistral, Qwen2/3, Gemma 2/3, Phi-3, GPT-2, from a Hugging
 * Face folder or a GGUF file) the way QEfficient's decode model does: a KV cache of
 * full_batch_size slots of ctx_len positions each, prefill in chunks of prefill_seq_len tokens,
 * and continuous batching: sequences wait in a queue, enter a free slot, and leave it when they
 * finish while the others keep decoding. What runs beside a sequence changes its logits only by
 * float rounding (a batch's products and attention sum in another order than one sequence's):
 * the tests find the same greedy tokens alone and batched, though an exact tie could still go
 * either way. A generator is not thread-safe: one thread submits and steps (a server's compute
 * thread); callbacks run on that thread, inside eft_generator_step.
 * ------------------------------------------------------------------------------------------- */

typedef struct eft_generator eft_generator;

typedef struct eft_generator_params {
    int n_threads;        /* threads, the caller's included; default 1; 0: every online CPU */
    int ctx_len;          /* KV positions per slot, prompt included; 0: min(model's positions, 4096) */
    int prefill_seq_len;  /* tokens per prefill chunk; default 128 */
    int full_batch_size;  /* KV cache slots = sequences decoding at once; default 1 */
    /* Weights: EFT_DTYPE_COUNT (the default) keeps what the file has where a kernel takes it
     * (f32; f16/bf16 widened to f32; GGUF Q4_0/Q4_1/Q8_0 as they are; other blocks repacked);
     * or F32, F16, BF16, Q8_0 (int8 per group of 32), Q4_0 / Q4_1 (int4 per group of 32). */
    eft_dtype weight_dtype;
    eft_dtype kv_dtype;   /* EFT_DTYPE_F32 (default), F16 or I8 */
    /* Compiled programs, as eft_embedder_params has them: the converted and packed matrices are
     * kept in a program file in the cache (keyed by a fingerprint of the model's files, the weight
     * type, eft's version and the instruction set), so the next open maps it instead of
     * converting again. cache_dir NULL: $EFT_CACHE_DIR, else $XDG_CACHE_HOME/eft, else
     * ~/.cache/eft; no_cache: neither read nor write it. A cache that cannot be written is a
     * warning; a bad cached program is built again. */
    const char *cache_dir;
    bool no_cache;
    /* Activations of the quantised matrices (Q8_0, Q4_0, Q4_1 weights): EFT_DTYPE_F32 (the
     * default, exact: the weights are dequantised and multiplied in f32, as transformers does, so
     * greedy tokens match it) or EFT_DTYPE_I8 (each row quantised to int8 per block of 32 and
     * multiplied on integer instructions, as llama.cpp does: faster, not token-for-token the
     * reference's). A run-time choice: the compiled program's weights are the same for both, and
     * a program records the one it was compiled with as its plan's default. */
    eft_dtype activation_dtype;
    /* Time every operation of the forward passes (eft_generator_profile); off by default. It
     * reads the clock twice per op, a few microseconds per pass. */
    bool profile;
} eft_generator_params;

eft_generator_params eft_generator_params_default(void);

typedef struct eft_sampling_params {
    float temperature;        /* 0: greedy (argmax, lowest id on ties) */
    int top_k;                /* 0: off */
    float top_p;              /* 1: off */
    float min_p;              /* 0: off */
    float repetition_penalty; /* 1: off (transformers' rule: logit / p if > 0 else logit * p) */
    float presence_penalty;   /* 0: off (OpenAI's rule, over generated tokens) */
    float frequency_penalty;  /* 0: off */
    uint64_t seed;            /* same seed, same prompt, same params: same output */
} eft_sampling_params;

typedef enum eft_finish_reason {
    EFT_FINISH_NONE = 0,  /* not finished */
    EFT_FINISH_STOP,      /* an EOS id or a stop string */
    EFT_FINISH_LENGTH,    /* max_tokens or ctx_len reached */
    EFT_FINISH_CANCELLED, /* eft_generator_cancel, or the callback returned non-zero */
    EFT_FINISH_ERROR,     /* the step failed; eft_generator_errmsg says why */
} eft_finish_reason;

const char *eft_finish_reason_str(eft_finish_reason r); /* "stop", "length", "cancelled", "error", "" */

typedef struct eft_token_logprob {
    int32_t id;
    float logprob; /* natural log of the probability under the model's distribution (log-softmax
                    * of the logits after penalties, before temperature and truncation) */
} eft_token_logprob;

/* What a callback receives, once per generated token except an EOS token that ends the sequence
 * (it counts in n_generated but gets no event and no text), and once more at the end (finish !=
 * NONE; that last event has token -1 and carries any text still held back). Everything is
 * borrowed for the duration of the call. */
typedef struct eft_gen_event {
    uint64_t seq;              /* from eft_generator_submit */
    void *user;                /* the submit's user pointer */
    int32_t token;             /* the sampled id, -1 on the final event */
    const char *text;          /* new text: complete UTF-8, stop strings held back and never emitted */
    size_t text_len;
    float logprob;             /* of token */
    const eft_token_logprob *top; /* the n_logprobs most likely tokens, most likely first */
    int n_top;
    eft_finish_reason finish;
    int n_prompt_tokens, n_generated;
} eft_gen_event;

/* Returns 0 to go on, non-zero to cancel the sequence (a client that went away). */
typedef int (*eft_gen_callback)(const eft_gen_event *ev);

typedef struct eft_generate_params {
    int max_tokens;                 /* generated tokens at most; 0: until ctx_len */
    eft_sampling_params sampling;
    const char *const *stop;        /* stop strings (copied at submit); the text ends before the match */
    int n_stop;
    bool ignore_eos;                /* do not stop on the model's EOS ids */
    int n_logprobs;                 /* top log-probabilities per token, 0..20 */
    eft_gen_callback callback;      /* may be NULL */
    void *user;
} eft_generate_params;

/* The model's generation_config.json defaults (temperature, top_k, top_p, min_p,
 * repetition_penalty, max_new_tokens when given) over the library defaults (greedy, no limit). */
eft_generate_params eft_generator_generate_params_default(const eft_generator *g);

/* model is what eft_model_open takes, or a compiled program (eft_compile of a causal LM: the file
 * or the folder holding it). Builds the prefill and decode paths with the weights packed once (or
 * maps them from the program, or from the cache). A program's weights are used as they are (its
 * weight type wins); its ctx_len, prefill_seq_len, full_batch_size, num_cores, kv_dtype and
 * activation_dtype are the
 * plan unless params set them (values other than the defaults; n_threads 0 too takes the
 * program's num_cores). The program's model (the folder
 * or .gguf it names) is opened for the tokenizer and embeddings and refused if its files changed.
 * On failure *out is NULL and eft_last_error() says why. */
eft_status eft_generator_open(const char *model, const eft_generator_params *params, eft_generator **out);
void eft_generator_close(eft_generator *g); /* NULL is a no-op */
const char *eft_generator_errmsg(const eft_generator *g);

/* Borrowed for the generator's lifetime: its tokenizer, and its chat template (NULL when the model
 * has none). */
const eft_tokenizer *eft_generator_tokenizer(const eft_generator *g);
eft_chat_template *eft_generator_chat_template(eft_generator *g);
int eft_generator_ctx_len(const eft_generator *g);
int eft_generator_slots(const eft_generator *g);
/* The threads it runs on, the caller's included (n_threads 0 resolved). */
int eft_generator_threads(const eft_generator *g);

/* Queues a sequence: prompt ids (already tokenized, special tokens included). The prompt must
 * leave room for one generated token: n_prompt < ctx_len, else EFT_ERR_LIMIT naming both.
 * *seq identifies it in events. params is copied. */
eft_status eft_generator_submit(eft_generator *g, const int32_t *prompt, size_t n_prompt,
                                const eft_generate_params *params, uint64_t *seq);
/* One scheduling step: moves waiting sequences into free slots, runs one forward pass over a
 * prefill chunk and/or one token of every decoding sequence, samples, and calls the callbacks.
 * Does nothing when no sequence is queued or running. */
eft_status eft_generator_step(eft_generator *g);
/* Sequences queued or running. */
int eft_generator_pending(const eft_generator *g);
/* Finishes a sequence with EFT_FINISH_CANCELLED at the next step (its final event still comes).
 * Unknown or finished seq: EFT_ERR_NOT_FOUND. */
eft_status eft_generator_cancel(eft_generator *g, uint64_t seq);

/* Scores a text as the model reads it (teacher forcing), for perplexity and agreement checks:
 * logprob[i] = log p(ids[i+1] | ids[0..i]) and top1[i] = the most likely token after ids[0..i],
 * for i < n - 1 (either array may be NULL). 2 <= n <= ctx_len. Runs in prefill chunks on slot 0,
 * so the generator must be idle (no sequence queued or running): EFT_ERR_INVALID_ARGUMENT
 * otherwise. */
eft_status eft_generator_score(eft_generator *g, const int32_t *ids, size_t n, float *logprob, int32_t *top1);

/* One operation of the forward pass and its time (eft_generator_params.profile). */
typedef struct eft_op_time {
    const char *op;   /* the operation: "matmul", "cache_attention", "rmsnorm", "rope", ... */
    const char *name; /* what it computes, as the graph names its output: "l3.gate", "output.logits" */
    double seconds;   /* wall time, summed over the passes since the open or the last reset */
    long calls;
    int group;        /* > 1: this op and the next group - 1 ran as one dispatch, all timed here */
} eft_op_time;
/* Fills out[0 .. min(max, n)) with the graph's n ops in order and returns n; 0 when the generator
 * was opened without profile. The strings live as long as g. */
int eft_generator_profile(const eft_generator *g, eft_op_time *out, int max);
/* Zeroes the profile's times and counts (for example after a warm-up). */
void eft_generator_profile_reset(eft_generator *g);

typedef struct eft_gen_stats {
    int n_prompt_tokens, n_generated;
    double ttft_s;        /* submit to first token */
    double total_s;       /* submit to finish */
    double prefill_tps;   /* prompt tokens / time to first token */
    double decode_tps;    /* (generated - 1) / (total - ttft) */
    eft_finish_reason finish;
} eft_gen_stats;

/* One prompt, start to end, on the calling thread: tokenizes text with the tokenizer's defaults
 * (BOS where the model adds one), submits, steps until done. *out (NUL-terminated, freed with
 * eft_free) is the generated text; stats may be NULL. params NULL: the generate defaults. */
eft_status eft_generator_generate(eft_generator *g, const char *text, const eft_generate_params *params,
                                  char **out, eft_gen_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* EFT_H */
