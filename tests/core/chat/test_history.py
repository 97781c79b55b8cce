"""Chat history store: CRUD, streaming writes, search, export, migrations from v1, bad files."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from kaihe_desktop.core import paths
from kaihe_desktop.core.chat.history import HistoryStore, ReplyWriter
from kaihe_desktop.core.chat.history_schema import SCHEMA_VERSION
from kaihe_desktop.core.errors import HistoryError


@pytest.fixture
def store(tmp_path: Path) -> HistoryStore:
    s = HistoryStore(tmp_path / "history.sqlite3")
    yield s  # type: ignore[misc]
    s.close()


def _conversation(store: HistoryStore) -> int:
    cid = store.create_conversation(
        title="Sea poems",
        model="gemma-3-270m Q4_K_M",
        settings={"temperature": 0.7, "top_p": 0.95},
        system_prompt="You write short poems.",
    )
    store.add_message(cid, role="user", content="Write about the sea")
    store.add_message(
        cid,
        role="assistant",
        content="Waves fold the light.",
        reasoning="A haiku fits.",
        stats={"prompt_tokens": 12, "completion_tokens": 6, "stop_reason": "stop"},
    )
    return cid


def test_default_location_is_the_app_data_folder(kaihe_home: Path) -> None:
    with HistoryStore() as s:
        assert s.path == paths.history_db() == kaihe_home / "history.sqlite3"
        assert s.path.exists()


def test_round_trip_of_a_conversation(store: HistoryStore) -> None:
    cid = _conversation(store)
    conv = store.get_conversation(cid)
    assert (conv.title, conv.model, conv.system_prompt) == (
        "Sea poems",
        "gemma-3-270m Q4_K_M",
        "You write short poems.",
    )
    assert conv.settings == {"temperature": 0.7, "top_p": 0.95}
    assert [m.role for m in conv.messages] == ["user", "assistant"]
    reply = conv.messages[1]
    assert (reply.content, reply.reasoning, reply.partial) == (
        "Waves fold the light.",
        "A haiku fits.",
        False,
    )
    assert reply.stats == {"prompt_tokens": 12, "completion_tokens": 6, "stop_reason": "stop"}
    assert reply.model == "gemma-3-270m Q4_K_M"  # defaults to the conversation's model
    assert reply.created_at <= reply.updated_at and conv.created_at <= conv.updated_at


def test_the_store_uses_wal(store: HistoryStore) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert store.schema_version == SCHEMA_VERSION


def test_update_message_while_streaming(store: HistoryStore) -> None:
    cid = _conversation(store)
    mid = store.add_message(cid, role="assistant", content="", partial=True)
    text = ""
    for word in ["The", " tide", " returns"]:
        text += word
        store.update_message(mid, content=text)
        assert store.get_conversation(cid).messages[-1].content == text
    store.update_message(mid, stats={"stop_reason": "user"}, partial=True)
    last = store.get_conversation(cid).messages[-1]
    assert (last.content, last.partial, last.stats) == ("The tide returns", True, {"stop_reason": "user"})


def test_reply_writer_saves_on_an_interval_and_at_the_end(store: HistoryStore) -> None:
    cid = _conversation(store)
    now = [0.0]
    mid = store.add_message(cid, role="assistant", content="", partial=True)
    writer = ReplyWriter(store, mid, flush_interval_s=0.25, clock=lambda: now[0])

    def saved() -> tuple[str, str, bool]:
        m = store.get_conversation(cid).messages[-1]
        return m.reasoning, m.content, m.partial

    writer.append("Think", kind="reasoning")
    writer.append("Hel")
    assert saved() == ("", "", True)  # within the interval: not written yet
    now[0] = 0.3
    writer.append("lo")
    assert saved() == ("Think", "Hello", True)
    writer.append(" there")
    writer.finish(stats={"completion_tokens": 3})
    assert saved() == ("Think", "Hello there", False)
    assert store.get_conversation(cid).messages[-1].stats == {"completion_tokens": 3}


def test_start_reply_marks_it_partial_until_finished(store: HistoryStore) -> None:
    cid = _conversation(store)
    writer = store.start_reply(cid, model="other-model")
    writer.append("Half a")
    writer.flush()
    m = store.get_conversation(cid).messages[-1]
    assert (m.role, m.content, m.partial, m.model) == ("assistant", "Half a", True, "other-model")
    writer.finish(partial=True)  # stopped by the user
    assert store.get_conversation(cid).messages[-1].partial


def test_list_rename_delete(store: HistoryStore) -> None:
    first = _conversation(store)
    second = store.create_conversation(title="Empty", model="m")
    listed = store.list_conversations(limit=10, offset=0)
    assert [c.id for c in listed] == [second, first]  # newest first
    assert [c.message_count for c in listed] == [0, 2]
    assert [c.id for c in store.list_conversations(limit=1, offset=1)] == [first]
    store.rename(first, "Ocean poems")
    assert store.get_conversation(first).title == "Ocean poems"
    assert store.list_conversations(limit=10)[0].id == first  # renaming touches updated_at
    store.delete(first)
    with pytest.raises(HistoryError, match=f"no conversation {first}"):
        store.get_conversation(first)
    conn = sqlite3.connect(store.path)
    try:
        assert (
            conn.execute("SELECT COUNT(*) FROM messages WHERE conversation_id = ?", (first,)).fetchone()[0]
            == 0
        )
    finally:
        conn.close()
    with pytest.raises(HistoryError, match="no conversation"):
        store.delete(first)


def test_bad_arguments_are_clear_errors(store: HistoryStore) -> None:
    with pytest.raises(HistoryError, match="no conversation 999"):
        store.add_message(999, role="user", content="x")
    cid = store.create_conversation(title="t")
    with pytest.raises(HistoryError, match="unknown message role 'robot'"):
        store.add_message(cid, role="robot", content="x")
    with pytest.raises(HistoryError, match="no message 12345"):
        store.update_message(12345, content="x")
    with pytest.raises(HistoryError, match="JSON"):
        store.create_conversation(title="t", settings={"bad": object()})


def test_search_finds_words_in_content_and_reasoning(store: HistoryStore) -> None:
    cid = _conversation(store)
    other = store.create_conversation(title="Cooking")
    store.add_message(other, role="user", content="How long do I boil an egg?")
    assert store.full_text_search  # this SQLite has FTS5
    hits = store.search("waves")
    assert [(h.conversation_id, h.role, h.conversation_title) for h in hits] == [
        (cid, "assistant", "Sea poems")
    ]
    assert "[Waves]" in hits[0].snippet
    assert [h.conversation_id for h in store.search("haiku")] == [cid]  # reasoning is searched too
    assert [h.conversation_id for h in store.search("boil egg")] == [other]  # all words, any order
    assert store.search("egg sea") == []
    assert [h.conversation_id for h in store.search("bo")] == [other]  # prefix match
    for hostile in ['"', "AND OR NOT", "egg*)", "NEAR(", "'; DROP TABLE messages; --", "%", "_"]:
        store.search(hostile)  # FTS syntax in user text is quoted, never an error
    assert len(store.get_conversation(cid).messages) == 2


def test_search_sees_streamed_updates_and_deletions(store: HistoryStore) -> None:
    cid = _conversation(store)
    mid = store.add_message(cid, role="assistant", content="draft", partial=True)
    store.update_message(mid, content="lighthouse keeper")
    assert [h.message_id for h in store.search("lighthouse")] == [mid]
    assert store.search("draft") == []
    store.delete(cid)
    assert store.search("lighthouse") == []


def test_exports(store: HistoryStore) -> None:
    cid = _conversation(store)
    writer = store.start_reply(cid)
    writer.append("Unfinished")
    writer.finish(partial=True)
    data = store.export_json(cid)
    assert json.loads(json.dumps(data)) == data
    assert data["title"] == "Sea poems" and data["settings"] == {"temperature": 0.7, "top_p": 0.95}
    assert [m["content"] for m in data["messages"]] == [
        "Write about the sea",
        "Waves fold the light.",
        "Unfinished",
    ]
    assert data["messages"][1]["stats"]["stop_reason"] == "stop"
    assert data["messages"][2]["partial"] is True
    md = store.export_markdown(cid)
    assert md.startswith("# Sea poems\n")
    assert "- Model: gemma-3-270m Q4_K_M" in md
    assert "## System\n\nYou write short poems." in md
    assert "## You\n\nWrite about the sea" in md
    assert "<details><summary>Reasoning</summary>\n\nA haiku fits.\n\n</details>" in md
    assert "## Assistant (incomplete)\n\nUnfinished" in md


def test_concurrent_writers_from_threads(store: HistoryStore) -> None:
    cid = store.create_conversation(title="threads")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                mid = store.add_message(cid, role="user", content=f"{n}-{i}")
                store.update_message(mid, content=f"{n}-{i}!")
                store.get_conversation(cid)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    contents = sorted(m.content for m in store.get_conversation(cid).messages)
    assert contents == sorted(f"{n}-{i}!" for n in range(4) for i in range(50))


def test_two_stores_on_one_file_see_each_other(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    with HistoryStore(path) as a, HistoryStore(path) as b:
        cid = a.create_conversation(title="shared")
        b.add_message(cid, role="user", content="from b")
        assert a.get_conversation(cid).messages[0].content == "from b"


# --- migrations ---------------------------------------------------------------------------------

V1_SCHEMA = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY, title TEXT NOT NULL, model TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL, content TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
INSERT INTO conversations VALUES (1, 'Old chat', 'llama-2-7b Q4_0', '2024-01-02T10:00:00.000+00:00',
                                  '2024-01-02T10:05:00.000+00:00');
INSERT INTO conversations VALUES (2, 'Second', '', '2024-01-03T09:00:00.000+00:00',
                                  '2024-01-03T09:00:00.000+00:00');
INSERT INTO messages VALUES (1, 1, 'user', 'What is a lighthouse?', '2024-01-02T10:00:00.000+00:00');
INSERT INTO messages VALUES (2, 1, 'assistant', 'A tower with a light.', '2024-01-02T10:00:05.000+00:00');
INSERT INTO messages VALUES (3, 2, 'user', 'Hello', '2024-01-03T09:00:00.000+00:00');
PRAGMA user_version = 1;
"""


def _write_v1(path: Path) -> None:
    conn = sqlite3.connect(path)  # a rollback-journal file, as v1 may have been
    conn.executescript(V1_SCHEMA)
    conn.commit()
    conn.close()


def test_migration_from_version_1_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    _write_v1(path)
    with HistoryStore(path) as s:
        assert s.migrated_from == 1
        assert s.schema_version == SCHEMA_VERSION
        old = s.get_conversation(1)
        assert (old.title, old.model, old.settings, old.system_prompt) == (
            "Old chat",
            "llama-2-7b Q4_0",
            {},
            "",
        )
        assert old.created_at == "2024-01-02T10:00:00.000+00:00"
        assert [(m.role, m.content) for m in old.messages] == [
            ("user", "What is a lighthouse?"),
            ("assistant", "A tower with a light."),
        ]
        reply = old.messages[1]
        assert (reply.reasoning, reply.stats, reply.partial) == ("", {}, False)
        assert reply.updated_at == reply.created_at == "2024-01-02T10:00:05.000+00:00"
        assert [c.id for c in s.list_conversations(limit=10)] == [2, 1]
        assert [h.message_id for h in s.search("lighthouse")] == [1]  # old messages are indexed
        # the upgraded file takes new-style writes
        mid = s.add_message(1, role="assistant", content="More", reasoning="r", stats={"x": 1}, partial=True)
        assert s.get_conversation(1).messages[-1].id == mid
        integrity = sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0]
        assert integrity == "ok"
    with HistoryStore(path) as again:  # reopening does not migrate twice
        assert again.migrated_from == SCHEMA_VERSION
        assert len(again.get_conversation(1).messages) == 3


def test_a_fresh_store_is_built_through_every_migration(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "new.sqlite3") as s:
        assert s.migrated_from == 0
        assert s.schema_version == SCHEMA_VERSION


def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE x (y)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(HistoryError, match=r"written by a newer KAIHE .*left untouched"):
        HistoryStore(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "garbage",
    [b"this is not a database at all\n" * 100, b"SQLite format 3\x00" + bytes(range(256)) * 20],
    ids=["text", "bad-header"],
)
def test_a_file_that_is_not_a_database_is_reported_and_kept(tmp_path: Path, garbage: bytes) -> None:
    path = tmp_path / "history.sqlite3"
    path.write_bytes(garbage)
    with pytest.raises(HistoryError) as caught:
        HistoryStore(path)
    assert str(path) in str(caught.value) and "left untouched" in str(caught.value)
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.sqlite3"]


def test_an_unreachable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HistoryError, match="cannot open the chat history"):
        HistoryStore(blocker / "history.sqlite3")


def test_search_without_fts5_falls_back_to_escaped_like(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some SQLite builds lack FTS5 (it is present here, so its absence is simulated at the probe).
    from kaihe_desktop.core.chat import history_schema

    monkeypatch.setattr(history_schema, "fts5_available", lambda conn: False)
    with HistoryStore(tmp_path / "nofts.sqlite3") as s:
        assert not s.full_text_search
        assert s.schema_version == SCHEMA_VERSION
        cid = _conversation(s)
        s.add_message(cid, role="user", content="100% sure, snake_case please")
        assert [h.role for h in s.search("waves")] == ["assistant"]
        assert [h.role for h in s.search("haiku")] == ["assistant"]  # reasoning too
        assert [h.snippet for h in s.search("100%")] == ["100% sure, snake_case please"]
        assert s.search("1000%") == [] and s.search("snake%case") == []  # % and _ are literal
        s.add_message(cid, role="user", content="snakeXcase")
        assert [h.snippet for h in s.search("snake_case")] == ["100% sure, snake_case please"]


def test_update_conversation_and_messages_one_by_one(store: HistoryStore) -> None:
    cid = _conversation(store)
    store.update_conversation(
        cid, model="qwen3-4b Q4_K_M", settings={"temperature": 0.2}, system_prompt="Be brief."
    )
    conv = store.get_conversation(cid)
    assert (conv.model, conv.settings, conv.system_prompt) == (
        "qwen3-4b Q4_K_M",
        {"temperature": 0.2},
        "Be brief.",
    )
    assert conv.title == "Sea poems"  # untouched fields stay
    reply = conv.messages[-1]
    assert store.get_message(reply.id) == reply
    store.delete_message(reply.id)
    assert [m.role for m in store.get_conversation(cid).messages] == ["user"]
    assert store.search("waves") == []
    with pytest.raises(HistoryError, match=f"no message {reply.id}"):
        store.get_message(reply.id)
    with pytest.raises(HistoryError, match=f"no message {reply.id}"):
        store.delete_message(reply.id)
