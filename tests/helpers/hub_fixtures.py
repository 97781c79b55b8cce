"""pytest plugin: ONE test Hub server for the session, started at import so HF_ENDPOINT is set before
huggingface_hub is imported anywhere (it reads the variable once, at import).

Fixtures:
  hub_server  (session)  the HubServer; repos added through it stay for the whole session.
  hub         (function) the same server; after the test its faults, byte counters and the repos the test
                         added are cleared. Use unique repo ids per test.
  hub_starter_repo (session) the real starter model served as STARTER_REPO_ID; returns the repo id.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.hub_server import DEFAULT_TOKEN, HubServer

SESSION_HUB = HubServer().start()
atexit.register(SESSION_HUB.stop)
os.environ["HF_ENDPOINT"] = SESSION_HUB.url
HUB_TOKEN = DEFAULT_TOKEN


@pytest.fixture(scope="session")
def hub_server() -> HubServer:
    return SESSION_HUB


@pytest.fixture
def hub(hub_server: HubServer) -> Iterator[HubServer]:
    before = set(hub_server.repo_ids())
    hub_server.reset()
    yield hub_server
    hub_server.reset()
    for repo_id in set(hub_server.repo_ids()) - before:
        hub_server.remove_repo(repo_id)


@pytest.fixture(scope="session")
def hub_starter_repo(hub_server: HubServer, starter_model_path: Path) -> str:
    from kaihe_desktop.core.starter import STARTER_REPO_ID

    hub_server.add_repo(
        STARTER_REPO_ID,
        {starter_model_path.name: starter_model_path, "README.md": b"# Gemma 3 270M GGUF\n"},
        license="gemma",
        tags=("gguf", "text-generation"),
        downloads=100_000,
        likes=500,
        pipeline_tag="text-generation",
        base_model="google/gemma-3-270m",
    )
    return STARTER_REPO_ID
