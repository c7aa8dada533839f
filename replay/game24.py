"""A Game of 24 checker: the verifier a user could deploy next to a Game of 24 prompt.

It reads the candidate's answer the way Tree of Thoughts' own checker does (the last line, an
optional ``Answer:`` prefix, the expression left of ``=``), then accepts it only if the
expression uses exactly the puzzle's numbers, each once, and evaluates to 24 in exact rational
arithmetic. The expression is parsed by a small recursive-descent parser over numbers,
``+ - * /`` and parentheses; nothing is ever passed to ``eval``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

__all__ = ["ExpressionError", "answer_expression", "check_answer", "evaluate", "puzzle_numbers"]

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|(.))")
_INPUT_LINE = re.compile(r"Input:\s*((?:\d+\s*)+)")
_MAX_TOKENS = 64  # a four-number expression needs far fewer; bounds the parser's work


class ExpressionError(ValueError):
    """The answer is not an arithmetic expression this checker accepts."""


def puzzle_numbers(text: str) -> list[int]:
    """The numbers of the last ``Input: a b c d`` line of a prompt (the puzzle being asked)."""
    found = _INPUT_LINE.findall(text)
    if not found:
        raise ExpressionError("no 'Input:' line with numbers")
    return [int(tok) for tok in found[-1].split()]


def answer_expression(candidate: str) -> str:
    """The expression a candidate answers with: its last line, left of ``=``."""
    lines = candidate.strip().split("\n")
    last = lines[-1].strip()
    last = re.sub(r"^answer:\s*", "", last, flags=re.IGNORECASE)
    return last.split("=")[0].strip()


def _tokens(expression: str) -> list[str | Fraction]:
    out: list[str | Fraction] = []
    for match in _TOKEN.finditer(expression):
        number, symbol = match.groups()
        if number is not None:
            out.append(Fraction(number))
        elif symbol is not None and not symbol.isspace():
            if symbol not in "+-*/()":
                raise ExpressionError(f"unexpected symbol {symbol!r}")
            out.append(symbol)
    if not out:
        raise ExpressionError("empty expression")
    if len(out) > _MAX_TOKENS:
        raise ExpressionError("expression too long")
    return out


class _Parser:
    """expr := term (('+'|'-') term)* ; term := factor (('*'|'/') factor)* ;
    factor := NUMBER | '(' expr ')' — no unary operators: the game has none."""

    def __init__(self, tokens: list[str | Fraction]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.numbers: list[Fraction] = []

    def peek(self) -> str | Fraction | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | Fraction:
        token = self.peek()
        if token is None:
            raise ExpressionError("expression ends early")
        self.pos += 1
        return token

    def expr(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term()
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self) -> Fraction:
        value = self.factor()
        while self.peek() in ("*", "/"):
            op = self.take()
            rhs = self.factor()
            if op == "*":
                value = value * rhs
            elif rhs == 0:
                raise ExpressionError("division by zero")
            else:
                value = value / rhs
        return value

    def factor(self) -> Fraction:
        token = self.take()
        if isinstance(token, Fraction):
            self.numbers.append(token)
            return token
        if token == "(":
            value = self.expr()
            if self.take() != ")":
                raise ExpressionError("unbalanced parentheses")
            return value
        raise ExpressionError(f"unexpected {token!r}")


def evaluate(expression: str) -> tuple[Fraction, list[Fraction]]:
    """The exact value of ``expression`` and the numbers it uses, in order."""
    parser = _Parser(_tokens(expression))
    value = parser.expr()
    if parser.peek() is not None:
        raise ExpressionError(f"unexpected {parser.peek()!r} after the expression")
    return value, parser.numbers


def check_answer(candidate: str, numbers: Sequence[int], *, target: int = 24) -> bool:
    """True iff the candidate's answer uses each of ``numbers`` exactly once and equals 24."""
    try:
        value, used = evaluate(answer_expression(candidate))
    except ExpressionError:
        return False
    return sorted(used) == sorted(Fraction(n) for n in numbers) and value == target
