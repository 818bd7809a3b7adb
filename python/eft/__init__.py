"""eft — the eft inference engine from Python, with QEfficient's calling conventions.

    from eft import AutoModel, AutoModelForCausalLM

    model = AutoModel.from_pretrained("models/all-MiniLM-L6-v2", pooling="mean")
    model.compile(num_cores=2, seq_len=[32, 128])
    vectors = model.embed(["a sentence", "another one"])

    lm = AutoModelForCausalLM.from_pretrained("models/SmolLM2-135M-Instruct-Q4_1")
    lm.compile(prefill_seq_len=32, ctx_len=512, full_batch_size=4, num_cores=2)
    out = lm.generate(prompts=["The capital of France is"], generation_len=16)
    out.generated_texts, out.exec_info

A thin layer over the C library (libeft.so, through ctypes): everything runs in C; Python only
converts arguments. `QEFFAutoModel` and `QEFFAutoModelForCausalLM` are aliases for code written
against QEfficient. The library is found through $EFT_LIBRARY, next to this package, or in the
source tree's build/ folder.
"""
import ctypes as C
import json
import os
import time

__all__ = ["AutoModel", "AutoModelForCausalLM", "QEFFAutoModel", "QEFFAutoModelForCausalLM", "Tokenizer",
           "EftError", "GenerationResult", "library_path", "version"]


class EftError(RuntimeError):
    """A failed eft call: the library's status name and message."""

    def __init__(self, status, message):
        self.status = status
        super().__init__("%s: %s" % (status, message))


# ------------------------------------------------------------------------------------------
# The library and the C declarations this module uses (they mirror include/eft.h).
# ------------------------------------------------------------------------------------------

def _find_library():
    env = os.environ.get("EFT_LIBRARY")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in (os.path.join(here, "libeft.so"),
                 os.path.join(here, "..", "..", "build", "libeft.so"),
                 os.path.join(here, "..", "..", "build-release", "libeft.so")):
        if os.path.exists(cand):
            return os.path.normpath(cand)
    return "libeft.so"


library_path = _find_library()
_lib = C.CDLL(library_path)

_DTYPES = {"F32": 0, "F16": 1, "BF16": 2, "I8": 9, "Q4_0": 15, "Q4_1": 16, "Q8_0": 19, "I4_G64": 26, "I4_G128": 27,
           "U4_G64": 28, "U4_G128": 29, "I8_G64": 30, "I8_G128": 31, "I8_CH": 32, "COUNT": 33}
_WEIGHT_DTYPES = {None: _DTYPES["COUNT"], "keep": _DTYPES["COUNT"], "f32": _DTYPES["F32"], "fp32": _DTYPES["F32"],
                  "f16": _DTYPES["F16"], "fp16": _DTYPES["F16"], "bf16": _DTYPES["BF16"],
                  "int8": _DTYPES["Q8_0"], "int4": _DTYPES["Q4_0"],
                  # The group-quantised layouts (src/core/quant.h), as `eft compile --dtype` names them.
                  "int8-g32": _DTYPES["Q8_0"], "int8-g64": _DTYPES["I8_G64"], "int8-g128": _DTYPES["I8_G128"],
                  "int8-channel": _DTYPES["I8_CH"], "int4-g32": _DTYPES["Q4_0"], "int4-g64": _DTYPES["I4_G64"],
                  "int4-g128": _DTYPES["I4_G128"], "int4-g32-asym": _DTYPES["Q4_1"],
                  "int4-g64-asym": _DTYPES["U4_G64"], "int4-g128-asym": _DTYPES["U4_G128"]}
_KV_DTYPES = {None: _DTYPES["F32"], "f32": _DTYPES["F32"], "f16": _DTYPES["F16"], "int8": _DTYPES["I8"]}
_TRUNCATE = {None: 0, False: 0, "none": 0, True: 1, "right": 1, "left": 2}


class _EmbedderParams(C.Structure):
    _fields_ = [("n_threads", C.c_int), ("max_batch", C.c_int), ("normalize", C.c_bool), ("truncate", C.c_int),
                ("max_tokens", C.c_int), ("seq_lens", C.POINTER(C.c_int)), ("n_seq_lens", C.c_int),
                ("cache_dir", C.c_char_p), ("no_cache", C.c_bool), ("dtype", C.c_int), ("pooling", C.c_char_p)]


class _EmbedRequest(C.Structure):
    _fields_ = [("texts", C.POINTER(C.c_char_p)), ("ids", C.POINTER(C.POINTER(C.c_int32))),
                ("n_ids", C.POINTER(C.c_size_t)), ("n", C.c_size_t), ("prompt_name", C.c_char_p),
                ("normalize", C.c_int), ("truncate", C.c_int), ("dimensions", C.c_int64),
                ("n_tokens", C.POINTER(C.c_size_t)), ("pool", C.c_void_p), ("pool_dim", C.c_int64),
                ("pool_user", C.c_void_p)]


class _GeneratorParams(C.Structure):
    _fields_ = [("n_threads", C.c_int), ("ctx_len", C.c_int), ("prefill_seq_len", C.c_int),
                ("full_batch_size", C.c_int), ("weight_dtype", C.c_int), ("kv_dtype", C.c_int),
                ("cache_dir", C.c_char_p), ("no_cache", C.c_bool), ("activation_dtype", C.c_int),
                ("profile", C.c_bool)]


class _SamplingParams(C.Structure):
    _fields_ = [("temperature", C.c_float), ("top_k", C.c_int), ("top_p", C.c_float), ("min_p", C.c_float),
                ("repetition_penalty", C.c_float), ("presence_penalty", C.c_float),
                ("frequency_penalty", C.c_float), ("seed", C.c_uint64)]


class _TokenLogprob(C.Structure):
    _fields_ = [("id", C.c_int32), ("logprob", C.c_float)]


class _GenEvent(C.Structure):
    _fields_ = [("seq", C.c_uint64), ("user", C.c_void_p), ("token", C.c_int32), ("text", C.POINTER(C.c_char)),
                ("text_len", C.c_size_t), ("logprob", C.c_float), ("top", C.POINTER(_TokenLogprob)),
                ("n_top", C.c_int), ("finish", C.c_int), ("n_prompt_tokens", C.c_int), ("n_generated", C.c_int)]


_GenCallback = C.CFUNCTYPE(C.c_int, C.POINTER(_GenEvent))


class _GenerateParams(C.Structure):
    _fields_ = [("max_tokens", C.c_int), ("sampling", _SamplingParams), ("stop", C.POINTER(C.c_char_p)),
                ("n_stop", C.c_int), ("ignore_eos", C.c_bool), ("n_logprobs", C.c_int), ("callback", _GenCallback),
                ("user", C.c_void_p)]


def _decl(name, restype, *argtypes):
    fn = getattr(_lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


_vp = C.c_void_p
_version = _decl("eft_version", C.c_char_p)
_status_str = _decl("eft_status_str", C.c_char_p, C.c_int)
_last_error = _decl("eft_last_error", C.c_char_p)
_eft_free = _decl("eft_free", None, _vp)

_tok_open = _decl("eft_tokenizer_open", C.c_int, C.c_char_p, C.POINTER(_vp))
_tok_close = _decl("eft_tokenizer_close", None, _vp)
_tok_encode = _decl("eft_tokenizer_encode", C.c_int, _vp, C.c_char_p, C.c_size_t, C.c_char_p, C.c_size_t, _vp,
                    C.POINTER(_vp))
_enc_free = _decl("eft_encoding_free", None, _vp)
_enc_len = _decl("eft_encoding_len", C.c_size_t, _vp)
_enc_ids = _decl("eft_encoding_ids", C.POINTER(C.c_int32), _vp)
_tok_decode = _decl("eft_tokenizer_decode", C.c_int, _vp, C.POINTER(C.c_int32), C.c_size_t, C.c_bool,
                    C.POINTER(C.c_void_p), C.POINTER(C.c_size_t))
_tok_vocab = _decl("eft_tokenizer_vocab_size", C.c_size_t, _vp)

_emb_defaults = _decl("eft_embedder_params_default", _EmbedderParams)
_emb_open = _decl("eft_embedder_open", C.c_int, C.c_char_p, C.POINTER(_EmbedderParams), C.POINTER(_vp))
_emb_close = _decl("eft_embedder_close", None, _vp)
_emb_dim = _decl("eft_embedder_dim", C.c_int64, _vp)
_emb_max_tokens = _decl("eft_embedder_max_tokens", C.c_int, _vp)
_emb_errmsg = _decl("eft_embedder_errmsg", C.c_char_p, _vp)
_emb_embed_prompt = _decl("eft_embedder_embed_prompt", C.c_int, _vp, C.c_char_p, C.POINTER(C.c_char_p), C.c_size_t,
                          C.POINTER(C.c_float))


def _optional(name, restype, *argtypes):
    try:
        return _decl(name, restype, *argtypes)
    except AttributeError:
        return None


# Newer parts of the API: present in libraries built with them.
_emb_run = _optional("eft_embedder_run", C.c_int, _vp, C.POINTER(_EmbedRequest), C.POINTER(C.c_float))
_emb_hidden = _optional("eft_embedder_hidden_size", C.c_int64, _vp)
_emb_run_tokens = _optional("eft_embedder_run_tokens", C.c_int, _vp, C.POINTER(_EmbedRequest), C.POINTER(C.c_float),
                            C.POINTER(C.c_size_t))
_emb_num_labels = _optional("eft_embedder_num_labels", C.c_int64, _vp)
_emb_score = _optional("eft_embedder_score", C.c_int, _vp, C.c_char_p, C.POINTER(C.c_char_p), C.c_size_t, C.c_int,
                       C.POINTER(C.c_float), C.POINTER(C.c_size_t))
_gen_defaults = _optional("eft_generator_params_default", _GeneratorParams)
_gen_open = _optional("eft_generator_open", C.c_int, C.c_char_p, C.POINTER(_GeneratorParams), C.POINTER(_vp))
_gen_close = _optional("eft_generator_close", None, _vp)
_gen_errmsg = _optional("eft_generator_errmsg", C.c_char_p, _vp)
_gen_tokenizer = _optional("eft_generator_tokenizer", _vp, _vp)
_gen_template = _optional("eft_generator_chat_template", _vp, _vp)
_gen_gp_default = _optional("eft_generator_generate_params_default", _GenerateParams, _vp)
_gen_submit = _optional("eft_generator_submit", C.c_int, _vp, C.POINTER(C.c_int32), C.c_size_t,
                        C.POINTER(_GenerateParams), C.POINTER(C.c_uint64))
_gen_step = _optional("eft_generator_step", C.c_int, _vp)
_gen_pending = _optional("eft_generator_pending", C.c_int, _vp)
_tmpl_render = _decl("eft_chat_template_render", C.c_int, _vp, C.c_char_p, C.c_char_p, C.POINTER(C.c_void_p),
                     C.POINTER(C.c_size_t))
_tmpl_errmsg = _decl("eft_chat_template_errmsg", C.c_char_p, _vp)


def version():
    return _version().decode()


def _check(status, message=None):
    if status != 0:
        msg = message() if callable(message) else message
        if not msg:
            msg = _last_error()
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        raise EftError(_status_str(status).decode(), msg)


def _require(fn, what):
    if fn is None:
        raise EftError("EFT_ERR_UNSUPPORTED", "%s is not in this libeft build (%s)" % (what, library_path))


def _to_id_lists(inputs):
    """Token ids from what tokenizers hand out: a dict/BatchEncoding with input_ids (and an
    attention mask to cut the padding), numpy or torch arrays, or lists."""
    mask = None
    if hasattr(inputs, "keys") and "input_ids" in inputs:
        mask = inputs.get("attention_mask")
        inputs = inputs["input_ids"]
    rows = inputs.tolist() if hasattr(inputs, "tolist") else list(inputs)
    if rows and isinstance(rows[0], int):
        rows = [rows]
    if mask is not None:
        mask = mask.tolist() if hasattr(mask, "tolist") else list(mask)
        if mask and isinstance(mask[0], int):
            mask = [mask]
        rows = [[t for t, m in zip(r, mr) if m] for r, mr in zip(rows, mask)]
    return [[int(t) for t in r] for r in rows]


def _as_matrix(flat, n, d):
    rows = [list(flat[i * d:(i + 1) * d]) for i in range(n)]
    try:
        import numpy as np
        return np.array(rows, dtype=np.float32).reshape(n, d)
    except ImportError:
        return rows


# ------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------

class Tokenizer:
    """A model's tokenizer (tokenizer.json or a GGUF vocabulary), id-identical to Hugging Face's."""

    def __init__(self, model, _borrowed=None, _owner=None):
        self._owner = _owner
        if _borrowed:
            self._h, self._own = _borrowed, False
            return
        h = _vp()
        _check(_tok_open(os.fsencode(model), C.byref(h)))
        self._h, self._own = h, True

    def __del__(self):
        if getattr(self, "_own", False) and self._h:
            _tok_close(self._h)
            self._h = None

    @property
    def vocab_size(self):
        return int(_tok_vocab(self._h))

    def encode(self, text, pair=None, add_special_tokens=True):
        if not add_special_tokens:
            raise EftError("EFT_ERR_UNSUPPORTED", "add_special_tokens=False needs eft_encode_params from Python")
        b = text.encode("utf-8")
        pb = pair.encode("utf-8") if pair is not None else None
        enc = _vp()
        _check(_tok_encode(self._h, b, len(b), pb, len(pb) if pb is not None else 0, None, C.byref(enc)))
        try:
            n = _enc_len(enc)
            ids = _enc_ids(enc)
            return [ids[i] for i in range(n)]
        finally:
            _enc_free(enc)

    def decode(self, ids, skip_special_tokens=False):
        arr = (C.c_int32 * len(ids))(*ids)
        out, n = C.c_void_p(), C.c_size_t()
        _check(_tok_decode(self._h, arr, len(ids), skip_special_tokens, C.byref(out), C.byref(n)))
        try:
            return C.string_at(out, n.value).decode("utf-8")
        finally:
            _eft_free(out)


# ------------------------------------------------------------------------------------------
# Encoders
# ------------------------------------------------------------------------------------------

class AutoModel:
    """Sentence embeddings (and cross-encoder scores) from an encoder model, QEfficient's
    QEFFAutoModel: from_pretrained, then compile, then generate / embed."""

    def __init__(self, model, pooling=None, normalize=None):
        if pooling is not None and not isinstance(pooling, str) and not callable(pooling):
            raise EftError("EFT_ERR_INVALID_ARGUMENT", "pooling must be a mode name, a callable or None")
        self.model = os.fspath(model)
        self.pooling = pooling
        self.normalize = normalize
        self._h = None
        self.seq_len = None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, pooling=None, normalize=None, **kwargs):
        """pooling: None for the folder's 1_Pooling config (mean without one); a mode name ("mean",
        "avg", "cls", "max", "lasttoken", "mean_sqrt_len_tokens", "weightedmean", or several joined
        by commas); or, as in QEfficient, a callable f(last_hidden_states [T, C], attention_mask [T])
        returning one vector, applied to each input's token embeddings. The model is opened and
        checked at compile(); a Hugging Face id must already be in the local cache."""
        return cls(pretrained_model_name_or_path, pooling=pooling, normalize=normalize)

    def compile(self, num_cores=1, seq_len=None, batch_size=1, weight_dtype=None, **kwargs):
        """Builds the model for num_cores threads, batch_size inputs per pass and at most max(seq_len)
        tokens per input, with weights in weight_dtype: None or "f32", "f16", "bf16", "int8" (Q8_0
        blocks), "int4" (Q4_0), or a group-quantised layout ("int4-g128", "int4-g32-asym",
        "int8-channel", ...: eft compile --help). Returns self."""
        if weight_dtype not in _WEIGHT_DTYPES or weight_dtype == "keep":
            raise EftError("EFT_ERR_INVALID_ARGUMENT", "weight_dtype %r: want one of f32, f16, bf16, int8, int4" % (weight_dtype,))
        lens = [seq_len] if isinstance(seq_len, int) else list(seq_len or [])
        if any((not isinstance(x, int)) or x < 1 for x in lens):
            raise EftError("EFT_ERR_INVALID_ARGUMENT", "seq_len must be a positive int or a list of them, got %r" % (seq_len,))
        p = _emb_defaults()
        p.n_threads = int(num_cores)
        p.max_batch = max(1, int(batch_size))
        lens_arr = (C.c_int * len(lens))(*sorted(set(lens))) if lens else None
        p.seq_lens = lens_arr
        p.n_seq_lens = len(set(lens))
        p.dtype = _DTYPES["F32"] if weight_dtype is None else _WEIGHT_DTYPES[weight_dtype]
        if isinstance(self.pooling, str):
            p.pooling = self.pooling.encode()
        if self.normalize:
            p.normalize = True
        h = _vp()
        _check(_emb_open(os.fsencode(self.model), C.byref(p), C.byref(h)))
        self.close()
        self._h, self.seq_len = h, sorted(set(lens))
        return self

    def close(self):
        if self._h:
            _emb_close(self._h)
            self._h = None

    def __del__(self):
        self.close()

    def _ensure(self):
        if not self._h:
            self.compile()

    @property
    def dim(self):
        self._ensure()
        return int(_emb_dim(self._h))

    @property
    def max_tokens(self):
        self._ensure()
        return int(_emb_max_tokens(self._h))

    def embed(self, texts, prompt_name=None, normalize=None, dimensions=None, truncate=None):
        """Embeddings of a text or a list of texts: an [n, D] float32 array (a list of lists without
        numpy). truncate: None/False (over-long input is an error), "right" or "left"."""
        self._ensure()
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        n = len(items)
        if n == 0:
            return _as_matrix([], 0, self.dim)
        if callable(self.pooling):
            return self._embed_callable(items, single, prompt_name, normalize, dimensions, truncate)
        enc = [t.encode("utf-8") for t in items]
        arr = (C.c_char_p * n)(*enc)
        if normalize is None and dimensions is None and truncate is None:
            d = self.dim
            out = (C.c_float * (n * d))()
            _check(_emb_embed_prompt(self._h, prompt_name.encode() if prompt_name else None, arr, n, out),
                   lambda: _emb_errmsg(self._h))
        else:
            _require(_emb_run, "eft_embedder_run")
            d = int(dimensions) if dimensions else self.dim
            req = _EmbedRequest(texts=arr, n=n, prompt_name=prompt_name.encode() if prompt_name else None,
                                normalize=-1 if normalize is None else int(bool(normalize)),
                                truncate=_TRUNCATE[truncate], dimensions=int(dimensions or 0))
            out = (C.c_float * (n * d))()
            _check(_emb_run(self._h, C.byref(req), out), lambda: _emb_errmsg(self._h))
        m = _as_matrix(out, n, d)
        return m[0] if single else m

    def token_embeddings(self, text=None, ids=None, truncate=None):
        """The last hidden states of one input, [T, C] (no pooling): a text, or token ids as given."""
        self._ensure()
        _require(_emb_run_tokens, "eft_embedder_run_tokens")
        req = _EmbedRequest(n=1, normalize=-1, truncate=_TRUNCATE[truncate])
        if ids is not None:
            arr = (C.c_int32 * len(ids))(*[int(t) for t in ids])
            ptrs = (C.POINTER(C.c_int32) * 1)(C.cast(arr, C.POINTER(C.c_int32)))
            lens = (C.c_size_t * 1)(len(ids))
            req.ids, req.n_ids = ptrs, lens
        else:
            texts = (C.c_char_p * 1)(text.encode("utf-8"))
            req.texts = texts
        c = int(_emb_hidden(self._h))
        out = (C.c_float * (self.max_tokens * c))()
        t = C.c_size_t()
        _check(_emb_run_tokens(self._h, C.byref(req), out, C.byref(t)), lambda: _emb_errmsg(self._h))
        return _as_matrix(out, t.value, c)

    def _embed_callable(self, items, single, prompt_name, normalize, dimensions, truncate):
        if prompt_name:
            raise EftError("EFT_ERR_UNSUPPORTED", "prompt_name with a callable pooling")
        rows = []
        for text in items:
            h = self.token_embeddings(text, truncate=truncate)
            mask = [1] * len(h)
            try:
                import numpy as np
                mask = np.ones(len(h), dtype=np.float32)
            except ImportError:
                pass
            v = [float(x) for x in self.pooling(h, mask)]
            if dimensions:
                v = v[:int(dimensions)]
            if normalize:
                norm = sum(x * x for x in v) ** 0.5
                v = [x / max(norm, 1e-12) for x in v]
            rows.append(v)
        m = _as_matrix([x for r in rows for x in r], len(rows), len(rows[0]) if rows else 0)
        return m[0] if single else m

    def generate(self, inputs, **kwargs):
        """QEfficient's QEFFAutoModel.generate: inputs are tokenizer output (a dict with input_ids
        and attention_mask, as numpy/torch/lists) or texts; returns {"output": [n, D]}."""
        self._ensure()
        if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str)):
            return {"output": self.embed(inputs)}
        _require(_emb_run, "eft_embedder_run")
        rows = _to_id_lists(inputs)
        n, d = len(rows), self.dim
        arrays = [(C.c_int32 * len(r))(*r) for r in rows]
        ptrs = (C.POINTER(C.c_int32) * n)(*[C.cast(a, C.POINTER(C.c_int32)) for a in arrays])
        lens = (C.c_size_t * n)(*[len(r) for r in rows])
        req = _EmbedRequest(ids=ptrs, n_ids=lens, n=n, normalize=-1)
        out = (C.c_float * (n * d))()
        _check(_emb_run(self._h, C.byref(req), out), lambda: _emb_errmsg(self._h))
        return {"output": _as_matrix(out, n, d)}

    def score(self, query, texts, truncate=None):
        """Cross-encoder scores (raw logits) of (query, text) pairs: a list of floats for one-label
        rerankers, else a list of lists."""
        self._ensure()
        _require(_emb_score, "eft_embedder_score")
        labels = int(_emb_num_labels(self._h))
        if labels == 0:
            raise EftError("EFT_ERR_UNSUPPORTED", "%s has no classification head" % self.model)
        n = len(texts)
        arr = (C.c_char_p * n)(*[t.encode("utf-8") for t in texts])
        out = (C.c_float * (n * labels))()
        _check(_emb_score(self._h, query.encode("utf-8"), arr, n, _TRUNCATE[truncate], out, None),
               lambda: _emb_errmsg(self._h))
        rows = [list(out[i * labels:(i + 1) * labels]) for i in range(n)]
        return [r[0] for r in rows] if labels == 1 else rows

    @property
    def tokenizer(self):
        return Tokenizer(self.model)


# ------------------------------------------------------------------------------------------
# Causal LMs
# ------------------------------------------------------------------------------------------

class GenerationResult:
    """What generate returns: texts and ids per prompt, finish reasons, and QEfficient's metrics."""

    def __init__(self, texts, ids, finish, exec_info):
        self.generated_texts = texts
        self.generated_ids = ids
        self.finish_reasons = finish
        self.exec_info = exec_info

    def __repr__(self):
        return "GenerationResult(generated_texts=%r, exec_info=%r)" % (self.generated_texts, self.exec_info)


_FINISH = {0: None, 1: "stop", 2: "length", 3: "cancelled", 4: "error"}


class AutoModelForCausalLM:
    """Text generation, QEfficient's QEFFAutoModelForCausalLM: from_pretrained, compile(prefill_seq_len,
    ctx_len, full_batch_size, num_cores, ...), generate(prompts=...). With full_batch_size > 1 the
    prompts share the KV-cache slots through continuous batching."""

    def __init__(self, model, continuous_batching=False):
        self.model = os.fspath(model)
        self.continuous_batching = continuous_batching
        self._h = None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, continuous_batching=False, **kwargs):
        return cls(pretrained_model_name_or_path, continuous_batching=continuous_batching)

    def compile(self, prefill_seq_len=32, ctx_len=128, batch_size=1, full_batch_size=None, num_cores=1,
                weight_dtype=None, kv_dtype=None, mxint8_kv_cache=False, mxfp6_matmul=False, cache_dir=None,
                no_cache=False, act_dtype=None, **kwargs):
        """weight_dtype: None (as stored), "f32", "f16", "bf16", "int8", "int4"; act_dtype: None or
        "f32" (exact, the default) or "int8" (quantised GGUF matrices take int8 activations, as
        llama.cpp does: faster, not token-for-token transformers); mxfp6_matmul=True
        means f16 weights, mxint8_kv_cache=True an int8 KV cache (QEfficient's names). The converted
        weights are kept as a compiled program in the cache (cache_dir, else $EFT_CACHE_DIR, else
        ~/.cache/eft; no_cache=True: neither read nor written; at most $EFT_CACHE_MAX bytes, default
        20G, least recently used removed first), so the next compile of the same model and weight
        type only maps them. The model may also be a program `eft compile` wrote."""
        _require(_gen_open, "eft_generator_open")
        if mxfp6_matmul and weight_dtype is None:
            weight_dtype = "f16"
        if mxint8_kv_cache and kv_dtype is None:
            kv_dtype = "int8"
        if weight_dtype not in _WEIGHT_DTYPES:
            raise EftError("EFT_ERR_INVALID_ARGUMENT", "weight_dtype %r: want one of f32, f16, bf16, int8, int4" % weight_dtype)
        if kv_dtype not in _KV_DTYPES:
            raise EftError("EFT_ERR_INVALID_ARGUMENT", "kv_dtype %r: want one of f32, f16, int8" % kv_dtype)
        if act_dtype not in (None, "f32", "int8"):
            raise EftError("EFT_ERR_INVALID_ARGUMENT", "act_dtype %r: want f32 or int8" % (act_dtype,))
        p = _gen_defaults()
        p.n_threads = int(num_cores)
        p.ctx_len = int(ctx_len)
        p.prefill_seq_len = int(prefill_seq_len)
        p.full_batch_size = int(full_batch_size or batch_size or 1)
        p.weight_dtype = _WEIGHT_DTYPES[weight_dtype]
        p.kv_dtype = _KV_DTYPES[kv_dtype]
        if act_dtype == "int8":
            p.activation_dtype = _DTYPES["I8"]
        cache_bytes = os.fsencode(cache_dir) if cache_dir is not None else None
        p.cache_dir = cache_bytes
        p.no_cache = bool(no_cache)
        h = _vp()
        _check(_gen_open(os.fsencode(self.model), C.byref(p), C.byref(h)))
        self.close()
        self._h = h
        return self

    def close(self):
        if self._h:
            _gen_close(self._h)
            self._h = None

    def __del__(self):
        self.close()

    @property
    def tokenizer(self):
        if not self._h:
            self.compile()
        return Tokenizer(None, _borrowed=_gen_tokenizer(self._h), _owner=self)

    def apply_chat_template(self, messages, add_generation_prompt=True):
        if not self._h:
            self.compile()
        t = _gen_template(self._h)
        if not t:
            raise EftError("EFT_ERR_NOT_FOUND", "%s has no chat template" % self.model)
        out, n = C.c_void_p(), C.c_size_t()
        _check(_tmpl_render(t, json.dumps(messages).encode(), json.dumps({"add_generation_prompt": add_generation_prompt}).encode(),
                            C.byref(out), C.byref(n)), lambda: _tmpl_errmsg(t))
        try:
            return C.string_at(out, n.value).decode("utf-8")
        finally:
            _eft_free(out)

    def generate(self, tokenizer=None, prompts=None, generation_len=None, stream=None, temperature=0.0,
                 top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0, seed=0, stop=None, ignore_eos=False, **kwargs):
        """Generates for each prompt (a string, or a list of token ids). tokenizer is accepted for
        QEfficient compatibility and not used: eft tokenizes with the model's own tokenizer.
        stream: a callable receiving (prompt_index, text_piece) as text is produced."""
        if not self._h:
            self.compile()
        if prompts is None:
            raise EftError("EFT_ERR_INVALID_ARGUMENT", "prompts is required")
        if isinstance(prompts, str):
            prompts = [prompts]
        tok = self.tokenizer
        id_lists = [tok.encode(p) if isinstance(p, str) else [int(t) for t in p] for p in prompts]
        n = len(id_lists)
        texts = [[] for _ in range(n)]
        ids = [[] for _ in range(n)]
        finish = [None] * n
        first_at = [None] * n
        seq_to_index = {}

        def on_event(evp):
            ev = evp.contents
            i = seq_to_index.get(ev.seq)
            if i is None:
                return 0
            if ev.token >= 0:
                ids[i].append(ev.token)
                if first_at[i] is None:
                    first_at[i] = time.perf_counter()
            if ev.text_len:
                piece = C.string_at(ev.text, ev.text_len).decode("utf-8", "replace")
                texts[i].append(piece)
                if stream:
                    stream(i, piece)
            if ev.finish:
                finish[i] = _FINISH.get(ev.finish, "error")
            return 0

        cb = _GenCallback(on_event)
        gp = _gen_gp_default(self._h)
        if generation_len is not None:
            gp.max_tokens = int(generation_len)
        gp.sampling = _SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                      repetition_penalty=repetition_penalty, presence_penalty=0.0,
                                      frequency_penalty=0.0, seed=seed)
        stops = [s.encode("utf-8") for s in ([stop] if isinstance(stop, str) else (stop or []))]
        stop_arr = (C.c_char_p * len(stops))(*stops) if stops else None
        gp.stop = stop_arr
        gp.n_stop = len(stops)
        gp.ignore_eos = bool(ignore_eos)
        gp.callback = cb
        t0 = time.perf_counter()
        for i, p in enumerate(id_lists):
            arr = (C.c_int32 * len(p))(*p)
            seq = C.c_uint64()
            _check(_gen_submit(self._h, arr, len(p), C.byref(gp), C.byref(seq)), lambda: _gen_errmsg(self._h))
            seq_to_index[seq.value] = i
        while _gen_pending(self._h) > 0:
            _check(_gen_step(self._h), lambda: _gen_errmsg(self._h))
        total = time.perf_counter() - t0
        generated = sum(len(x) for x in ids)
        prompt_tokens = sum(len(x) for x in id_lists)
        ttft = min((f for f in first_at if f is not None), default=t0 + total) - t0
        decode_time = max(total - ttft, 1e-9)
        exec_info = {
            "prompt_tokens": prompt_tokens,
            "generated_tokens": generated,
            "prefill_time": ttft,                      # QEfficient's "TTFT"
            "decode_tokens_per_sec": max(generated - n, 0) / decode_time,
            "total_tokens_per_sec": generated / max(total, 1e-9),
            "e2e_time": total,
        }
        return GenerationResult(["".join(t) for t in texts], ids, finish, exec_info)


QEFFAutoModel = AutoModel
QEFFAutoModelForCausalLM = AutoModelForCausalLM
