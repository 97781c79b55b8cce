"""One Hub failure, one error: the tree listing, a header read (HTTP Range) and a download all hand what
huggingface_hub raised to ``http_errors.translate`` (or, after their retries, ``http_errors.gave_up``), so
each failure gives the same error type and the same reason, after each path's own lead: "listing the files
of OWNER/NAME" for the listing, "OWNER/NAME/FILE" for the header read and the download."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from kaihe_desktop.core.downloads.fetch import Downloader
from kaihe_desktop.core.errors import (
    DownloadError,
    GatedRepoError,
    HubBusyError,
    HubError,
    HubUnreachableError,
    InvalidTokenError,
    KaiheError,
    RepoNotFoundError,
)
from kaihe_desktop.core.gguf.meta import read_remote
from kaihe_desktop.core.hub.listing import list_repo_files
from kaihe_desktop.core.hub.retry import RetryPolicy
from kaihe_desktop.core.hub.variants import RepoFile, Variant
from tests.helpers.hub_server import HubServer

PUBLIC = "kaihe-same/Public-GGUF"
GATED = "kaihe-same/Gated-GGUF"
MISSING = "kaihe-same/Missing-GGUF"
FILE = "tiny-Q8_0.gguf"
QUICK = RetryPolicy(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.01)


@pytest.fixture
def variant(hub: HubServer, tiny_llama_path: Path) -> Variant:
    for repo_id in (GATED, PUBLIC):
        hub.add_repo(repo_id, {FILE: tiny_llama_path}, gated=repo_id == GATED, tags=("gguf",))
    data = tiny_llama_path.read_bytes()
    return Variant(quant="Q8_0", files=(RepoFile(FILE, len(data), hashlib.sha256(data).hexdigest()),))


def _three(
    repo_id: str,
    variant: Variant,
    tmp_path: Path,
    *,
    filename: str = FILE,
    revision: str = "main",
    token: str | bool | None = None,
) -> dict[str, KaiheError]:
    """The error each path raises for the same request."""
    asked = (
        Variant(quant=variant.quant, files=(RepoFile(filename, 1, None),)) if filename != FILE else variant
    )
    downloader = Downloader(
        models_dir=tmp_path / "models", token=token, max_retries=2, backoff_base_s=0.01, backoff_max_s=0.01
    )
    calls: dict[str, Callable[[], object]] = {
        "listing": lambda: list_repo_files(HfApi(token=token), repo_id, revision=revision, retry=QUICK),
        "header": lambda: read_remote(repo_id, filename, revision=revision, token=token, retry=QUICK),
        "download": lambda: downloader.download_variant(repo_id, asked, revision=revision),
    }
    if filename != FILE:
        del calls["listing"]  # a listing asks for no file: the repo's files are listed
    errors: dict[str, KaiheError] = {}
    for name, call in calls.items():
        with pytest.raises(KaiheError) as err:
            call()
        errors[name] = err.value
    return errors


def _lead(name: str, repo_id: str, filename: str = FILE) -> str:
    return f"listing the files of {repo_id}" if name == "listing" else f"{repo_id}/{filename}"


def _check(errors: dict[str, KaiheError], kind: type[KaiheError], reason: str, repo_id: str) -> None:
    for name, error in errors.items():
        assert type(error) is kind, (name, error)
        assert str(error).startswith(_lead(name, repo_id)), (name, str(error))
        assert reason in str(error), (name, str(error))


def test_a_missing_repo(variant: Variant, tmp_path: Path) -> None:
    errors = _three(MISSING, variant, tmp_path)
    reason = "was not found on the Hub: the repo does not exist, or it is private (HTTP 404)"
    _check(errors, RepoNotFoundError, reason, MISSING)
    assert (
        str(errors["header"])
        == str(errors["download"])
        == (
            f"{MISSING}/{FILE} was not found on the Hub: the repo does not exist, or it is private (HTTP 404)"
        )
    )
    assert str(errors["listing"]) == (
        f"listing the files of {MISSING}: {MISSING} was not found on the Hub: the repo does not exist, "
        "or it is private (HTTP 404)"
    )


def test_a_missing_file_and_a_missing_revision(variant: Variant, tmp_path: Path, hub: HubServer) -> None:
    errors = _three(PUBLIC, variant, tmp_path, filename="ghost-Q8_0.gguf")
    assert set(errors) == {"header", "download"}
    for error in errors.values():
        assert isinstance(error, RepoNotFoundError)
        assert str(error) == (
            f"{PUBLIC}/ghost-Q8_0.gguf was not found on the Hub: the file does not exist at revision main "
            "(HTTP 404)"
        )
    errors = _three(PUBLIC, variant, tmp_path, revision="v9")
    _check(
        errors,
        RepoNotFoundError,
        "was not found on the Hub: the revision v9 does not exist (HTTP 404)",
        PUBLIC,
    )
    assert hub.bytes_sent(PUBLIC, FILE) == 0


def test_an_invalid_token(variant: Variant, tmp_path: Path) -> None:
    errors = _three(PUBLIC, variant, tmp_path, token="not-a-token")
    _check(
        errors,
        InvalidTokenError,
        ": the Hugging Face token in use is invalid: the Hub rejects it (HTTP 401)",
        PUBLIC,
    )


def test_a_gated_repo_without_a_token_and_with_one_without_access(
    variant: Variant, tmp_path: Path, hub: HubServer
) -> None:
    errors = _three(GATED, variant, tmp_path, token=False)
    _check(
        errors,
        GatedRepoError,
        f": the repo is gated; accept the licence at {hub.url}/{GATED} and log in "
        "(`hf auth login`, or set HF_TOKEN) (HTTP 401)",
        GATED,
    )
    errors = _three(GATED, variant, tmp_path, token="hf_no_access")
    _check(
        errors,
        GatedRepoError,
        f": the repo is gated and the Hugging Face token in use has no access to it; request access at "
        f"{hub.url}/{GATED} (HTTP 403)",
        GATED,
    )
    assert hub.bytes_sent(GATED) == 0


def test_a_hub_that_stays_rate_limited(variant: Variant, tmp_path: Path, hub: HubServer) -> None:
    """Listing, header read and download each retry a 429 in the same loop and give up with one error."""
    hub.inject(PUBLIC, None, status=429, times=1000, retry_after=0)  # every request about the repo
    errors = _three(PUBLIC, variant, tmp_path)
    _check(errors, HubBusyError, ": failed after 3 attempts: HTTP 429 (for ", PUBLIC)
    assert all("s); try again later" in str(e) for e in errors.values())
    assert str(errors["download"]).endswith("; the partial file is kept")
    assert all(isinstance(e, HubError) and isinstance(e, DownloadError) for e in errors.values())
    assert [r.status for r in hub.requests(PUBLIC)] == [429] * 9  # 3 tries each, none hidden


def test_offline_mode(
    variant: Variant, tmp_path: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    errors = _three(PUBLIC, variant, tmp_path)
    for name, error in errors.items():
        assert type(error) is HubUnreachableError, name
        lead = PUBLIC if name == "download" else _lead(name, PUBLIC)  # a download checks once, for the repo
        assert str(error).startswith(f"{lead}: offline mode is on (HF_HUB_OFFLINE)"), str(error)
    assert hub.requests(PUBLIC) == []
