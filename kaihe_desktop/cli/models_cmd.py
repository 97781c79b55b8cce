"""`kaihe models [--json]` lists the library; `kaihe rm MODEL` deletes one and says how much space it freed.

`kaihe models` also offers GGUF files already in the Hugging Face cache (`--add-cached` lists them in
place, without copying), imports a local file (`--import FILE [--copy]`) and the starter model
(`--add-starter`), and shows downloads that were interrupted and can be resumed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kaihe_desktop.cli.common import add_json_arg, emit_json, human_bytes, render_table
from kaihe_desktop.core.downloads.fetch import Downloader
from kaihe_desktop.core.downloads.pull import remove
from kaihe_desktop.core.downloads.queue import DiscardResult, DownloadQueue
from kaihe_desktop.core.library import Library


def register(subparsers: Any) -> None:
    models: argparse.ArgumentParser = subparsers.add_parser(
        "models",
        help="list the models in the library (and add local or cached ones)",
        description="List installed models. Options add a local GGUF, the starter model, or GGUF files "
        "already in the Hugging Face cache (referenced in place, not copied).",
    )
    models.add_argument("--import", dest="import_path", type=Path, metavar="FILE", help="add a local .gguf")
    models.add_argument("--copy", action="store_true", help="with --import: copy the file into the library")
    models.add_argument("--name", help="with --import: the name to list it under")
    models.add_argument("--add-starter", action="store_true", help="add the bundled starter model")
    models.add_argument(
        "--add-cached", action="store_true", help="add every GGUF found in the Hugging Face cache"
    )
    add_json_arg(models)
    models.set_defaults(handler=run_models)

    rm: argparse.ArgumentParser = subparsers.add_parser(
        "rm",
        help="remove a model from the library (or discard an interrupted download)",
        description="Delete a model's files (only those the library owns: imported files and the Hugging "
        "Face cache are left alone) and report the space freed. MODEL is a name from `kaihe models`, "
        "REPO:QUANT, or a path.",
    )
    rm.add_argument("model", metavar="MODEL")
    add_json_arg(rm)
    rm.set_defaults(handler=run_rm)


def run_models(args: argparse.Namespace) -> int:
    library = Library()
    added = []
    if args.import_path is not None:
        added.append(library.import_file(args.import_path, name=args.name, copy=args.copy))
    if args.add_starter:
        added.append(library.import_starter())
    skipped: list[str] = []
    if args.add_cached:
        adopted = library.adopt_hf_cache()
        added.extend(adopted.added)
        skipped.extend(f"skipped {o.repo_id}/{o.repo_path}: {exc}" for o, exc in adopted.skipped)
    entries = library.entries()
    offers = library.discover_hf_cache()
    paused = list(DownloadQueue().pending())
    if args.json:
        emit_json([e.public_dict() for e in entries])
        return 0
    for entry in added:
        print(f"added {entry.name} ({human_bytes(entry.size_bytes)}): {entry.path}")
    for line in skipped:
        print(line)
    if entries:
        rows = [
            [
                e.name,
                e.repo_id or "-",
                e.quant or "-",
                human_bytes(e.size_bytes),
                e.source,
                (e.last_used or "never")[:16],
                str(e.path) if e.present else f"MISSING {e.path}",
            ]
            for e in entries
        ]
        print(render_table(["NAME", "REPO", "QUANT", "SIZE", "SOURCE", "LAST USED", "PATH"], rows))
    else:
        print("the library is empty: `kaihe pull REPO[:QUANT]`, or `kaihe models --add-starter`")
    if offers:
        print("\nin the Hugging Face cache (add with `kaihe models --add-cached`, nothing is copied):")
        for offer in offers:
            print(f"  {offer.repo_id}  {offer.repo_path}  {human_bytes(offer.size_bytes)}")
    if paused:
        print("\ninterrupted downloads (`kaihe pull REPO:QUANT` resumes, `kaihe rm REPO:QUANT` discards):")
        for item in paused:
            print(f"  {item.key}  {item.state}  {human_bytes(item.total_bytes)}")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    removed = remove(args.model, library=Library(), queue=DownloadQueue(), downloader=Downloader())
    if isinstance(removed, DiscardResult):
        if args.json:
            emit_json(
                {
                    "name": removed.key,
                    "freed_bytes": removed.freed_bytes,
                    "deleted_files": [],
                    "kept_files": [],
                }
            )
        else:
            freed = human_bytes(removed.freed_bytes)
            print(f"discarded the interrupted download of {removed.key}: freed {freed}")
        return 0
    if args.json:
        emit_json(
            {
                "name": removed.name,
                "freed_bytes": removed.freed_bytes,
                "deleted_files": [str(p) for p in removed.deleted_files],
                "kept_files": [str(p) for p in removed.kept_files],
            }
        )
        return 0
    print(f"removed {removed.name}: freed {human_bytes(removed.freed_bytes)}")
    for kept in removed.kept_files:
        print(f"  kept {kept} (not owned by the library)")
    return 0
