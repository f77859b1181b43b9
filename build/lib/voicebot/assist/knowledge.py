"""A small editable knowledge base, matched to what the caller said.

Articles are TOML files (one per file) in a folder, `knowledge/` by default:

    title = "Where is my order?"
    keywords = ["order", "package", "tracking number", "late"]
    body = "Open the order in the back office ..."
    weight = 1.0  # optional; below 1 for generic advice

Matching is deliberately simple and explainable: words of the transcript
(lower-cased, plural/verb endings stripped, stop words dropped) against each
article's keywords (weight 2, phrases allowed) and title words (weight 1).
The agent sees which words matched, so a bad suggestion is easy to see past.
"""

from __future__ import annotations

import logging
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STOP_WORDS = frozenset(
    "a an the i i'm me my you your we our it is are was to of in on for with at by and or "
    "but not no do does did can can't could would will want wanted need like please just "
    "this that there what when where how why who speak talk someone".split())


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    keywords: tuple[str, ...]
    body: str
    weight: float = 1.0  # <1 for generic advice that should not push out specific articles


@dataclass(frozen=True)
class Suggestion:
    article: Article
    score: float
    matched: tuple[str, ...]  # the caller's words that matched

    def to_json(self) -> dict[str, Any]:
        return {"id": self.article.id, "title": self.article.title, "body": self.article.body,
                "score": self.score, "matched": list(self.matched)}


def load_articles(folder: str | Path) -> list[Article]:
    """Every `*.toml` article in `folder`; a broken file is skipped with a warning."""
    articles = []
    for path in sorted(Path(folder).glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            articles.append(Article(path.stem, str(data["title"]),
                                    tuple(str(k).lower() for k in data.get("keywords", ())),
                                    str(data.get("body", "")).strip(),
                                    float(data.get("weight", 1.0))))
        except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError) as exc:
            log.warning("knowledge base: skipping %s: %s", path.name, exc)
    return articles


def stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def words(text: str) -> list[str]:
    return [w for w in re.findall(r"[\w']+", text.lower()) if w not in STOP_WORDS]


class KnowledgeBase:
    def __init__(self, articles: list[Article]) -> None:
        self.articles = articles

    @classmethod
    def from_folder(cls, folder: str | Path) -> KnowledgeBase:
        return cls(load_articles(folder) if Path(folder).is_dir() else [])

    def suggest(self, transcript: list[str], top: int = 3) -> list[Suggestion]:
        tokens = re.findall(r"[\w']+", " ".join(transcript).lower())
        said = {stem(w): w for w in tokens if w not in STOP_WORDS}
        joined = " " + " ".join(stem(w) for w in tokens) + " "
        found = [self._match(a, said, joined) for a in self.articles]
        ranked = sorted((s for s in found if s.score > 0), key=lambda s: (-s.score, s.article.id))
        return ranked[:top]

    def _match(self, article: Article, said: dict[str, str], joined: str) -> Suggestion:
        """Keywords match as whole phrases (stop words included); title words one by one."""
        score, matched = 0.0, []
        for keyword in article.keywords:
            key = " ".join(stem(w) for w in re.findall(r"[\w']+", keyword))
            if key and f" {key} " in joined:
                score += 2
                matched.append(keyword if " " in keyword else said.get(key, keyword))
        for w in words(article.title):
            if stem(w) in said:
                score += 1
                matched.append(said[stem(w)])
        return Suggestion(article, round(score * article.weight, 2), tuple(dict.fromkeys(matched)))
