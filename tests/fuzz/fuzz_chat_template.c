/*
 * fuzz_chat_template.c — fuzzes the chat-template parser and evaluator. The input is a template,
 * optionally followed by "\n#MESSAGES#\n" and a JSON messages document; it is loaded and, when it
 * loads, rendered with small limits (so that loops and recursion end quickly) over those messages
 * or a fixed conversation with tools. Any outcome but a crash, a leak or undefined behaviour is
 * fine: load errors and render errors are expected.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/chat_template.h"

static const char k_sep[] = "\n#MESSAGES#\n";

static const char k_default_messages[] =
    "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi \\u00e9\"},"
    "{\"role\":\"assistant\",\"content\":\"<think>x</think>Yo\",\"tool_calls\":[{\"type\":\"function\","
    "\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]},{\"role\":\"tool\",\"content\":\"42\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"t\"},{\"type\":\"image\"}]}]";

static const char k_options[] =
    "{\"add_generation_prompt\":true,\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"tools\":[{\"type\":"
    "\"function\",\"function\":{\"name\":\"f\",\"description\":\"d\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"a\":{\"type\":\"number\"}}}}}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *src = (const char *)data;
    size_t src_len = size;
    char *messages = NULL;
    for (size_t i = 0; i + sizeof k_sep - 1 <= size; i++) {
        if (!memcmp(data + i, k_sep, sizeof k_sep - 1)) {
            src_len = i;
            size_t mlen = size - i - (sizeof k_sep - 1);
            messages = malloc(mlen + 1);
            if (!messages) return 0;
            memcpy(messages, data + i + sizeof k_sep - 1, mlen);
            messages[mlen] = 0;
            break;
        }
    }
    eft_chat_template *t = NULL;
    if (eft_chat_template_open(src, src_len, &t) == EFT_OK) {
        eft__ct_limits lim = {.max_output = 1 << 16, .max_memory = 16 << 20, .max_steps = 20000, .max_depth = 16};
        eft__chat_template_set_limits(t, &lim);
        struct tm now = {.tm_year = 126, .tm_mon = 6, .tm_mday = 26};
        eft__chat_template_set_now(t, &now);
        char *out = NULL;
        size_t len = 0;
        if (eft_chat_template_render(t, messages ? messages : k_default_messages, k_options, &out, &len) == EFT_OK) {
            /* The output is a NUL-terminated string of len bytes. */
            if (out[len] != 0) abort();
        } else if (out != NULL) {
            abort();
        }
        eft_free(out);
        eft_chat_template_close(t);
    } else if (t != NULL) {
        abort();
    }
    free(messages);
    return 0;
}
