"""Arguments grounded in the question, for any tool (a help for tiny local models).

A question offers spans: quoted text, capitalised names and places, id-like tokens
("C3003", "PK-17"), codes ("USD"), numbers (with their units: "20 US dollars"), e-mail
addresses, and what the tables in ``_tables`` normalise (currency names -> ISO 4217, major
cities -> IANA zones). Each string or number parameter of a tool is matched to the spans
its name, description, examples, ``enum`` and ``pattern`` fit, ranked; the grammar then
allows only the best (``enum``), so the model copies from the question instead of
inventing ("example", "UTC"). When two parameters want the same kind of span (a currency
to convert *from* and one *to*), the direction words around each span decide.

``fit`` scores how well a tool's parameters can be filled from a question (routing uses
it: a required parameter the question gives nothing for makes the tool unlikely).
Nothing here names a tool: only parameter kinds, recognised from words.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from ._tables import CITY_ZONES, CURRENCIES, CURRENCY_SYMBOLS, ISO_CURRENCIES, NOT_NAMES

__all__ = ["Span", "described_examples", "fit", "ground_params", "param_kind", "question_spans"]


@dataclass(frozen=True)
class Span:
    text: str  # the value an argument would take
    kind: str  # quoted | id | code | currency | zone | place | name | number | email | word
    start: int  # where the question writes it
    role: str = ""  # "from" | "to" | "": what the words around it say


_QUESTION_WORDS = {"what", "what's", "whats", "how", "who", "where", "when", "which", "why", "is", "are", "do",
                   "does", "did", "can", "could", "will", "would", "should", "has", "have", "please", "tell", "give",
                   "find", "show", "check", "look", "get", "convert", "change", "exchange", "count", "track", "i",
                   "my", "the", "a", "an", "any", "according", "weather", "hi", "hello", "say", "name", "in", "to",
                   "for", "of", "on", "at", "and", "it", "me", "us", "we", "you", "today", "now", "monday", "tuesday",
                   "wednesday", "thursday", "friday", "saturday", "sunday", "january", "february", "march", "april",
                   "may", "june", "july", "august", "september", "october", "november", "december", "call", "email",
                   "text", "send", "message", "phone", "ring", "search", "fetch", "read", "open", "list", "book",
                   "lookup", "let", "quick", "hey", "ok", "okay", "thanks", "yes", "no"}
_CAP = "[A-Z\u00c0-\u00de][a-z\u00df-\u00ff]+"  # a capitalised word, Latin-1 letters too ("S\u00e3o", "Z\u00fcrich")
_PLACE_BEFORE = re.compile(r"\b(?:in|at|near|around|for|from|to|of)\s+$", re.I)
_TO_BEFORE = re.compile(r"\b(?:to|into|in|as)\s+(?:\w+\s+)?$", re.I)
_FROM_BEFORE = re.compile(r"\b(?:from)\s+(?:\w+\s+)?$", re.I)
_NUM = r"\d+(?:[.,]\d+)*(?:\.\d+)?"

# parameter kinds, recognised from a parameter's name and description (first match wins)
_KINDS: list[tuple[str, re.Pattern[str]]] = [
    ("zone", re.compile(r"\b(time ?zone|timezone|tz|iana)\b", re.I)),
    ("currency", re.compile(r"\b(currency|currencies|iso ?4217)\b", re.I)),
    ("email", re.compile(r"\be-?mail\b", re.I)),
    ("text", re.compile(r"\b(text|passage|sentence|content|message|body|phrase|paragraph|quote|string)\b", re.I)),
    ("id", re.compile(r"(_id\b|\bid\b|\bids\b|identifier|reference|tracking|\bsku\b|\bcode\b|order number|"
                      r"\bnumber\b|\bref\b)", re.I)),
    ("place", re.compile(r"\b(city|town|location|place|country|region|destination|origin|where|airport)\b",
                         re.I)),
    ("name", re.compile(r"\b(name|first|person|who|contact|employee|user|customer|people|someone)\b", re.I)),
]
_SPAN_FIT: dict[str | None, tuple[str, ...]] = {  # parameter kind -> span kinds it takes, best first
    "zone": ("zone",), "currency": ("currency",), "email": ("email",), "text": ("quoted", "rest"),
    "id": ("id", "code", "currency", "number"), "place": ("place", "name"), "name": ("name",),
    None: ("quoted",),  # a string parameter nothing describes takes quoted text only
}


def _words_of(prop: dict[str, Any], pname: str) -> str:
    return f"{pname.replace('_', ' ')} {prop.get('description', '')} {prop.get('title', '')}"


def param_kind(pname: str, prop: dict[str, Any]) -> str | None:
    """What kind of span a parameter takes, from its type, name and description: zone,
    currency, email, text, id, place, name, number; None: cannot tell."""
    t = prop.get("type")
    if t in ("integer", "number"):
        return "number"
    if t != "string":
        return None
    text = _words_of(prop, pname)
    for kind, rx in _KINDS:
        if rx.search(text):
            return kind
    return None


def _role(question: str, start: int, end: int, numbers: list[tuple[int, int]]) -> str:
    before = question[:start]
    after = question[end:end + 12]
    if _FROM_BEFORE.search(before):
        return "from"
    if any(0 <= start - e <= 2 or 0 <= s - end <= 2 for s, e in numbers) or re.match(r"\s?" + _NUM, after):
        return "from"  # "20 US dollars", "$20", "USD 100": the amount is in it
    if _TO_BEFORE.search(before):
        return "to"
    return ""


def _sentence_start(question: str, i: int) -> bool:
    return not question[:i].strip() or question[:i].rstrip()[-1] in ".!?:;-\u2014"


def question_spans(question: str) -> list[Span]:
    """The spans a question offers to a tool's arguments, in order of mention."""
    spans: list[Span] = []
    taken: list[tuple[int, int]] = []

    def add(text: str, kind: str, s: int, e: int, role: str = "") -> None:
        spans.append(Span(text, kind, s, role))
        taken.append((s, e))

    def free(s: int, e: int) -> bool:
        return all(e <= a or s >= b for a, b in taken)

    for m in re.finditer(r"\"([^\"]+)\"|\u201c([^\u201d]+)\u201d|(?<![A-Za-z])'([^']+)'(?![A-Za-z])", question):
        body = next(g for g in m.groups() if g)
        add(body.strip(), "quoted", m.start(), m.end())
    if not any(s.kind == "quoted" for s in spans):  # "... this sentence: I like tea"
        m = re.search(r":\s*(\S[^?]*?)\s*\??$", question)
        if m and len(m.group(1).split()) >= 2:
            add(m.group(1).strip(" .\"'"), "quoted", m.start(1), m.end(1))
    if not spans:  # an order, not a question ("Shout hello"): what follows its verb, for a text parameter
        m = re.match(r"\s*([A-Za-z]+)\s+(\S.*?)[\s.!]*$", question)
        if m and not question.rstrip().endswith("?") and m.group(1).lower() not in _QUESTION_WORDS:
            spans.append(Span(m.group(2), "rest", m.start(2)))  # not taken: names in it still count
    for m in re.finditer(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", question):
        if free(m.start(), m.end()):
            add(m.group(0), "email", m.start(), m.end())
    numbers = [(m.start(), m.end()) for m in re.finditer(rf"(?<![\w.]){_NUM}(?![\w])", question)]
    low = "".join(unicodedata.normalize("NFD", c)[0] for c in question.lower())  # "são" -> "sao", same length
    for name in sorted(CURRENCIES, key=len, reverse=True):
        for m in re.finditer(rf"\b{re.escape(name)}\b", low):
            if free(m.start(), m.end()):
                add(CURRENCIES[name], "currency", m.start(), m.end(), _role(question, m.start(), m.end(), numbers))
    for sym, code in CURRENCY_SYMBOLS.items():
        for m in re.finditer(re.escape(sym), question):
            if free(m.start(), m.end()):
                add(code, "currency", m.start(), m.end(), _role(question, m.start(), m.end(), numbers))
    for m in re.finditer(r"\b[A-Z][A-Za-z]*(?:[-_/]?\d+)+[A-Za-z]*\b|\b\d+-\d+[-\d]*\b|#\d+", question):
        if free(m.start(), m.end()):
            add(m.group(0).lstrip("#"), "id", m.start(), m.end())
    for m in re.finditer(r"\b[A-Z]{2,5}\b", question):
        if free(m.start(), m.end()) and m.group(0) not in ("I", "OK"):
            kind = "currency" if m.group(0) in ISO_CURRENCIES else "code"
            add(m.group(0), kind, m.start(), m.end(), _role(question, m.start(), m.end(), numbers))
            if m.group(0) in ("UTC", "GMT"):
                add("UTC", "zone", m.start(), m.end())
    for m in re.finditer(r"\b[A-Z][a-z]+(?:/[A-Z][A-Za-z_]+)+\b", question):  # an IANA zone as written
        if free(m.start(), m.end()):
            add(m.group(0), "zone", m.start(), m.end())
    for city in sorted(CITY_ZONES, key=len, reverse=True):
        for m in re.finditer(rf"\b{re.escape(city)}\b", low):
            if free(m.start(), m.end()):
                add(CITY_ZONES[city], "zone", m.start(), m.end())
                taken.pop()  # the city is also a place
                add(question[m.start():m.end()], "place", m.start(), m.end())
    for m in re.finditer(rf"\b{_CAP}(?:['\u2019]s)?(?:\s+(?:{_CAP}|de|da|del|of)(?:['\u2019]s)?)*", question):
        text = re.sub(r"['\u2019]s\b", "", m.group(0))
        if not free(m.start(), m.start() + len(text)):
            continue
        words = text.split()
        while words and words[0].lower() in _QUESTION_WORDS:
            words = words[1:]
        if len(words) >= 2 and words[0] == m.group(0).split()[0] and _sentence_start(question, m.start()):
            words = words[1:]  # "Call Alice - ...": the first word of a sentence is capitalised anyway
        if words and words[-1].lower() in NOT_NAMES:
            continue
        if not words or words[-1].lower() in ("of", "de", "da", "del"):
            continue
        text = " ".join(words)
        s = m.start() + m.group(0).index(words[0])
        place = bool(_PLACE_BEFORE.search(question[:s])) and "'" not in m.group(0)
        add(text, "place" if place else "name", s, s + len(text))
        if place:  # a capitalised word after "in" may still be a person ("emails from Alice")
            spans.append(Span(text, "name", s))
    for m in re.finditer(rf"(?<![\w.]){_NUM}(?![\w])", question):
        if free(m.start(), m.end()):
            add(m.group(0).replace(",", ""), "number", m.start(), m.end())
    return sorted(spans, key=lambda sp: sp.start)


_EG = re.compile(r"(?:e\.g\.|eg\.|such as|like|for example|for instance)[,:]?\s*[\"'\u201c]([^\"'\u201d]+)[\"'\u201d]",
                 re.I)


def described_examples(prop: dict[str, Any]) -> list[str]:
    """Example values a parameter's description quotes ('e.g. "A1001"', 'such as "UTC"')."""
    return _EG.findall(str(prop.get("description", "")))


def _shape(value: str) -> str:
    """A value's shape: "A1001" -> "A9", "USD" -> "AAA"-like code, "Paris" -> "Aa"."""
    return re.sub(r"[a-z]+", "a", re.sub(r"[A-Z]+", "A", re.sub(r"\d+", "9", value)))


def _candidates(pname: str, prop: dict[str, Any], spans: list[Span], question: str = "") -> list[Span]:
    """The spans a parameter may take, best first (empty: the question gives nothing)."""
    if "enum" in prop or "const" in prop:  # the schema's values the question writes, or a span normalises to
        values = prop.get("enum") or [prop.get("const")]
        out = []
        for v in values:
            if not isinstance(v, str) or not v:
                continue
            m = re.search(rf"(?<!\w){re.escape(v)}(?!\w)", question, re.I)
            at = m.start() if m else next((sp.start for sp in spans if sp.text.lower() == v.lower()), -1)
            if at >= 0:
                out.append(Span(v, "enum", at))
        return sorted(out, key=lambda sp: sp.start)
    kind = param_kind(pname, prop)
    if kind == "number":
        return [sp for sp in spans if sp.kind == "number"]
    fits = _SPAN_FIT.get(kind, ())
    found = [sp for sp in spans if sp.kind in fits and (kind != "id" or sp.kind != "number" or len(sp.text) >= 3)]
    if kind == "id" and found:  # an order number in the question rather than a currency code
        found = [sp for sp in found if sp.kind == min((x.kind for x in found), key=fits.index)]
    found.sort(key=lambda sp: (fits.index(sp.kind), sp.start))
    examples = [str(e) for e in prop.get("examples") or () if isinstance(e, str)] + described_examples(prop)
    if kind in ("id", None) and examples:  # "e.g. A1001": spans of the same shape
        shapes = {_shape(e) for e in examples}
        same = [sp for sp in spans if _shape(sp.text) in shapes and sp.kind != "number"]
        found = same + [sp for sp in found if sp not in same] if kind == "id" else same
    pattern = prop.get("pattern")
    if isinstance(pattern, str):
        try:
            found = [sp for sp in found if re.search(pattern, sp.text)]
        except re.error:
            pass
    if isinstance(prop.get("maxLength"), int):
        found = [sp for sp in found if len(sp.text) <= prop["maxLength"]]
    return found


def _direction(pname: str, prop: dict[str, Any]) -> str:
    text = _words_of(prop, pname).lower()
    if re.search(r"\b(from|source|src|base|origin|original|sell|have)\b", text):
        return "from"
    if re.search(r"\b(to|into|target|dst|dest|destination|quote|buy|want)\b", text):
        return "to"
    return ""


def _choose(params: dict[str, Any], question: str) -> dict[str, list[Span]]:
    """Each parameter's candidates, with parameters wanting the same kind of span split
    between them by direction ("from" / "to") or else by order of mention."""
    spans = question_spans(question)
    cands = {p: _candidates(p, prop, spans, question) for p, prop in params.items() if isinstance(prop, dict)}
    groups: dict[str, list[str]] = {}
    for p, prop in params.items():
        k = param_kind(p, prop) if isinstance(prop, dict) and "enum" not in prop else None
        if k in ("currency", "place", "name", "id", "zone", "number") and cands.get(p):
            groups.setdefault(k, []).append(p)
    for members in groups.values():
        if len(members) < 2:
            continue
        pool = sorted({sp.text: sp for p in members for sp in cands[p]}.values(), key=lambda sp: sp.start)
        dirs = {p: _direction(p, params[p]) for p in members}
        left = list(pool)
        chosen: dict[str, Span] = {}
        for want in ("from", "to"):
            for p in members:
                if dirs[p] == want and p not in chosen:
                    pick = next((sp for sp in left if sp.role == want), None)
                    if pick is not None:
                        chosen[p] = pick
                        left.remove(pick)
        for p in members:
            if p not in chosen and left:
                chosen[p] = left.pop(0)
        for p in members:
            if p in chosen:
                cands[p] = [chosen[p]]
    return cands


def ground_params(branch: dict[str, Any], question: str, skip: set[str] | None = None) -> dict[str, Any]:
    """A copy of a tool branch whose string/number arguments the question offers spans for
    may only be the best of them (``enum``). ``skip``: parameters grounded elsewhere."""
    params = branch.get("properties", {}).get("kwargs", {}).get("properties", {})
    if not isinstance(params, dict) or not params:
        return branch
    chosen = _choose({p: v for p, v in params.items() if p not in (skip or set())}, question)
    changes: dict[str, Any] = {}
    for p, cands in chosen.items():
        prop = params[p]
        if not cands or (prop.get("type") not in ("string", "integer", "number") and "enum" not in prop):
            continue
        if param_kind(p, prop) is None and "enum" not in prop and not prop.get("examples") \
                and cands[0].kind != "quoted":
            continue  # nothing says what the parameter wants
        best = cands[0]
        top = [sp for sp in cands if sp.kind == best.kind][:1] if param_kind(p, prop) != "number" else cands
        values: list[Any] = []
        for sp in top:
            v: Any = sp.text
            if prop.get("type") in ("integer", "number"):
                try:
                    v = float(sp.text)
                    v = int(v) if v.is_integer() else v
                    if prop.get("type") == "integer" and not isinstance(v, int):
                        continue
                except ValueError:
                    continue
            if v not in values:
                values.append(v)
        if values:
            changes[p] = {k: v for k, v in prop.items() if k not in ("maxLength", "pattern", "examples", "format")}
            changes[p]["enum"] = values
    required = list(branch.get("properties", {}).get("kwargs", {}).get("required", []))
    # an optional parameter the question gives nothing for is left out (the tool's default applies): the
    # tiny model would invent it ("UTC" for "what time is it?" is the default anyway)
    dropped = [p for p in params if p not in required and p not in changes and p not in (skip or set())]
    if not changes and not dropped:
        return branch
    out = copy.deepcopy(branch)
    kwargs = out["properties"]["kwargs"]
    kwargs["properties"].update(changes)
    for p in dropped:
        del kwargs["properties"][p]
    # an optional parameter the question gives a value for is given it ("in Tokyo": the zone)
    kwargs["required"] = [*required, *(p for p in changes if p not in required)]
    return out


STRONG = ("currency", "id", "email")  # spans that point to a tool even when no word of it is in the question


def fit(branch: dict[str, Any], question: str, skip: set[str] | None = None, strong: bool = False) -> int:
    """How well the question fills a tool's parameters: +1 per required parameter of a
    recognised kind it offers a span for, -100 when it offers none for one of them.
    ``strong``: count only parameters filled with a ``STRONG`` span (0 when none is)."""
    kwargs = branch.get("properties", {}).get("kwargs", {})
    params = kwargs.get("properties", {}) if isinstance(kwargs, dict) else {}
    if not isinstance(params, dict):
        return 0
    params = {p: v for p, v in params.items() if p not in (skip or set())}
    chosen = _choose(params, question)
    score = 0
    for p in kwargs.get("required", []):
        prop = params.get(p)
        kind = param_kind(p, prop) if isinstance(prop, dict) else None
        if kind is None:
            continue
        if chosen.get(p):
            score += 1 if (not strong or chosen[p][0].kind in STRONG) and chosen[p][0].kind != "rest" else 0
        elif kind in _SPAN_FIT or kind == "number":
            return -100
    return score
