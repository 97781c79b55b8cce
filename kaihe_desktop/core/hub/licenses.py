"""What a repo's licence lets a user do commercially, from the Hub's card data and tags.

Four answers, because users ask one question ("can I use this at work?"): ``yes`` (permissive: MIT,
Apache-2.0, BSD ...), ``conditions`` (usable, but the licence attaches terms: Llama, Gemma, Qwen, OpenRAIL),
``no`` (non-commercial or research-only: CC-BY-NC-*, Mistral's MNPL, Qwen research) and ``unknown``.
The Hub ids are those of https://huggingface.co/docs/hub/repositories-licenses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

CommercialUse = Literal["yes", "conditions", "no", "unknown"]

# Permissive licences: commercial use with attribution at most.
_YES = {
    "apache-2.0",
    "mit",
    "bsd",
    "bsd-2-clause",
    "bsd-3-clause",
    "bsd-3-clause-clear",
    "isc",
    "cc0-1.0",
    "cc-by-2.0",
    "cc-by-2.5",
    "cc-by-3.0",
    "cc-by-4.0",
    "cc-by-sa-3.0",
    "cc-by-sa-4.0",
    "unlicense",
    "mpl-2.0",
    "artistic-2.0",
    "afl-3.0",
    "bsl-1.0",
    "zlib",
    "ecl-2.0",
    "postgresql",
    "wtfpl",
    "gpl",
    "gpl-2.0",
    "gpl-3.0",
    "lgpl",
    "lgpl-2.1",
    "lgpl-3.0",
    "lgpl-lr",
    "agpl-3.0",
    "odc-by",
    "pddl",
}

# Usable commercially under the licence's own terms (user caps, attribution, acceptable-use policies).
_CONDITIONS = {
    "llama2",
    "llama3",
    "llama3.1",
    "llama3.2",
    "llama3.3",
    "llama4",
    "gemma",
    "openrail",
    "openrail++",
    "bigscience-openrail-m",
    "creativeml-openrail-m",
    "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m",
    "deepfloyd-if-license",
    "qwen",  # Tongyi Qianwen licence: a licence is needed above 100M monthly users
    "deepseek",  # DeepSeek model licence: use-based restrictions
    "falcon-llm",
    "tii-falcon",
    "nvidia-open-model-license",
    "health-ai-developer-foundations",
}

# Non-commercial or research-only.
_NO = {
    "cc-by-nc-2.0",
    "cc-by-nc-3.0",
    "cc-by-nc-4.0",
    "cc-by-nc-nd-3.0",
    "cc-by-nc-nd-4.0",
    "cc-by-nc-sa-2.0",
    "cc-by-nc-sa-3.0",
    "cc-by-nc-sa-4.0",
    "cc-by-nd-4.0",
    "mnpl",  # Mistral Non-Production License
    "mnpl-0.1",
    "mistral-research",
    "qwen-research",
    "apple-ascl",
    "apple-amlr",
    "fair-noncommercial-research-license",
    "llama-research",
}

_NOTES: dict[CommercialUse, str] = {
    "yes": "permissive: commercial use allowed",
    "conditions": "commercial use allowed under the licence's conditions",
    "no": "non-commercial / research use only",
    "unknown": "licence not stated or not recognised: check the model card",
}


@dataclass(frozen=True)
class LicenseInfo:
    """A repo's licence id as the Hub names it (None when absent) and what it means commercially."""

    license_id: str | None
    commercial_use: CommercialUse
    note: str

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


def commercial_use_of(license_id: str | None) -> CommercialUse:
    """The commercial-use answer for one Hub licence id (case-insensitive)."""
    if not license_id:
        return "unknown"
    key = license_id.strip().lower()
    if key in _YES:
        return "yes"
    if key in _CONDITIONS or key.startswith(("llama", "gemma")):
        return "conditions"
    if key in _NO or key.startswith("cc-by-nc"):
        return "no"
    return "unknown"


def classify_license(
    license_id: str | None, *, license_name: str | None = None, tags: Sequence[str] = ()
) -> LicenseInfo:
    """Classify from the card's ``license`` (``license_name`` when "other"), else the ``license:`` tag.

    The Hub puts ``license: other`` plus ``license_name: qwen`` on cards whose licence has no standard id;
    the name then decides.
    """
    chosen = license_id.strip().lower() if isinstance(license_id, str) and license_id.strip() else None
    if chosen is None:
        for tag in tags:
            if tag.lower().startswith("license:"):
                chosen = tag.split(":", 1)[1].strip().lower() or None
                break
    if chosen == "other" and license_name:
        chosen = license_name.strip().lower()
    use = commercial_use_of(chosen)
    return LicenseInfo(license_id=chosen, commercial_use=use, note=_NOTES[use])
