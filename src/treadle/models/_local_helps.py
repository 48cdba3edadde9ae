"""Helps for tiny local models: routing, grounded arguments, a grounded answer, context fitting.

Everything here shapes the *request* (which reply branches the grammar allows, what the
strings may contain, which messages are sent); nothing parses the model's reply.

* ``route_tools``: which tools a question is about, from its words (or none: answer directly).
* ``ground_branch``: the routed tool's arguments may only hold what the question holds
  (the file names it mentions; an arithmetic expression over its numbers), as a JSON-schema
  ``enum`` / ``pattern`` that llama.cpp turns into grammar.
* ``fit_messages``: trims long messages and old steps so a request fits a small context.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ..types import FINISH_TOOL, OBSERVATION_PREFIX
from ._answers import stem_words
from ._grounding import fit, ground_params
from ._tables import RELATED

__all__ = ["GROUND_KEY", "arithmetic_pattern", "estimate_tokens", "fit_messages", "forced_value", "ground_branch",
           "question_numbers", "route_tools"]

GROUND_KEY = "x-treadle-ground"  # on a parameter's schema: "arithmetic" | "filename" | "none"

_STOP = {"the", "and", "what", "is", "are", "was", "this", "that", "with", "for", "from", "tell", "please", "give",
         "how", "much", "many", "can", "you", "your", "about", "into", "does", "say", "use", "using", "me", "it",
         "of", "to", "in", "an", "a", "such", "as", "or", "be", "at", "on", "by", "its", "now", "there", "most",
         "under", "name", "example", "examples", "like", "than", "then", "which", "who", "why", "when", "where",
         "value", "return", "returns", "given", "one", "two", "get", "show", "find"}
_ARITH_SYM = re.compile(r"\d\s*(?:\*\*|[-+*/%^x\u00d7\u00f7])\s*[\d(]|\(\s*\d")
_ARITH_WORDS = re.compile(r"\b(plus|minus|times|multiplied|multiply|divided|divide|sum|product|add|subtract|"
                          r"squared|square|cubed|percent|half|double|twice|triple|calculate|compute|remainder|"
                          r"modulo|power)\b", re.I)
_FILE_RE = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.[A-Za-z][A-Za-z0-9]{0,4})(?![\w/-])")
_TIME_RE = re.compile(r"\b(time|date|today|clock|weekday|tonight|current (?:year|month|day|hour)|"
                      r"(?:what|which) (?:year|month|day|hour)|day (?:is it|of the week)|year is it)\b", re.I)

_UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                     "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_NUMBER_ALT = "|".join([*_UNITS, *_TENS, *_SCALES])
_NUMBER_WORD = re.compile(rf"\b(?:{_NUMBER_ALT})(?:[\s-]+(?:{_NUMBER_ALT}|and))*\b", re.I)
_HINT_CONSTANTS = {"square": "2", "squared": "2", "half": "2", "double": "2", "twice": "2", "cubed": "3",
                   "triple": "3", "percent": "100"}


_PERCENT_OF = re.compile(r"(\d)\s*%\s+of\b", re.I)


def _words(text: str) -> set[str]:
    return stem_words(" ".join(w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in _STOP))


def _question_words(question: str) -> set[str]:
    """The question's words and the topic words ``_tables.RELATED`` gives them."""
    words = _words(question)
    for w in re.findall(r"[a-z]+", question.lower()):
        words |= stem_words(" ".join(RELATED.get(w, ())))
    return words


def _branch_name(branch: dict[str, Any]) -> str | None:
    name = branch.get("properties", {}).get("name", {})
    if isinstance(name, dict) and "const" in name:
        return str(name["const"])
    if branch.get("properties", {}).get("_is_answer_final"):
        return FINISH_TOOL
    return None


def _params(branch: dict[str, Any]) -> dict[str, Any]:
    props = branch.get("properties", {}).get("kwargs", {}).get("properties", {})
    return props if isinstance(props, dict) else {}


def _ground_kind(pname: str, prop: dict[str, Any]) -> str | None:
    """How a parameter is grounded in the question: declared (``x-treadle-ground``), else
    guessed from its name and description."""
    kind = prop.get(GROUND_KEY)
    if kind:
        return None if kind == "none" else str(kind)
    if prop.get("type") != "string" or "enum" in prop or "const" in prop:
        return None
    text = f"{pname} {prop.get('description', '')}".lower()
    if re.search(r"\b(path|file|filename)\b", text) or pname.lower() in ("path", "file", "filename", "file_path"):
        return "filename"
    if re.search(r"\b(arithmetic|expression|math)\b", text):
        return "arithmetic"
    return None


def _tool_words(branch: dict[str, Any]) -> set[str]:
    parts = [(_branch_name(branch) or "").replace("_", " "), str(branch.get("description", ""))]
    for pname, prop in _params(branch).items():
        parts.append(pname.replace("_", " "))
        parts.append(str(prop.get("description", "")))
    return _words(" ".join(parts))


def _signals(question: str, branches: list[dict[str, Any]]) -> dict[int, int]:
    """Extra score per branch index from what the question looks like (arithmetic, a file
    name, a time question) and the kind of grounding the branch's parameters have."""
    kinds = [{_ground_kind(n, p) for n, p in _params(b).items()} for b in branches]
    arith = bool(_ARITH_SYM.search(question)) or (
        bool(_ARITH_WORDS.search(question)) and len(question_numbers(question)) >= 1)
    has_file = bool(_FILE_RE.search(question))
    out: dict[int, int] = {}
    for i, (b, k) in enumerate(zip(branches, kinds)):
        words = _tool_words(b)
        s = 0
        if arith and ("arithmetic" in k or words & {"arithmetic", "calculator", "calculate", "math"}):
            s += 3
        if has_file and ("filename" in k or words & {"file", "path"}):
            s += 4  # "what year is in year.txt" is about the file
        if _TIME_RE.search(question) and words & {"time", "date", "clock"}:
            # "today" alone ("do I need a coat today?") is a weaker sign than "what time", "date"
            s += 3 if _TIME_RE.search(re.sub(r"\btoday\b", "", question, flags=re.I)) else 1
        required = b.get("properties", {}).get("kwargs", {}).get("required", [])
        for pname in required:  # a required argument the question gives nothing for: not this tool
            g = _ground_kind(pname, _params(b).get(pname, {}))
            if (g == "filename" and not has_file) or (g == "arithmetic" and not question_numbers(question)):
                s = -100
        out[i] = s
    return out


def route_tools(question: str, branches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tool branches that best match the question, or ``[]`` when none does (the
    question needs no tool: it gets a direct answer).

    A lexical help for models too small to choose a tool themselves. The question's words
    are matched against each tool's name, description and parameter names/descriptions,
    counting only words that single a tool out (a word every matched tool shares says
    nothing). Arithmetic in the question (digits with an operator, or numbers with words
    such as "plus" or "times"), a file name, or a time question ("what time", "today's
    date") add to the tools that take an expression, a path, or tell the time.
    """
    if not branches:
        return []
    question = _PERCENT_OF.sub(r"\1 percent of", question)
    q = _question_words(question)
    tool_words = [_tool_words(b) for b in branches]
    counts: dict[str, int] = {}
    for ws in tool_words:
        for w in ws:
            counts[w] = counts.get(w, 0) + 1
    signals = _signals(question, branches)
    scores = []
    for i, ws in enumerate(tool_words):
        distinctive = {w for w in ws if counts[w] == 1 or len(branches) == 1}
        score = len(q & distinctive) + signals.get(i, 0)
        grounded = fit(branches[i], question, _grounded_elsewhere(branches[i]), strong=score <= 0)
        scores.append(score + grounded)
    best = max(scores)
    if best <= 0:
        return []
    return [b for b, s in zip(branches, scores) if s == best]


def _number_word_value(text: str) -> int | None:
    total, current = 0, 0
    for w in re.findall(r"[a-z]+", text.lower()):
        if w == "and":
            continue
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        elif w in _SCALES:
            total += max(current, 1) * _SCALES[w]
            current = 0
        else:
            return None
    return total + current


def question_numbers(question: str) -> list[str]:
    """The numbers a question holds, as digits: "17", "3.5", "seventeen" -> "17",
    "twenty-five" -> "25", and small constants implied by words ("squared" -> "2")."""
    found: list[str] = []
    for m in re.finditer(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])|(?<=[^\w.])\.\d+", question.replace(",", " ")):
        found.append(m.group(0))
    for m in _NUMBER_WORD.finditer(question):
        v = _number_word_value(m.group(0))
        if v is not None:
            found.append(str(v))
    for w in re.findall(r"[a-z]+", question.lower()):
        if w in _HINT_CONSTANTS:
            found.append(_HINT_CONSTANTS[w])
    out: list[str] = []
    for n in found:
        if n not in out:
            out.append(n)
    return out


def arithmetic_pattern(numbers: list[str], operands: int = 2, first_step: list[str] | None = None,
                       ops: list[str] | None = None) -> str:
    """An anchored regex for expressions over these numbers only, with ``operands``
    operands (as many as the question writes, so a two-step question is not cut to its
    first step nor padded: "5 squared" is two), optional parentheses and single spaces.
    ``ops``: the operators the question names, in order ("multiply ..., then add" ->
    ``["*", "+"]``); only those are allowed. ``first_step``: the expression starts with the
    step over these two numbers in parentheses, "(a op1 b) op2 c" ("multiply 6 by 7, then
    add 10"; "(3 + 4) * 5"), which the tiny model otherwise writes as "6 + 10 * 7"."""
    def alt(ns: list[str]) -> str:
        return "|".join(re.escape(n) for n in sorted(set(ns), key=len, reverse=True))

    def op_re(chosen: list[str] | None) -> str:
        if not chosen:
            return r" ?(?:\*\*|//|[-+*/%]) ?"
        return " ?(?:" + "|".join(re.escape(o) for o in sorted(set(chosen), key=len, reverse=True)) + ") ?"

    operand = rf"\(*(?:{alt(numbers)})\)*"
    op = op_re(ops)
    more = max(operands, 2) - 1
    if first_step and more >= 2:
        pair = rf"(?:{alt(first_step)})"
        first_op = op_re(ops[:1]) if ops and len(ops) >= 2 else op
        rest_op = op_re(ops[1:]) if ops and len(ops) >= 2 else op
        return rf"^\({pair}{first_op}{pair}\)(?:{rest_op}{operand}){{{more - 1}}}$"
    return rf"^{operand}(?:{op}{operand}){{{more}}}$"


_OP_WORDS = [(re.compile(p, re.I), o) for p, o in (
    (r"\b(?:plus|add|added|sum|increase[sd]?)\b|\+", "+"),
    (r"\b(?:minus|subtract(?:ed)?|difference|less)\b|(?<=\d )-(?= ?\d)|(?<=\d)-(?=\d)", "-"),
    (r"\b(?:times|multipl(?:y|ied)|product|double|twice|triple)\b|(?<![*])\*(?![*])|\bx\b|\u00d7", "*"),
    (r"\b(?:divided|divide|over|half|quotient)\b|(?<!/)/(?!/)|\u00f7", "/"),
    (r"\b(?:squared|cubed|square|power)\b|\*\*", "**"), (r"\b(?:percent|remainder|modulo|mod)\b|%", "%"))]


def _ordered_ops(question: str) -> list[str]:
    """The operators a question names, in order of mention."""
    found = [(m.start(), o) for rx, o in _OP_WORDS for m in rx.finditer(question)]
    if any(o == "%" for _, o in found) and re.search(r"\bpercent\b", question, re.I):
        found += [(found[-1][0], "*"), (found[-1][0], "/")]  # "20 percent of 50" is 20 * 50 / 100
    return [o for _, o in sorted(found)]


def _ordered_numbers(question: str) -> list[str]:
    """The numbers as the question writes them, in order, repeats kept."""
    found: list[tuple[int, str]] = []
    text = question.replace(",", " ")
    for m in re.finditer(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])", text):
        found.append((m.start(), m.group(0)))
    for m in _NUMBER_WORD.finditer(question):
        v = _number_word_value(m.group(0))
        if v is not None:
            found.append((m.start(), str(v)))
    return [n for _, n in sorted(found)]


_N = r"(\d+(?:\.\d+)?)"
# everyday arithmetic idioms the tiny model gets wrong ("20% of 50" -> "20% 50 * 100"), as one expression
_IDIOMS = [(re.compile(p, re.I), t) for p, t in (
    (rf"{_N}\s*(?:percent|%)\s+of\s+{_N}", "{0} * {1} / 100"), (rf"square root of\s+{_N}", "{0} ** 0.5"),
    (rf"{_N}\s+squared", "{0} ** 2"), (rf"{_N}\s+cubed", "{0} ** 3"), (rf"\bhalf of\s+{_N}", "{0} / 2"),
    (rf"\b(?:double|twice)\s+{_N}", "{0} * 2"), (rf"{_N}\s+to the power of\s+{_N}", "{0} ** {1}"))]


def idiom_expression(question: str) -> str | None:
    """The expression of a question that is one arithmetic idiom over all its numbers
    ("What is 15% of 200?" -> "15 * 200 / 100", "the square root of 81" -> "81 ** 0.5")."""
    ordered = _ordered_numbers(question)
    for rx, template in _IDIOMS:
        m = rx.search(question)
        if m and len(m.groups()) == len(ordered):
            return template.format(*m.groups())
    return None


_STEPWISE = re.compile(r"\bthen\b|\bafter that\b|\bthe (?:sum|result|product|difference)\b|^\D*\(\s*\d", re.I)


def _grounded_elsewhere(branch: dict[str, Any]) -> set[str]:
    """Parameters grounded by ``ground_branch`` itself (file names, expressions)."""
    return {p for p, prop in _params(branch).items() if _ground_kind(p, prop)}


def ground_branch(branch: dict[str, Any], question: str) -> dict[str, Any]:
    """A copy of a tool branch whose grounded string arguments may only hold what the
    question holds: one of the file names it mentions, or an expression over its numbers.
    Arguments the question gives nothing for are left as they are."""
    params = _params(branch)
    question = _PERCENT_OF.sub(r"\1 percent of", question)  # "15% of 200" is 15 * 200 / 100
    changes: dict[str, dict[str, Any]] = {}
    for pname, prop in params.items():
        kind = _ground_kind(pname, prop)
        if kind == "filename":
            names = list(dict.fromkeys(m.group(1) for m in _FILE_RE.finditer(question)))
            if names:
                changes[pname] = {k: v for k, v in prop.items() if k not in ("maxLength", "pattern", "examples")}
                changes[pname]["enum"] = names
        elif kind == "arithmetic":
            numbers = question_numbers(question)
            if numbers:
                changes[pname] = {k: v for k, v in prop.items() if k not in ("pattern", "examples")}
                ordered = _ordered_numbers(question)
                hints = len(numbers) - len(set(ordered))  # "squared" -> 2, ...
                stepwise = ordered[:2] if _STEPWISE.search(question) and len(ordered) >= 3 else None
                ops = _ordered_ops(question) or None
                changes[pname]["pattern"] = arithmetic_pattern(numbers, len(ordered) + max(hints, 0), stepwise, ops)
                idiom = idiom_expression(question)
                if idiom:
                    changes[pname] = {k: v for k, v in changes[pname].items() if k not in ("pattern", "maxLength")}
                    changes[pname]["enum"] = [idiom]
    branch = ground_params(branch, question, _grounded_elsewhere(branch))  # any other kind of parameter
    if not changes:
        return branch
    out = copy.deepcopy(branch)
    out["properties"]["kwargs"]["properties"].update(changes)
    return out


_NO_VALUE = object()


def forced_value(schema: Any) -> Any:
    """The one JSON value a schema admits, or ``_NO_VALUE`` when it admits more (or it
    cannot tell): a single-branch ``anyOf``, ``const``, a one-value ``enum``, and closed
    objects whose every property is required and forced."""
    if not isinstance(schema, dict):
        return _NO_VALUE
    if "anyOf" in schema:
        branches = schema["anyOf"]
        return forced_value(branches[0]) if isinstance(branches, list) and len(branches) == 1 else _NO_VALUE
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and len(schema["enum"]) == 1:
        return schema["enum"][0]
    if schema.get("type") == "object" and schema.get("additionalProperties") is False:
        props = schema.get("properties") or {}
        if set(schema.get("required") or ()) != set(props):
            return _NO_VALUE
        out = {}
        for k, sub in props.items():
            v = forced_value(sub)
            if v is _NO_VALUE:
                return _NO_VALUE
            out[k] = v
        return out
    return _NO_VALUE


# ------------------------------------------------------------------ context fitting
def estimate_tokens(text: str) -> int:
    """A cautious token estimate (no tokenizer round trip): English runs ~4 characters a
    token, JSON and digits fewer; 3 keeps a margin."""
    return len(text) // 3 + 1


def _cut(text: str, chars: int) -> str:
    if len(text) <= chars:
        return text
    keep = max(chars - 40, 20)
    head, tail = keep * 2 // 3, keep // 3
    return f"{text[:head]}… [{len(text) - head - tail} characters cut] …{text[len(text) - tail:]}"


def _cut_history(system: str, chars: int) -> str:
    """Shorten the system prompt's <CHAT_HISTORY> (keeping its newest part), else the prompt."""
    start, end = system.find("<CHAT_HISTORY>"), system.rfind("</CHAT_HISTORY>")
    if start >= 0 and end > start:
        body = system[start + len("<CHAT_HISTORY>"):end]
        over = len(system) - chars
        if over > 0:
            keep = max(len(body) - over - 40, 0)
            body = "\n[earlier conversation omitted]\n" + body[len(body) - keep:] if keep else "\n"
            return system[:start + len("<CHAT_HISTORY>")] + body + system[end:]
        return system
    return _cut(system, chars)


def fit_messages(messages: list[dict[str, Any]], budget: int, fixed: int = 1) -> list[dict[str, Any]]:
    """Messages that fit ``budget`` tokens (estimated): long messages cut in the middle,
    old steps dropped (the question and the newest steps are kept), the chat history in
    the system prompt shortened. ``fixed``: leading messages (system prompt, examples)
    kept as they are while anything else can go. The journal keeps everything; only the
    request is shortened."""
    def total(ms: list[dict[str, Any]]) -> int:
        return sum(estimate_tokens(str(m.get("content") or "")) + 6 for m in ms)

    if total(messages) <= budget:
        return messages
    out = [dict(m) for m in messages]
    # 1. no single non-fixed message may take more than a third of the budget
    per_msg = max(budget // 3, 32) * 3
    for m in out[fixed:]:
        m["content"] = _cut(str(m.get("content") or ""), per_msg)
    # 2. drop the oldest steps (assistant action + observation pairs) after the question
    head = out[:fixed + 1]
    steps = out[fixed + 1:]
    note = {"role": "user", "content": OBSERVATION_PREFIX + "[earlier steps omitted to fit the context window]"}
    dropped = False
    while steps and total(head + ([note] if dropped else []) + steps) > budget and len(steps) > 2:
        steps = steps[2:]
        dropped = True
    if dropped:
        # keep the alternation user/assistant: the note is a user turn, so the next must be an assistant one
        while steps and steps[0]["role"] == "user":
            steps = steps[1:]
        out = [*head, {"role": "assistant", "content": "[earlier steps]"}, note, *steps]
    # 3. the examples (fixed messages after the system prompt) go next
    if total(out) > budget and fixed > 1:
        out = out[:1] + out[fixed:]
    # 4. finally the system prompt's chat history, then the prompt itself, then every message
    if total(out) > budget:
        rest = total(out[1:])
        out[0] = {**out[0], "content": _cut_history(str(out[0].get("content") or ""),
                                                      max((budget - rest) * 3, 600))}
    if total(out) > budget:
        share = max(budget // max(len(out), 1), 16) * 3
        out = [{**m, "content": _cut(str(m.get("content") or ""), share)} for m in out]
    return out
