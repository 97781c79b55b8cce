"""What a stored conversation is, and how it is written out (Markdown, JSON)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    role: str
    content: str
    reasoning: str
    stats: Mapping[str, Any]
    partial: bool  # the reply was stopped or its writer died before it finished
    model: str
    created_at: str  # ISO-8601 UTC
    updated_at: str


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    model: str
    settings: Mapping[str, Any]
    system_prompt: str
    created_at: str
    updated_at: str
    messages: tuple[Message, ...] = field(default=())


@dataclass(frozen=True)
class ConversationSummary:
    id: int
    title: str
    model: str
    created_at: str
    updated_at: str
    message_count: int


@dataclass(frozen=True)
class SearchHit:
    """One matching message. With FTS5 the snippet marks the matched words as [word]."""

    conversation_id: int
    conversation_title: str
    message_id: int
    role: str
    snippet: str


def conversation_to_json(conv: Conversation) -> dict[str, Any]:
    """A self-describing JSON document of one conversation."""
    return {
        "format": "kaihe-conversation",
        "version": 1,
        "id": conv.id,
        "title": conv.title,
        "model": conv.model,
        "settings": dict(conv.settings),
        "system_prompt": conv.system_prompt,
        "created_at": conv.created_at,
        "updated_at": conv.updated_at,
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "reasoning": m.reasoning,
                "stats": dict(m.stats),
                "partial": m.partial,
                "model": m.model,
                "created_at": m.created_at,
                "updated_at": m.updated_at,
            }
            for m in conv.messages
        ],
    }


def conversation_to_markdown(conv: Conversation) -> str:
    """A readable Markdown transcript; reasoning folds into <details>."""
    lines = [
        f"# {conv.title}",
        "",
        f"- Model: {conv.model or 'unknown'}",
        f"- Created: {conv.created_at}",
    ]
    if conv.settings:
        lines.append(f"- Settings: `{json.dumps(dict(conv.settings), sort_keys=True)}`")
    lines.append("")
    if conv.system_prompt:
        lines += ["## System", "", conv.system_prompt, ""]
    for m in conv.messages:
        heading = {"user": "You", "assistant": "Assistant", "system": "System"}.get(m.role, m.role)
        if m.partial:
            heading += " (incomplete)"
        lines += [f"## {heading}", ""]
        if m.reasoning:
            lines += ["<details><summary>Reasoning</summary>", "", m.reasoning, "", "</details>", ""]
        lines += [m.content, ""]
    return "\n".join(lines).rstrip() + "\n"
