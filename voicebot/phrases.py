"""Phrase templates: one example line that stands for many ways of saying it.

    "[could you] (put me through | transfer me) to [a | an] (agent | person) [please]"

`[x]` may be left out, `(x | y)` is one of them, `*` is any speech at all
(a grammar engine fills it with a free phone loop; text ignores it), and
anything else is a word.
A flow's examples are written this way (plain sentences are templates too).
A grammar engine compiles a template into a finite-state graph (`fsg_edges`)
so it accepts every expansion at the cost of the template's size; phrase-list
engines and the text matcher take a bounded list of expansions (`expand`).
Standard library only: both the dialog and the ASR layers use it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

_TOKEN = re.compile(r"\(|\)|\[|\]|\||\*|[^\s()\[\]|*]+")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Word:
    text: str


@dataclass(frozen=True)
class Any:
    """Any speech: words the template does not care about."""


@dataclass(frozen=True)
class Seq:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    options: tuple[Node, ...]


@dataclass(frozen=True)
class Opt:
    inner: Node


Node = Word | Any | Seq | Alt | Opt


def tidy(template: str) -> str:
    """Lower case, punctuation other than the template marks and apostrophes
    removed, single spaces: the form templates are stored and compared in."""
    text = re.sub(r"[^\w\s'()\[\]|]", " ", template.lower())
    return " ".join(text.split())


def parse(template: str) -> Node:
    tokens = _TOKEN.findall(template.lower())
    node, rest = _alternatives(tokens, 0, template)
    if rest != len(tokens):
        raise TemplateError(f"unbalanced {tokens[rest]!r} in {template!r}")
    return node


def _alternatives(tokens: list[str], i: int, src: str) -> tuple[Node, int]:
    options = []
    seq, i = _sequence(tokens, i, src)
    options.append(seq)
    while i < len(tokens) and tokens[i] == "|":
        seq, i = _sequence(tokens, i + 1, src)
        options.append(seq)
    return (options[0] if len(options) == 1 else Alt(tuple(options))), i


def _sequence(tokens: list[str], i: int, src: str) -> tuple[Node, int]:
    items: list[Node] = []
    while i < len(tokens) and tokens[i] not in ("|", ")", "]"):
        tok = tokens[i]
        if tok in ("(", "["):
            inner, i = _alternatives(tokens, i + 1, src)
            close = ")" if tok == "(" else "]"
            if i >= len(tokens) or tokens[i] != close:
                raise TemplateError(f"missing {close!r} in {src!r}")
            items.append(inner if tok == "(" else Opt(inner))
            i += 1
        elif tok == "*":
            items.append(Any())
            i += 1
        else:
            items.append(Word(tok))
            i += 1
    return Seq(tuple(items)), i


def words(node: Node) -> set[str]:
    if isinstance(node, Any):
        return set()
    if isinstance(node, Word):
        return {node.text}
    if isinstance(node, Opt):
        return words(node.inner)
    parts = node.items if isinstance(node, Seq) else node.options
    return set().union(*(words(p) for p in parts)) if parts else set()


def expand(template: str, limit: int = 200) -> list[str]:
    """Up to `limit` sentences the template stands for, shortest-first variety."""
    out = [" ".join(ws) for ws in itertools.islice(_expand(parse(template)), limit)]
    return list(dict.fromkeys(s for s in (" ".join(o.split()) for o in out) if s))


def _expand(node: Node) -> Iterator[list[str]]:
    if isinstance(node, Any):
        yield []
    elif isinstance(node, Word):
        yield [node.text]
    elif isinstance(node, Opt):
        yield []
        yield from _expand(node.inner)
    elif isinstance(node, Alt):
        for option in node.options:
            yield from _expand(option)
    else:
        yield from _product([list(itertools.islice(_expand(i), 50)) for i in node.items])


def _product(choices: list[list[list[str]]]) -> Iterator[list[str]]:
    for combo in itertools.product(*choices):
        yield [w for part in combo for w in part]


def count(template: str) -> int:
    """How many sentences the template stands for (before removing duplicates)."""
    return _count(parse(template))


def _count(node: Node) -> int:
    if isinstance(node, Word | Any):
        return 1
    if isinstance(node, Opt):
        return 1 + _count(node.inner)
    if isinstance(node, Alt):
        return sum(_count(o) for o in node.options)
    n = 1
    for item in node.items:
        n *= _count(item)
    return n


Edge = tuple[int, int, float] | tuple[int, int, float, str]


def fsg_edges(node: Node, start: int, end: int, next_state: int,
              garbage: tuple[tuple[str, float], ...] = ()) -> tuple[list[Edge], int]:
    """Transitions (from, to, prob[, word]) that accept every expansion of `node`
    between `start` and `end`; empty transitions where words may be left out;
    `*` as a loop of zero or more `garbage` (word, prob) tokens (nothing when
    none are given). Returns the edges and the next unused state number."""
    if isinstance(node, Any):
        if not garbage:
            return [(start, end, 1.0)], next_state
        mid = next_state
        edges: list[Edge] = [(start, mid, prob, word) for word, prob in garbage]
        edges += [(mid, start, 1.0), (mid, end, 1.0), (start, end, 1.0)]
        return edges, next_state + 1
    if isinstance(node, Word):
        return [(start, end, 1.0, node.text)], next_state
    if isinstance(node, Opt):
        edges, next_state = fsg_edges(node.inner, start, end, next_state, garbage)
        return [*edges, (start, end, 1.0)], next_state
    if isinstance(node, Alt):
        edges = []
        for option in node.options:
            more, next_state = fsg_edges(option, start, end, next_state, garbage)
            edges += more
        return edges, next_state
    if not node.items:
        return [(start, end, 1.0)], next_state
    edges = []
    at = start
    for k, item in enumerate(node.items):
        if k == len(node.items) - 1:
            target = end
        else:
            target, next_state = next_state, next_state + 1
        more, next_state = fsg_edges(item, at, target, next_state, garbage)
        edges += more
        at = target
    return edges, next_state
