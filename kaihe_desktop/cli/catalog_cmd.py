"""`kaihe search QUERY` and `kaihe recommend`: what the Hub offers, and what fits this machine."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kaihe_desktop.cli.common import (
    add_json_arg,
    add_profile_arg,
    emit_json,
    human_bytes,
    machine_from_args,
    render_table,
)
from kaihe_desktop.core.errors import KaiheError
from kaihe_desktop.core.hub.catalog import DEFAULT_TIMEOUT_S, Catalog, CatalogRepo, SearchFilter, SearchResult
from kaihe_desktop.core.hub.listing import SORTS
from kaihe_desktop.core.hub.recommend import Recommendation, RecommendationSet, recommend
from kaihe_desktop.core.hub.recommend_data import load_recommendations


def register(subparsers: Any) -> None:
    search = subparsers.add_parser(
        "search",
        help="search the Hub for GGUF models, with what fits this machine",
        description=(
            "Search the Hugging Face Hub for GGUF models. Every repo shows its quant variants, the one the "
            "picker chooses for this machine (or a --profile), where it would run and how much memory stays "
            "free. Works offline from the cached listing."
        ),
    )
    search.add_argument("query", metavar="QUERY", help="words in the repo name, e.g. 'qwen3 8b'")
    search.add_argument("--fits", action="store_true", help="only models that fit this machine")
    search.add_argument(
        "--license", choices=("commercial", "any"), default="any", help="'commercial': MIT/Apache-style only"
    )
    use_cases = [c.id for c in load_recommendations().use_cases]
    search.add_argument("--use-case", choices=use_cases, help="only models for this use case")
    search.add_argument("--min-params", type=float, metavar="B", help="at least B billion parameters")
    search.add_argument("--max-params", type=float, metavar="B", help="at most B billion parameters")
    search.add_argument(
        "--sort", choices=tuple(SORTS), default="downloads", help="order (default: downloads)"
    )
    search.add_argument("--limit", type=_positive_int, default=20, metavar="N", help="repos per page")
    search.add_argument("--page", type=_positive_int, default=1, metavar="N", help="page number (from 1)")
    search.add_argument("--refresh", action="store_true", help="ask the Hub even if the cache is fresh")
    _add_timeout(search)
    add_json_arg(search)
    add_profile_arg(search)
    search.set_defaults(handler=run_search)

    rec = subparsers.add_parser(
        "recommend",
        help="the best model per use case for this machine",
        description=(
            "For each use case (or one), the best curated model that fits this machine with the safety "
            "margin: repo, quant, why, and how much memory stays free; plus the first-run pick. Checked "
            "against the Hub when it can be reached, marked as estimates when not."
        ),
    )
    rec.add_argument("--use-case", choices=use_cases, help="only this use case")
    rec.add_argument("--offline", action="store_true", help="do not ask the Hub (estimates only)")
    _add_timeout(rec)
    add_json_arg(rec)
    add_profile_arg(rec)
    rec.set_defaults(handler=run_recommend)


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"give up on the Hub after S seconds and use the cache (default: {DEFAULT_TIMEOUT_S:g})",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


# --- search ---------------------------------------------------------------------------------------------


def _quiet_hub_logs() -> None:
    """huggingface_hub logs each retry as a warning; the command reports the outcome in one line."""
    from huggingface_hub.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def run_search(args: argparse.Namespace) -> int:
    _quiet_hub_logs()
    if args.timeout <= 0:
        raise KaiheError("--timeout must be more than 0 seconds")
    machine = machine_from_args(args)
    catalog = Catalog(machine=machine, timeout_s=args.timeout)
    filters = SearchFilter(
        fits_only=args.fits,
        commercial_only=args.license == "commercial",
        use_case=args.use_case,
        min_params_b=args.min_params,
        max_params_b=args.max_params,
    )
    result = catalog.search(
        args.query, sort=args.sort, limit=args.limit, page=args.page, filters=filters, refresh=args.refresh
    )
    if args.json:
        if result.notice:
            print(f"kaihe: {result.notice}", file=sys.stderr)
        emit_json(result.to_list())
        return 0
    print(render_search(result))
    return 0


def _params(repo: CatalogRepo) -> str:
    count = repo.parameter_count
    if count is None:
        return "-"
    return f"{count / 1e9:.1f}B" if count >= 1e8 else f"{count / 1e6:.1f}M"


def render_search(result: SearchResult) -> str:
    lines: list[str] = []
    if result.notice:
        lines.append(result.notice.upper()[:7] + result.notice[7:] if result.offline else result.notice)
    if result.local_models:
        installed = ", ".join(
            f"{m.name} ({m.quant or '?'}, {human_bytes(m.size_bytes)})" for m in result.local_models
        )
        lines.append(f"Installed and matching: {installed}")
    if not result.repos:
        lines.append(f"No GGUF repos match {result.query!r}.")
        return "\n".join(lines)
    rows = []
    for repo in result.repos:
        chosen = repo.pick
        picked = next((v for v in repo.variants if chosen and v.variant.quant == chosen.quant), None)
        rows.append(
            [
                repo.repo_id,
                _params(repo),
                f"{repo.hub.license.license_id or '?'} ({repo.hub.license.commercial_use})",
                f"{repo.hub.downloads:,}",
                chosen.quant if chosen and chosen.fits else "-",
                str(chosen.plan.placement) if chosen else repo.unread_placement,
                f"{chosen.plan.headroom_pct:.0f}%" if chosen and chosen.fits else "-",
                human_bytes(picked.variant.size_bytes) if picked else "-",
                ",".join(v.variant.quant for v in repo.variants) or "-",
            ]
        )
    headers = ["REPO", "PARAMS", "LICENCE (COMMERCIAL)", "DOWNLOADS", "PICK", "FIT", "FREE", "SIZE", "QUANTS"]
    lines.append(render_table(headers, rows))
    notes = []
    for repo in result.repos:
        if repo.error:
            notes.append(f"  {repo.repo_id}: {repo.error}")
        elif repo.pick is not None:
            notes.append(f"  {repo.repo_id}: {repo.pick.reason}")
        if repo.hub.gated:
            notes.append(f"  {repo.repo_id}: gated: accept its licence on the Hub and log in to download")
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines)


# --- recommend ------------------------------------------------------------------------------------------


def run_recommend(args: argparse.Namespace) -> int:
    _quiet_hub_logs()
    if args.timeout <= 0:
        raise KaiheError("--timeout must be more than 0 seconds")
    machine = machine_from_args(args)
    catalog = None if args.offline else Catalog(machine=machine, timeout_s=args.timeout)
    result = recommend(machine, catalog=catalog, use_case=args.use_case)
    if args.json:
        if result.notice:
            print(f"kaihe: {result.notice}", file=sys.stderr)
        items = result.to_list()
        if result.first_run is not None and args.use_case is None:
            items.append({**result.first_run.to_dict(), "use_case": "first-run"})
        emit_json(items)
        return 0
    print(render_recommendations(result, show_first_run=args.use_case is None))
    return 0


def _size(rec: Recommendation) -> str:
    return human_bytes(rec.size_bytes) if rec.size_bytes else "-"


def render_recommendations(result: RecommendationSet, *, show_first_run: bool = True) -> str:
    lines: list[str] = []
    if result.notice:
        lines.append(result.notice)
    rows = [
        [
            r.title,
            r.repo_id or "(nothing fits)",
            r.quant or "-",
            _size(r),
            r.placement,
            f"{r.headroom_pct:.0f}%" if r.headroom_pct is not None else "-",
            "yes" if r.checked_on_hub else "no",
        ]
        for r in result.items
    ]
    headers = ["USE CASE", "MODEL", "QUANT", "SIZE", "FIT", "FREE", "CHECKED ON HUB"]
    lines.append(render_table(headers, rows))
    lines.append("")
    for r in result.items:
        lines.append(f"  {r.title}: {r.reason}" + (f" ({r.note})" if r.note else ""))
    first = result.first_run
    if show_first_run and first is not None and first.repo_id is not None:
        lines.append("")
        lines.append(
            f"First-run pick: {first.repo_id} {first.quant} ({_size(first)}, {first.headroom_pct:.0f}% free)"
            f" -> kaihe pull {first.repo_id}:{first.quant}"
        )
    lines.append(f"(recommendations data v{result.data_version}, {result.data_updated})")
    return "\n".join(lines)
