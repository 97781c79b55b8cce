"""The token cases, said the same way by every caller of the Hub: downloads, header reads (Range),
listings and the catalog. The local Hub answers like the real one: 401 to every request carrying a
token that is no Hugging Face token, 403 to a valid token without access to a gated repo."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants

from kaihe_desktop.core.downloads.fetch import Downloader
from kaihe_desktop.core.errors import GatedRepoError, HubError, InvalidTokenError
from kaihe_desktop.core.gguf.meta import read_remote
from kaihe_desktop.core.hub.catalog import Catalog
from kaihe_desktop.core.hub.http_errors import token_source
from kaihe_desktop.core.hub.listing import list_repo_files
from kaihe_desktop.core.hub.listing_cache import ListingCache
from kaihe_desktop.core.hub.variants import RepoFile, Variant
from kaihe_desktop.core.machine.profiles import resolve_profile
from tests.helpers.hub_server import HubServer

GATED = "kaihe-tok/Gated-GGUF"
PUBLIC = "kaihe-tok/Public-GGUF"
FILE = "tiny-Q8_0.gguf"


@pytest.fixture
def repos(hub: HubServer, tiny_llama_path: Path) -> Variant:
    for repo_id in (GATED, PUBLIC):
        hub.add_repo(repo_id, {FILE: tiny_llama_path}, gated=repo_id == GATED, tags=("gguf",))
    data = tiny_llama_path.read_bytes()
    return Variant(quant="Q8_0", files=(RepoFile(FILE, len(data), hashlib.sha256(data).hexdigest()),))


@pytest.fixture
def login_file() -> Iterator[Callable[[str], None]]:
    """Write the token file `hf auth login` leaves (in the session's HF_HOME); removed afterwards."""
    path = Path(constants.HF_TOKEN_PATH)

    def write(token: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(token)

    yield write
    path.unlink(missing_ok=True)


def _refusals(repo_id: str, variant: Variant, tmp_path: Path) -> dict[str, HubError]:
    """The error each caller raises for ``repo_id`` with the token the environment holds."""
    calls: dict[str, Callable[[], object]] = {
        "download": lambda: Downloader(models_dir=tmp_path / "models").download_variant(repo_id, variant),
        "header": lambda: read_remote(repo_id, FILE),
        "listing": lambda: list_repo_files(HfApi(), repo_id),
    }
    errors: dict[str, HubError] = {}
    for name, call in calls.items():
        with pytest.raises(HubError) as err:
            call()
        errors[name] = err.value
    return errors


def _leads(repo_id: str) -> dict[str, str]:
    return {
        "download": f"{repo_id}/{FILE}",
        "header": f"{repo_id}/{FILE}",
        "listing": f"listing the files of {repo_id}",
    }


def test_a_valid_token_without_access_says_where_to_ask(
    hub: HubServer, repos: Variant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    errors = _refusals(GATED, repos, tmp_path)
    for name, lead in _leads(GATED).items():
        assert isinstance(errors[name], GatedRepoError), name
        assert str(errors[name]) == (
            f"{lead}: the repo is gated and the token in HF_TOKEN has no access to it; "
            f"request access at {hub.url}/{GATED} (HTTP 403)"
        )
    assert hub.bytes_sent(GATED) == 0


@pytest.mark.parametrize("repo_id", [PUBLIC, GATED])
def test_a_token_that_is_no_hugging_face_token_is_called_invalid(
    repo_id: str, repos: Variant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "not-a-token")
    errors = _refusals(repo_id, repos, tmp_path)
    for name, lead in _leads(repo_id).items():
        assert isinstance(errors[name], InvalidTokenError), name
        assert str(errors[name]) == (
            f"{lead}: HF_TOKEN is invalid: the Hub rejects it (HTTP 401); set it to a valid token or unset it"
        )


def test_the_login_token_is_named_as_such(
    hub: HubServer, repos: Variant, tmp_path: Path, login_file: Callable[[str], None]
) -> None:
    login_file("not-a-token")
    assert token_source() == "login"
    errors = _refusals(PUBLIC, repos, tmp_path)
    for name, lead in _leads(PUBLIC).items():
        assert str(errors[name]) == (
            f"{lead}: the token saved by `hf auth login` is invalid: the Hub rejects it (HTTP 401); "
            "log in again"
        )
    login_file("hf_wrong")
    for name, error in _refusals(GATED, repos, tmp_path / "again").items():
        assert str(error) == (
            f"{_leads(GATED)[name]}: the repo is gated and the account logged in with `hf auth login` has "
            f"no access to it; request access at {hub.url}/{GATED} (HTTP 403)"
        )


def test_the_catalog_says_it_too(repos: Variant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    catalog = Catalog(machine=resolve_profile("laptop-8gb"), cache=ListingCache(tmp_path), timeout_s=10)
    repos_found = {r.repo_id: r for r in catalog.search("kaihe-tok", refresh=True).repos}
    assert repos_found[PUBLIC].fits
    gated_error = repos_found[GATED].error or ""
    assert "the token in HF_TOKEN has no access to it; request access at" in gated_error
    monkeypatch.setenv("HF_TOKEN", "not-a-token")
    with pytest.raises(InvalidTokenError) as err:
        catalog.search("kaihe-tok", refresh=True)
    assert str(err.value) == (
        "searching the Hub for 'kaihe-tok': HF_TOKEN is invalid: the Hub rejects it (HTTP 401); "
        "set it to a valid token or unset it"
    )


def test_token_source(monkeypatch: pytest.MonkeyPatch) -> None:
    assert token_source() is None and token_source(False) is None
    monkeypatch.setenv("HF_TOKEN", "hf_a")
    assert token_source() == "HF_TOKEN" and token_source("hf_a") == "HF_TOKEN"
    assert token_source("hf_other") == "given" and token_source(False) is None
