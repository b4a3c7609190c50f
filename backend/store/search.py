"""Run search: MLflow's `filter_string` and `order_by` grammar, parsed into a small AST.

Why hand-written: the grammar is tiny (comparisons joined by AND), and a tokenizer of our own can
name the exact token it refuses and where (`SearchError`: the API's 422 quotes it), which a
general SQL parser cannot. MLflow's search syntax is the reference, so W&B and MLflow users can
type what they know:

    metrics.`val/accuracy` > 0.98 and config.seed = 0 and tags.baseline
    attributes.status IN ('running', 'queued') and run.name LIKE 'mnist%'

- identifiers: `metrics.<key>` (the run's latest value of that key), `config.<key>` or
  `params.<key>` (a TrainConfig field), `tags.<tag>` (alone: the run has that tag), `tags` (with
  an operator: any of its tags), `attributes.<name>` or `run.<name>` (a column of the run: id,
  name, status, dataset, ...); a bare attribute name is taken as one. Keys that hold anything but
  letters, digits, `_`, `/`, `.` and `-` are written in backquotes or double quotes.
- operators: = != < <= > >= LIKE ILIKE IN (...) NOT IN (...); values: numbers, 'strings'
  ("strings" too; a quote is doubled to escape it). Clauses are joined by AND (case-insensitive).
- order_by: a comma list of identifiers, each optionally ASC or DESC.

This module only parses and checks; `search_sql.py` compiles the AST into SQLAlchemy expressions
so the database filters and sorts (never a Python filter over every run). Kept as one module: the
tokenizer, the parser and the checks of what each kind of name compares with are one grammar,
read together.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from marginscope.backend.store.entities import RunStatus
from marginscope.backend.store.exceptions import InvalidArgument

MAX_FILTER_CHARS = 4000  # a filter longer than any a person types: refused before it is parsed
MAX_CLAUSES = 50
MAX_IN_VALUES = 200
MAX_KEY_CHARS = 100  # the store's longest metric key (and far above any config field's name)

# the run's own columns a filter and an order may name (`attributes.<name>`), by kind
ATTRIBUTE_KINDS: dict[str, str] = {
    "id": "number", "name": "text", "status": "text", "dataset": "text", "model": "text",
    "selector": "text", "candidates": "number", "batch_size": "number", "step": "number",
    "created_at": "time", "started_at": "time", "finished_at": "time", "notes": "text",
    "executor": "text", "attempt": "number",
}
# MLflow's attribute names, for the habits its users bring
ATTRIBUTE_ALIASES = {"run_id": "id", "run_name": "name", "start_time": "started_at",
                     "end_time": "finished_at"}
PREFIXES = {
    "metrics": "metric", "metric": "metric",
    "config": "config", "params": "config", "param": "config", "parameters": "config",
    "tags": "tag", "tag": "tag",
    "attributes": "attribute", "attribute": "attribute", "attr": "attribute", "run": "attribute",
}
COMPARISONS = ("=", "!=", "<>", "<=", ">=", "<", ">")
WORD_OPERATORS = ("LIKE", "ILIKE", "IN")


class SearchError(InvalidArgument):
    """A filter or order_by the grammar refuses; `token` is the text refused, `position` its
    0-based offset (the API's 422 names both and says what is expected instead)."""

    def __init__(self, message: str, *, field: str, token: str, position: int) -> None:
        super().__init__(message, field=field)
        self.token = token
        self.position = position


# --------------------------------------------------------------------------- the AST


@dataclass(frozen=True)
class Ident:
    """What a clause or an order names: kind ∈ metric | config | tag | tags | attribute."""

    kind: str
    key: str

    def __str__(self) -> str:
        prefix = {"metric": "metrics", "config": "config", "tag": "tags",
                  "attribute": "attributes"}.get(self.kind)
        return "tags" if self.kind == "tags" else f"{prefix}.`{self.key}`"


Value = float | str | datetime


@dataclass(frozen=True)
class Clause:
    """`ident op value`; op is one of = != < <= > >= LIKE ILIKE IN NOT IN, or HAS (a bare tag)."""

    ident: Ident
    op: str
    value: Value | tuple[Value, ...] | None


@dataclass(frozen=True)
class Order:
    ident: Ident
    descending: bool


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Token:
    kind: str  # word | key | string | number | op | lparen | rparen | comma | dot
    text: str  # what the source says (a key or string without its quotes)
    pos: int


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<word>[A-Za-z_][\w/\-]*)
  | (?P<backquoted>`[^`]*`)
  | (?P<dquoted>"(?:[^"]|"")*")
  | (?P<squoted>'(?:[^']|'')*')
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<dot>\.)
""", re.VERBOSE)


def tokenize(text: str, field: str) -> list[Token]:
    """The tokens of `text`; SearchError at the first character no token starts with."""
    if len(text) > MAX_FILTER_CHARS:
        raise SearchError(f"{field} is {len(text)} characters long; at most {MAX_FILTER_CHARS}",
                          field=field, token=text[:20], position=0)
    if "\x00" in text:
        raise SearchError(f"{field} holds a NUL character", field=field, token="\\x00",
                          position=text.index("\x00"))
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            bad = text[pos]
            hint = " (close the quote)" if bad in "`'\"" else ""
            raise SearchError(f"{field}: unexpected {bad!r} at position {pos}{hint}", field=field,
                              token=bad, position=pos)
        kind = m.lastgroup or ""
        raw = m.group()
        if kind == "backquoted":
            tokens.append(Token("key", raw[1:-1], pos))
        elif kind == "dquoted":
            tokens.append(Token("string", raw[1:-1].replace('""', '"'), pos))
        elif kind == "squoted":
            tokens.append(Token("string", raw[1:-1].replace("''", "'"), pos))
        elif kind != "space":
            tokens.append(Token(kind, raw, pos))
        pos = m.end()
    return tokens


# --------------------------------------------------------------------------- the parser


class _Parser:
    """Recursive descent over the tokens: filter := clause (AND clause)*; order := item (, item)*."""

    def __init__(self, text: str, field: str) -> None:
        self.text = text
        self.field = field
        self.tokens = tokenize(text, field)
        self.i = 0

    # helpers
    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str) -> Token:
        tok = self.peek()
        if tok is None:
            raise self.error(None, expected)
        self.i += 1
        return tok

    def error(self, tok: Token | None, expected: str) -> SearchError:
        if tok is None:
            return SearchError(f"{self.field} ends too early: expected {expected}", field=self.field,
                               token="", position=len(self.text))
        shown = tok.text if tok.kind not in ("string", "key") else self.text[tok.pos:tok.pos + len(tok.text) + 2]
        return SearchError(f"{self.field}: unexpected {shown!r} at position {tok.pos}; expected {expected}",
                           field=self.field, token=shown, position=tok.pos)

    def word(self, *words: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "word" and tok.text.upper() in words:
            self.i += 1
            return True
        return False

    # identifiers
    def ident(self) -> tuple[Ident, Token]:
        first = self.take("a name such as metrics.`val/accuracy`, config.seed, tags.baseline or attributes.status")
        if first.kind != "word" and first.kind != "key":
            raise self.error(first, "a name such as metrics.`val/accuracy`, config.seed, tags.baseline "
                                    "or attributes.status")
        prefix = PREFIXES.get(first.text.lower()) if first.kind == "word" else None
        nxt = self.peek()
        if prefix is not None and nxt is not None and nxt.kind == "dot":
            self.i += 1
            key_tok = self.take(f"a key after '{first.text}.'")
            if key_tok.kind not in ("word", "key", "string") and not (key_tok.kind == "number"
                                                                      and key_tok.text.isdigit()):
                raise self.error(key_tok, f"a key after '{first.text}.'")
            key = key_tok.text
            # unquoted keys may hold dots (metrics.val.acc): join the words back
            while key_tok.kind == "word" and self._glued_dot():
                self.i += 1
                key_tok = self.take("a key")
                key += "." + key_tok.text
            return self._check_key(prefix, key, key_tok), first
        if first.kind == "word" and first.text.lower() == "tags":
            return Ident("tags", ""), first
        name = first.text
        if first.kind == "word" and ATTRIBUTE_ALIASES.get(name.lower(), name.lower()) in ATTRIBUTE_KINDS:
            return self._check_key("attribute", name, first), first
        raise self.error(first, "a name such as metrics.`val/accuracy`, config.seed, tags.baseline or "
                                "attributes.status (prefix a key with metrics., config., tags. or "
                                "attributes.)")

    def _glued_dot(self) -> bool:
        """A dot written right after the previous token, followed by a word (a dotted key)."""
        if self.i + 1 >= len(self.tokens):
            return False
        dot, after = self.tokens[self.i], self.tokens[self.i + 1]
        prev = self.tokens[self.i - 1]
        return (dot.kind == "dot" and after.kind == "word" and dot.pos == prev.pos + len(prev.text)
                and after.pos == dot.pos + 1)

    def _check_key(self, kind: str, key: str, tok: Token) -> Ident:
        if not key or len(key) > MAX_KEY_CHARS:
            raise SearchError(f"{self.field}: the key at position {tok.pos} must be 1 to {MAX_KEY_CHARS} "
                              "characters", field=self.field, token=key[:20], position=tok.pos)
        if kind == "attribute":
            name = ATTRIBUTE_ALIASES.get(key.lower(), key.lower())
            if name not in ATTRIBUTE_KINDS:
                raise SearchError(f"{self.field}: unknown attribute {key!r} at position {tok.pos}; use one "
                                  f"of {', '.join(ATTRIBUTE_KINDS)}", field=self.field, token=key,
                                  position=tok.pos)
            return Ident("attribute", name)
        return Ident(kind, key)

    # values
    def value(self, op: str) -> Value:
        tok = self.take(f"a number or a quoted string after {op}")
        if tok.kind == "number":
            number = float(tok.text)
            if not math.isfinite(number):
                raise SearchError(f"{self.field}: the number {tok.text!r} at position {tok.pos} is out of "
                                  "range", field=self.field, token=tok.text, position=tok.pos)
            return number
        if tok.kind == "string":
            return tok.text
        raise self.error(tok, f"a number or a quoted string after {op}")

    def values(self, op: str) -> tuple[Value, ...]:
        opening = self.take(f"'(' after {op}")
        if opening.kind != "lparen":
            raise self.error(opening, f"'(' after {op}, e.g. {op} ('a', 'b')")
        out = [self.value(op)]
        while True:
            tok = self.take("',' or ')'")
            if tok.kind == "rparen":
                break
            if tok.kind != "comma":
                raise self.error(tok, "',' or ')'")
            out.append(self.value(op))
            if len(out) > MAX_IN_VALUES:
                raise SearchError(f"{self.field}: at most {MAX_IN_VALUES} values in one IN list",
                                  field=self.field, token=tok.text, position=tok.pos)
        return tuple(out)

    # clauses
    def clause(self) -> Clause:
        ident, ident_tok = self.ident()
        tok = self.peek()
        ends = tok is None or (tok.kind == "word" and tok.text.upper() == "AND")
        if ident.kind == "tag" and ends:
            return Clause(ident, "HAS", None)
        if tok is None:
            raise self.error(None, f"an operator after {ident_tok.text}")
        if tok.kind == "op":
            self.i += 1
            op = "!=" if tok.text == "<>" else tok.text
            return self._checked(Clause(ident, op, self.value(op)), tok)
        if self.word("NOT"):
            if not self.word("IN"):
                raise self.error(self.peek(), "IN after NOT")
            return self._checked(Clause(ident, "NOT IN", self.values("NOT IN")), tok)
        if tok.kind == "word" and tok.text.upper() in WORD_OPERATORS:
            self.i += 1
            op = tok.text.upper()
            value = self.values(op) if op == "IN" else self.value(op)
            return self._checked(Clause(ident, op, value), tok)
        raise self.error(tok, "an operator: =, !=, <, <=, >, >=, LIKE, ILIKE, IN or NOT IN")

    def _checked(self, clause: Clause, op_tok: Token) -> Clause:
        """The value types each kind of identifier compares with; times parsed; statuses known."""
        kind = clause.ident.kind
        values = clause.value if isinstance(clause.value, tuple) else (clause.value,)

        def refuse(why: str) -> SearchError:
            return SearchError(f"{self.field}: {op_tok.text!r} at position {op_tok.pos} "
                               f"({clause.ident} {clause.op} ...): {why}", field=self.field,
                               token=op_tok.text, position=op_tok.pos)

        if kind == "tag":
            raise refuse("a tag is a label: write tags.`name` alone to ask for runs that have it, or "
                         "tags = 'name', tags LIKE 'seed%'")
        texty = clause.op in ("LIKE", "ILIKE")
        if texty and not all(isinstance(v, str) for v in values):
            raise refuse(f"{clause.op} takes a quoted pattern, e.g. '%mnist%'")
        if kind == "metric":
            if texty or not all(isinstance(v, float) for v in values):
                raise refuse("a metric compares with numbers (=, !=, <, <=, >, >=, IN)")
        elif kind == "tags":
            if clause.op not in ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN") or not all(
                    isinstance(v, str) for v in values):
                raise refuse("tags compare with quoted text (=, !=, LIKE, ILIKE, IN, NOT IN)")
        elif kind == "attribute":
            attr_kind = ATTRIBUTE_KINDS[clause.ident.key]
            if attr_kind == "number" and (texty or not all(isinstance(v, float) for v in values)):
                raise refuse(f"{clause.ident.key} compares with numbers")
            if attr_kind == "text" and not all(isinstance(v, str) for v in values):
                raise refuse(f"{clause.ident.key} compares with quoted text")
            if attr_kind == "time":
                if texty:
                    raise refuse(f"{clause.ident.key} compares with a time, e.g. '2026-01-31T12:00'")
                values = tuple(self._time(v, clause, op_tok) for v in values)
            if clause.ident.key == "status" and not texty:
                known = {s.value for s in RunStatus}
                bad = [v for v in values if v not in known]
                if bad:
                    raise refuse(f"unknown status {bad[0]!r}; use one of {', '.join(sorted(known))}")
        value = values if isinstance(clause.value, tuple) else values[0]
        return Clause(clause.ident, clause.op, value)

    def _time(self, value: Value, clause: Clause, op_tok: Token) -> datetime:
        try:
            if not isinstance(value, str):
                raise ValueError
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise SearchError(f"{self.field}: {clause.ident.key} compares with an ISO 8601 time such as "
                              f"'2026-01-31T12:00:00Z', not {value!r}", field=self.field,
                              token=str(value)[:40], position=op_tok.pos) from None
        return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)

    # entry points
    def filter(self) -> list[Clause]:
        if not self.tokens:
            return []
        clauses = [self.clause()]
        while self.peek() is not None:
            tok = self.peek()
            if not self.word("AND"):
                hint = " (only AND joins clauses)" if tok is not None and tok.text.upper() == "OR" else ""
                raise self.error(tok, f"AND or the end of the filter{hint}")
            clauses.append(self.clause())
            if len(clauses) > MAX_CLAUSES:
                raise self.error(tok, f"at most {MAX_CLAUSES} clauses")
        return clauses

    def order(self) -> list[Order]:
        orders: list[Order] = []
        while True:
            ident, tok = self.ident()
            if ident.kind in ("tag", "tags"):
                raise SearchError(f"{self.field}: {tok.text!r} at position {tok.pos}: runs cannot be "
                                  "ordered by tags", field=self.field,
                                  token=tok.text, position=tok.pos)
            descending = False
            if self.word("DESC"):
                descending = True
            else:
                self.word("ASC")
            orders.append(Order(ident, descending))
            nxt = self.peek()
            if nxt is None:
                return orders
            if nxt.kind != "comma":
                raise self.error(nxt, "ASC, DESC, ',' or the end of order_by")
            self.i += 1
            if len(orders) >= MAX_CLAUSES:
                raise self.error(nxt, f"at most {MAX_CLAUSES} orders")


def parse_filter(text: str | None, field: str = "filter") -> list[Clause]:
    """The clauses of a filter (all must hold); [] for None or blank. Raises SearchError."""
    return _Parser(text or "", field).filter()


def parse_order_by(text: str | None, field: str = "order_by") -> list[Order]:
    """The orders of an order_by (first decides, the next breaks ties); [] for None or blank."""
    if not (text or "").strip():
        return []
    return _Parser(text or "", field).order()
