"""Chat history: conversations and messages in one SQLite file (WAL), saved while replies stream.

Durability: WAL with synchronous=NORMAL. A commit reaches the operating system before it returns, so a
killed app (SIGKILL, crash) loses nothing committed; only a power cut can lose the last commits. A streaming
reply is committed by ReplyWriter at most every ``flush_interval_s`` (0.25 s), which bounds what a hard kill
can lose to that interval of text.

Threads: one connection shared behind a lock, so the GUI may write from a worker thread while it reads from
the main one. Each public method is one transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from kaihe_desktop.core import paths
from kaihe_desktop.core.chat.history_records import (
    Conversation,
    ConversationSummary,
    Message,
    SearchHit,
    conversation_to_json,
    conversation_to_markdown,
)
from kaihe_desktop.core.chat.history_schema import SCHEMA_VERSION, has_fts, migrate
from kaihe_desktop.core.errors import HistoryError

__all__ = [
    "Conversation",
    "ConversationSummary",
    "HistoryStore",
    "Message",
    "ReplyWriter",
    "SearchHit",
]

Role = Literal["system", "user", "assistant"]
_ROLES = ("system", "user", "assistant")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _dumps(value: Mapping[str, Any] | None) -> str:
    try:
        return json.dumps(dict(value or {}), ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise HistoryError(f"settings/stats must be JSON-serialisable: {exc}") from exc


class HistoryStore:
    """The history database at ``path`` (default: paths.history_db()). Opens, checks and migrates it."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else paths.history_db()
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"cannot open the chat history {self.path}: {exc}") from exc
        try:
            self._conn.row_factory = sqlite3.Row
            version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise HistoryError(
                    f"the chat history {self.path} was written by a newer KAIHE (schema {version}, "
                    f"this one knows {SCHEMA_VERSION}); it was left untouched"
                )
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self.migrated_from = migrate(self._conn)
            self._fts = has_fts(self._conn)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise HistoryError(
                f"{self.path} is not a readable KAIHE chat history ({exc}); it was left untouched"
            ) from exc
        except BaseException:
            self._conn.close()
            raise

    # --- plumbing ------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    @property
    def full_text_search(self) -> bool:
        """True when search uses SQLite FTS5 (word search), False for the LIKE fallback (substring)."""
        return self._fts

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise HistoryError(f"cannot write the chat history {self.path}: {exc}") from exc
            try:
                yield self._conn
            except sqlite3.Error as exc:
                self._conn.execute("ROLLBACK")
                raise HistoryError(f"cannot write the chat history {self.path}: {exc}") from exc
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise HistoryError(f"cannot read the chat history {self.path}: {exc}") from exc

    # --- conversations -------------------------------------------------------------------------

    def create_conversation(
        self,
        *,
        title: str,
        model: str = "",
        settings: Mapping[str, Any] | None = None,
        system_prompt: str = "",
    ) -> int:
        now = _now()
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO conversations (title, model, settings, system_prompt, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (title, model, _dumps(settings), system_prompt, now, now),
            )
            return int(cur.lastrowid or 0)

    def update_conversation(
        self,
        conversation_id: int,
        *,
        title: str | None = None,
        model: str | None = None,
        settings: Mapping[str, Any] | None = None,
        system_prompt: str | None = None,
    ) -> None:
        changes: dict[str, Any] = {}
        if title is not None:
            changes["title"] = title
        if model is not None:
            changes["model"] = model
        if settings is not None:
            changes["settings"] = _dumps(settings)
        if system_prompt is not None:
            changes["system_prompt"] = system_prompt
        changes["updated_at"] = _now()
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._write() as conn:
            cur = conn.execute(
                f"UPDATE conversations SET {assignments} WHERE id = ?", (*changes.values(), conversation_id)
            )
            if cur.rowcount == 0:
                raise HistoryError(f"there is no conversation {conversation_id} in {self.path}")

    def rename(self, conversation_id: int, title: str) -> None:
        self.update_conversation(conversation_id, title=title)

    def delete(self, conversation_id: int) -> None:
        """Delete a conversation and its messages."""
        with self._write() as conn:
            cur = conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            if cur.rowcount == 0:
                raise HistoryError(f"there is no conversation {conversation_id} in {self.path}")

    def get_conversation(self, conversation_id: int) -> Conversation:
        with self._lock:
            rows = self._read("SELECT * FROM conversations WHERE id = ?", (conversation_id,))
            if not rows:
                raise HistoryError(f"there is no conversation {conversation_id} in {self.path}")
            messages = self._read(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            )
        row = rows[0]
        return Conversation(
            id=row["id"],
            title=row["title"],
            model=row["model"],
            settings=json.loads(row["settings"] or "{}"),
            system_prompt=row["system_prompt"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            messages=tuple(_message(m) for m in messages),
        )

    def list_conversations(self, *, limit: int = 100, offset: int = 0) -> list[ConversationSummary]:
        """Most recently updated first."""
        rows = self._read(
            "SELECT c.*, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS n"
            " FROM conversations c ORDER BY c.updated_at DESC, c.id DESC LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [
            ConversationSummary(
                id=r["id"],
                title=r["title"],
                model=r["model"],
                created_at=r["created_at"],
                updated_at=r["updated_at"],
                message_count=r["n"],
            )
            for r in rows
        ]

    # --- messages ------------------------------------------------------------------------------

    def add_message(
        self,
        conversation_id: int,
        *,
        role: str,
        content: str,
        reasoning: str = "",
        stats: Mapping[str, Any] | None = None,
        partial: bool = False,
        model: str | None = None,
    ) -> int:
        """Append a message. ``model`` defaults to the conversation's model."""
        if role not in _ROLES:
            raise HistoryError(f"unknown message role {role!r} (expected one of {', '.join(_ROLES)})")
        now = _now()
        with self._write() as conn:
            row = conn.execute("SELECT model FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if row is None:
                raise HistoryError(f"there is no conversation {conversation_id} in {self.path}")
            cur = conn.execute(
                "INSERT INTO messages (conversation_id, role, content, reasoning, stats, partial, model,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    role,
                    content,
                    reasoning,
                    _dumps(stats),
                    int(partial),
                    row["model"] if model is None else model,
                    now,
                    now,
                ),
            )
            conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
            return int(cur.lastrowid or 0)

    def update_message(
        self,
        message_id: int,
        *,
        content: str | None = None,
        reasoning: str | None = None,
        stats: Mapping[str, Any] | None = None,
        partial: bool | None = None,
    ) -> None:
        """Replace fields of a message (one small transaction: cheap enough to call while streaming)."""
        changes: dict[str, Any] = {}
        if content is not None:
            changes["content"] = content
        if reasoning is not None:
            changes["reasoning"] = reasoning
        if stats is not None:
            changes["stats"] = _dumps(stats)
        if partial is not None:
            changes["partial"] = int(partial)
        changes["updated_at"] = _now()
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._write() as conn:
            cur = conn.execute(
                f"UPDATE messages SET {assignments} WHERE id = ?", (*changes.values(), message_id)
            )
            if cur.rowcount == 0:
                raise HistoryError(f"there is no message {message_id} in {self.path}")

    def get_message(self, message_id: int) -> Message:
        rows = self._read("SELECT * FROM messages WHERE id = ?", (message_id,))
        if not rows:
            raise HistoryError(f"there is no message {message_id} in {self.path}")
        return _message(rows[0])

    def delete_message(self, message_id: int) -> None:
        """Remove one message (e.g. a reply the user regenerates)."""
        with self._write() as conn:
            cur = conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            if cur.rowcount == 0:
                raise HistoryError(f"there is no message {message_id} in {self.path}")

    def start_reply(
        self, conversation_id: int, *, model: str | None = None, flush_interval_s: float = 0.25
    ) -> ReplyWriter:
        """Add an empty assistant message marked partial, and a writer that saves it as it streams."""
        message_id = self.add_message(
            conversation_id, role="assistant", content="", partial=True, model=model
        )
        return ReplyWriter(self, message_id, flush_interval_s=flush_interval_s)

    # --- search and export ---------------------------------------------------------------------

    def search(self, text: str, *, limit: int = 50) -> list[SearchHit]:
        """Messages containing every word of ``text`` (FTS5 prefix match), newest first."""
        words = text.split()
        if not words:
            return []
        if self._fts:
            query = " ".join('"' + w.replace('"', '""') + '"*' for w in words)
            rows = self._read(
                "SELECT m.id, m.conversation_id, m.role, c.title,"
                " snippet(messages_fts, -1, '[', ']', '…', 12) AS snip"
                " FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid"
                " JOIN conversations c ON c.id = m.conversation_id"
                " WHERE messages_fts MATCH ? ORDER BY m.id DESC LIMIT ?",
                (query, limit),
            )
        else:
            clauses = " AND ".join(
                "(m.content LIKE ? ESCAPE '\\' OR m.reasoning LIKE ? ESCAPE '\\')" for _ in words
            )
            params: list[Any] = []
            for w in words:
                pattern = "%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                params += [pattern, pattern]
            rows = self._read(
                "SELECT m.id, m.conversation_id, m.role, c.title, substr(m.content, 1, 120) AS snip"
                f" FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE {clauses}"
                " ORDER BY m.id DESC LIMIT ?",
                (*params, limit),
            )
        return [
            SearchHit(
                conversation_id=r["conversation_id"],
                conversation_title=r["title"],
                message_id=r["id"],
                role=r["role"],
                snippet=r["snip"],
            )
            for r in rows
        ]

    def export_json(self, conversation_id: int) -> dict[str, Any]:
        return conversation_to_json(self.get_conversation(conversation_id))

    def export_markdown(self, conversation_id: int) -> str:
        return conversation_to_markdown(self.get_conversation(conversation_id))


def _message(row: sqlite3.Row) -> Message:
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        role=row["role"],
        content=row["content"],
        reasoning=row["reasoning"],
        stats=json.loads(row["stats"] or "{}"),
        partial=bool(row["partial"]),
        model=row["model"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class ReplyWriter:
    """Accumulates a streaming reply and commits it at most every flush_interval_s (and at the end).

    Not thread-safe itself: feed it from the one thread that receives the stream.
    """

    def __init__(
        self,
        store: HistoryStore,
        message_id: int,
        *,
        flush_interval_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.message_id = message_id
        self.flush_interval_s = flush_interval_s
        self._clock = clock
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._dirty = False
        self._last_flush = clock()

    @property
    def content(self) -> str:
        return "".join(self._content)

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    def append(self, text: str, *, kind: Literal["answer", "reasoning"] = "answer") -> None:
        if not text:
            return
        (self._reasoning if kind == "reasoning" else self._content).append(text)
        self._dirty = True
        if self._clock() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        if self._dirty:
            self.store.update_message(self.message_id, content=self.content, reasoning=self.reasoning)
            self._dirty = False
        self._last_flush = self._clock()

    def finish(self, *, stats: Mapping[str, Any] | None = None, partial: bool = False) -> None:
        """The final save: partial=True when the user stopped the reply or the engine died."""
        self.store.update_message(
            self.message_id, content=self.content, reasoning=self.reasoning, stats=stats, partial=partial
        )
        self._dirty = False
