"""History survives a writer SIGKILLed mid-reply: the file stays consistent, at most a moment is lost."""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from kaihe_desktop.core.chat.history import HistoryStore

KILLS = 20
MAX_LOST_S = 1.0  # the bound; the writer flushes every 0.25 s

# Streams a reply token by token through ReplyWriter, the way the chat engine will, printing each token's
# time. "ready" comes once the first save is done, so every kill lands in a reply with saved text.
WRITER = r"""
import sys, time
from pathlib import Path
from kaihe_desktop.core.chat.history import HistoryStore

store = HistoryStore(Path(sys.argv[1]))
cid = store.create_conversation(title="kill " + sys.argv[2], model="tiny", settings={"seed": 1})
store.add_message(cid, role="user", content="Tell me a long story. " * 50)
writer = store.start_reply(cid, flush_interval_s=0.25)
print("start", cid, writer.message_id, flush=True)
started = time.monotonic()
announced = False
i = 0
while True:
    writer.append("<%d>" % i, kind="reasoning" if i % 7 == 0 else "answer")
    print(i, "%.6f" % time.monotonic(), flush=True)
    if not announced and time.monotonic() - started > 0.3:  # the first save (at 0.25 s) is behind us
        print("ready", flush=True)
        announced = True
    i += 1
    time.sleep(0.002)
"""

TOKEN = re.compile(r"<(\d+)>")


def _tokens(text: str) -> list[int]:
    return [int(n) for n in TOKEN.findall(text)]


def test_sigkill_of_the_writer_twenty_times(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    rng = random.Random(os.getpid())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    killed_replies: dict[int, int] = {}  # message id -> tokens saved when its writer was killed
    for round_no in range(KILLS):
        delay = rng.uniform(0.05, 0.4)
        errors = tmp_path / f"writer-{round_no}.err"
        with errors.open("w") as err_file:
            proc = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(db), str(round_no)],
                stdout=subprocess.PIPE,
                stderr=err_file,
                text=True,
                env=env,
            )
        assert proc.stdout is not None
        start = proc.stdout.readline().split()
        assert start[:1] == ["start"], errors.read_text()
        cid, mid = int(start[1]), int(start[2])
        lines = []
        while (line := proc.stdout.readline()) and line.strip() != "ready":
            lines.append(line)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        out = "".join(lines) + proc.stdout.read()  # the same buffered reader: nothing it holds is lost
        proc.stdout.close()
        assert proc.wait(timeout=30) == -signal.SIGKILL
        produced = {int(i): float(t) for i, t in (line.split() for line in out.splitlines() if line.strip())}

        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"round {round_no}"
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            conn.close()

        with HistoryStore(db) as store:
            conv = store.get_conversation(cid)
            reply = conv.messages[-1]
            assert reply.id == mid and reply.partial  # never finished: stays marked partial
            saved = sorted(_tokens(reply.content) + _tokens(reply.reasoning))
            assert saved == list(range(len(saved))), f"round {round_no}: saved tokens are not a clean prefix"
            assert len(saved) <= len(produced)
            if len(saved) < len(produced):
                first_lost = produced[len(saved)]
                last_made = produced[len(produced) - 1]
                assert last_made - first_lost <= MAX_LOST_S, (
                    f"round {round_no}: lost {last_made - first_lost:.3f} s"
                )
            killed_replies[mid] = len(saved)

    with HistoryStore(db) as store:  # every earlier round is still there, unchanged
        conversations = store.list_conversations(limit=100)
        assert len(conversations) == KILLS
        for summary in conversations:
            reply = store.get_conversation(summary.id).messages[-1]
            assert len(_tokens(reply.content) + _tokens(reply.reasoning)) == killed_replies[reply.id]
    assert all(n > 0 for n in killed_replies.values())  # every kill hit a reply in the middle of streaming
