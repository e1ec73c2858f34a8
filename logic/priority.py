"""Priority classes: an editor's request (interactive) goes before a proof search's (batch).

The class comes from the API key (a key source may tag a key `batch`), else `interactive`; a client may lower
its own class with `X-Priority: batch` but never raise it, so a search client's key cannot claim the editor's
lane. The class picks the engine priority (vLLM schedules lower numbers first) and the admission lane.
"""

from __future__ import annotations

from core.errors import InvalidRequestError
from core.request_context import PRIORITY_CLASSES, PriorityClass

__all__ = ["PRIORITY_CLASSES", "PriorityClass", "classes_ahead", "engine_priority", "resolve_class"]
DEFAULT_CLASS: PriorityClass = "interactive"
PRIORITY_HEADER = "X-Priority"


def engine_priority(priority_class: PriorityClass) -> int:
    return PRIORITY_CLASSES.index(priority_class)


def parse_class(value: str, source: str) -> PriorityClass:
    cleaned = value.strip().lower()
    if cleaned not in PRIORITY_CLASSES:
        raise InvalidRequestError(f"{source} is {value[:40]!r}; use one of {', '.join(PRIORITY_CLASSES)}")
    return cleaned  # type: ignore[return-value]


def resolve_class(key_class: PriorityClass | None, header: str | None) -> PriorityClass:
    """The request's class: its key's (or the default), lowered by the header when the header asks for less."""
    granted = key_class or DEFAULT_CLASS
    if header is None or not header.strip():
        return granted
    asked = parse_class(header, PRIORITY_HEADER)
    return max(granted, asked, key=PRIORITY_CLASSES.index)


def classes_ahead(priority_class: PriorityClass) -> tuple[PriorityClass, ...]:
    """The classes whose work the engine serves before (or with) this one's."""
    return PRIORITY_CLASSES[: PRIORITY_CLASSES.index(priority_class) + 1]
