"""Syntax tree of one ecelerity.conf file (no includes followed, no registry consulted).

Owns: the grammar of MOMENTUM_DIGEST §1.3 over the tokens of `lexer.py`:

    file    := stmt*
    stmt    := ("include" | "readonly_include") ["="] scalar
             | KEYWORD ["="] [name] "{" stmt* "}"          -- scope, name = word or string
             | NAME ["="] value                             -- option
    value   := scalar | "(" (value [","])* ")" | "[" (key ["="] value [","])* "]"

A statement is a scope when a `{` follows the keyword (or the keyword and one name);
everything else is an option. Whether a keyword is really a scope kind or an option is
the validator's business (`validate.py`), so this module never needs the registry.

Every node records its file, line and character span, which writeback uses to edit
files in place. Nesting of scopes and of values is capped (MAX_DEPTH) so hostile input
cannot exhaust the Python stack. Fails by raising `ConfigError` naming file:line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from ecmta.config import lexer
from ecmta.config.lexer import (COMMA, EOF, EQ, LBRACE, LBRACK, LPAREN, RBRACE, RBRACK,
                                RPAREN, STRING, WORD, Token)
from ecmta.config.model import ConfigError, ConfigIssue

MAX_DEPTH = 64          # scopes (and value brackets) nested deeper than this are refused


# -- value nodes ----------------------------------------------------------------------------

class Scalar(NamedTuple):
    text: str
    quote: str = ""            # "" for a bare token
    line: int = 0
    start: int = 0
    end: int = 0

    @property
    def quoted(self) -> bool:
        return bool(self.quote)

    def render(self) -> str:
        return lexer.quote(self.text) if self.quote or lexer.needs_quotes(self.text) else self.text


@dataclass(frozen=True)
class ListNode:
    items: tuple
    line: int = 0
    start: int = 0
    end: int = 0

    def render(self) -> str:
        return "( " + " ".join(i.render() for i in self.items) + " )" if self.items else "()"


@dataclass(frozen=True)
class DictNode:
    items: tuple               # ((Scalar key, value node), ...)
    line: int = 0
    start: int = 0
    end: int = 0

    def render(self) -> str:
        if not self.items:
            return "[]"
        return "[ " + " ".join(f"{k.render()} = {v.render()}" for k, v in self.items) + " ]"


# -- statements -----------------------------------------------------------------------------

@dataclass
class OptionStmt:
    name: str                  # as written
    value: object              # Scalar | ListNode | DictNode
    file: str
    line: int
    start: int                 # span of the whole statement
    end: int


@dataclass
class ScopeStmt:
    keyword: str               # as written
    name: Scalar | None
    body: list
    file: str
    line: int
    start: int                 # keyword start
    end: int                   # just past the closing brace
    close: int                 # offset of the closing brace


@dataclass
class IncludeStmt:
    readonly: bool
    path: Scalar
    file: str
    line: int
    start: int
    end: int
    files: list = field(default_factory=list)   # SourceFile objects, filled by the loader


# -- parser ---------------------------------------------------------------------------------

class _Parser:
    def __init__(self, tokens: list[Token], file: str):
        self.toks = tokens
        self.i = 0
        self.file = file

    def peek(self, k: int = 0) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self) -> Token:
        tok = self.toks[self.i]
        self.i = min(self.i + 1, len(self.toks) - 1)
        return tok

    def fail(self, tok: Token, message: str):
        raise ConfigError([ConfigIssue(self.file, tok.line, None, message)])

    @staticmethod
    def describe(tok: Token) -> str:
        if tok.kind == EOF:
            return "end of file"
        if tok.kind == STRING:
            return f"string {lexer.quote(tok.text)}"
        return f"'{tok.text}'"

    # statements

    def statements(self, depth: int, closing: Token | None) -> list:
        out = []
        while True:
            tok = self.peek()
            if tok.kind == EOF:
                if closing is not None:
                    self.fail(closing, "unterminated scope: '{' has no matching '}'")
                return out
            if tok.kind == RBRACE:
                if closing is None:
                    self.fail(tok, "unexpected '}' with no open scope")
                return out
            out.append(self.statement(depth))

    def statement(self, depth: int):
        head = self.take()
        if head.kind not in (WORD, STRING):
            self.fail(head, f"expected an option or scope name, found {self.describe(head)}")
        if self.peek().kind == EQ:
            self.take()
        lowered = head.text.lower()
        if head.kind == WORD and lowered in ("include", "readonly_include"):
            return self.include(head, lowered == "readonly_include")
        nxt = self.peek()
        if nxt.kind == LBRACE:
            return self.scope(head, None, depth)
        if nxt.kind in (WORD, STRING) and self.peek(1).kind == LBRACE:
            self.take()
            name = Scalar(nxt.text, nxt.quote, nxt.line, nxt.start, nxt.end)
            return self.scope(head, name, depth)
        if nxt.kind in (EOF, RBRACE, EQ, RPAREN, RBRACK, COMMA):
            self.fail(head, f"option '{head.text}' has no value (found {self.describe(nxt)})")
        value = self.value(depth)
        return OptionStmt(head.text, value, self.file, head.line, head.start, value.end)

    def include(self, head: Token, readonly: bool) -> IncludeStmt:
        tok = self.take()
        if tok.kind not in (WORD, STRING):
            self.fail(head, f"{head.text} needs a file or directory path, found {self.describe(tok)}")
        path = Scalar(tok.text, tok.quote, tok.line, tok.start, tok.end)
        return IncludeStmt(readonly, path, self.file, head.line, head.start, tok.end)

    def scope(self, head: Token, name: Scalar | None, depth: int) -> ScopeStmt:
        if depth >= MAX_DEPTH:
            self.fail(head, f"scopes nested deeper than {MAX_DEPTH} levels")
        brace = self.take()
        body = self.statements(depth + 1, brace)
        close = self.take()
        return ScopeStmt(head.text, name, body, self.file, head.line, head.start, close.end, close.start)

    # values

    def value(self, depth: int):
        tok = self.take()
        if tok.kind in (WORD, STRING):
            return Scalar(tok.text, tok.quote, tok.line, tok.start, tok.end)
        if depth >= MAX_DEPTH:
            self.fail(tok, f"values nested deeper than {MAX_DEPTH} levels")
        if tok.kind == LPAREN:
            return self.list_value(tok, depth + 1)
        if tok.kind == LBRACK:
            return self.dict_value(tok, depth + 1)
        self.fail(tok, f"expected a value, found {self.describe(tok)}")

    def list_value(self, opening: Token, depth: int) -> ListNode:
        items = []
        while True:
            tok = self.peek()
            if tok.kind == RPAREN:
                self.take()
                return ListNode(tuple(items), opening.line, opening.start, tok.end)
            if tok.kind == COMMA:
                self.take()
                continue
            if tok.kind == EOF:
                self.fail(opening, "unterminated list: '(' has no matching ')'")
            if tok.kind not in (WORD, STRING, LPAREN, LBRACK):
                self.fail(tok, f"unexpected {self.describe(tok)} in list")
            items.append(self.value(depth))

    def dict_value(self, opening: Token, depth: int) -> DictNode:
        items = []
        while True:
            tok = self.take()
            if tok.kind == RBRACK:
                return DictNode(tuple(items), opening.line, opening.start, tok.end)
            if tok.kind == COMMA:
                continue
            if tok.kind == EOF:
                self.fail(opening, "unterminated dictionary: '[' has no matching ']'")
            if tok.kind not in (WORD, STRING):
                self.fail(tok, f"expected a dictionary key, found {self.describe(tok)}")
            key = Scalar(tok.text, tok.quote, tok.line, tok.start, tok.end)
            if self.peek().kind == EQ:
                self.take()
            nxt = self.peek()
            if nxt.kind not in (WORD, STRING, LPAREN, LBRACK):
                self.fail(nxt, f"dictionary key '{key.text}' has no value (found {self.describe(nxt)})")
            items.append((key, self.value(depth)))


def parse(text: str, file: str = "<string>") -> list:
    """The statements of one file; raises ConfigError with the first syntax error."""
    p = _Parser(lexer.tokenize(text, file), file)
    return p.statements(0, None)


def parse_value(text: str, file: str = "<console>"):
    """One value as typed at the console (an optional leading `=` is allowed)."""
    p = _Parser(lexer.tokenize(text, file), file)
    if p.peek().kind == EQ:
        p.take()
    if p.peek().kind == EOF:
        p.fail(p.peek(), "missing value")
    node = p.value(0)
    if p.peek().kind != EOF:
        p.fail(p.peek(), f"unexpected {p.describe(p.peek())} after the value")
    return node
