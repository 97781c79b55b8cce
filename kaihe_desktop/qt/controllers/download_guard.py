"""Discover → guardrail → Downloads: a download asked for in Discover is checked before it starts.

``request(repo_id, quant)`` runs core.fit.guardrails.check off the GUI thread (qt/dialogs/guardrail.guard)
for that variant on the active machine, from the header the catalog kept for the repo, at the context the
download's own check judges at (the picker's default, capped at the trained context), and hands the user's
choice on to the downloads controller:

- CLEAR (nothing to ask): start it as asked;
- OPTION NEXT_QUANT_DOWN: start the lower quant instead;
- another OPTION (a shorter context, a q8_0 KV cache, fewer GPU layers): those are load-time settings, the
  same file fits when loaded that way, so the download starts as asked (past the download's own fit check,
  which judges the default load settings; remembering the chosen load settings is not done yet);
- PROCEED ("Download anyway"): start it with ``allow_unfit``;
- CANCEL: nothing.

The downloads controller's own refusal (``does_not_fit``: a start that did not come through here, e.g. a
retry from the Downloads page) opens the same dialog, checked from the refused plan's header. When that
check finds nothing to ask, nothing restarts (the two judges disagree; the failed row says why), so a
refusal never loops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from kaihe_desktop.core.downloads.pull import VariantDoesNotFitError
from kaihe_desktop.core.fit import guardrails
from kaihe_desktop.core.fit.guardrails import Change, Guardrail, Requested
from kaihe_desktop.core.fit.quants import QuantOption
from kaihe_desktop.core.gguf.model_meta import ModelMeta
from kaihe_desktop.core.hub.catalog import CatalogRepo
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.qt.controllers.catalog import default_context, options_of
from kaihe_desktop.qt.controllers.downloads import DownloadsController
from kaihe_desktop.qt.dialogs.guardrail import GuardrailChoice, Outcome, guard
from kaihe_desktop.qt.errors import ErrorPresenter


class DownloadGuard(QObject):
    """Asks the guardrail before a download starts; one dialog per request, off the GUI thread."""

    decided = Signal(str, object)  # repo id, GuardrailChoice: what the user (or the check) chose

    def __init__(
        self,
        downloads: DownloadsController,
        *,
        repo_of: Callable[[str], CatalogRepo | None],
        machine: Callable[[], Machine | None],
        margin_bytes: Callable[[], int],
        errors: ErrorPresenter | None = None,
        dialog_parent: Callable[[], QWidget | None] = lambda: None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._downloads = downloads
        self._repo_of = repo_of
        self._machine = machine
        self._margin = margin_bytes
        self._errors = errors
        self._dialog_parent = dialog_parent
        downloads.does_not_fit.connect(self._on_refused)

    def request(self, repo_id: str, quant: str) -> None:
        """Discover's download_requested: check, ask when there is something to ask, then start."""
        repo = self._repo_of(repo_id)
        machine = self._machine()
        if repo is None or repo.meta is None or machine is None:
            self._downloads.start(repo_id, quant)  # nothing to judge here: the download's own check does
            return
        n_ctx = default_context(repo)  # the context the download's own check (the picker) judges at
        self._ask(repo_id, quant, repo.meta, machine, options_of(repo), n_ctx, after_refusal=False)

    def _on_refused(self, exc: VariantDoesNotFitError) -> None:
        plan = exc.plan
        machine = self._machine()
        if plan.memory is None or plan.variant is None or machine is None:
            return
        repo = self._repo_of(plan.repo_id)
        variants = options_of(repo) if repo is not None and repo.meta is not None else None
        self._ask(
            plan.repo_id,
            plan.variant.quant,
            plan.memory.meta,
            machine,
            variants,
            plan.memory.n_ctx,
            after_refusal=True,
        )

    def _ask(
        self,
        repo_id: str,
        quant: str,
        meta: ModelMeta,
        machine: Machine,
        variants: Sequence[QuantOption] | None,
        n_ctx: int,
        *,
        after_refusal: bool,
    ) -> None:
        margin = self._margin()

        def compute() -> Guardrail | None:  # pool thread
            return guardrails.check(
                meta,
                machine,
                options=Requested(quant=quant, n_ctx=n_ctx),
                variants=variants or None,
                kind=guardrails.Action.DOWNLOAD,
                margin_bytes=margin,
            )

        def chosen(choice: GuardrailChoice) -> None:
            self.decided.emit(repo_id, choice)
            self._apply(repo_id, quant, choice, after_refusal=after_refusal)

        guard(
            compute,
            parent=self._dialog_parent(),
            on_choice=chosen,
            on_error=self._on_error,
            name=f"guardrail {repo_id}:{quant}",
        )

    def _apply(self, repo_id: str, quant: str, choice: GuardrailChoice, *, after_refusal: bool) -> None:
        if choice.outcome is Outcome.CANCEL:
            return
        if choice.outcome is Outcome.CLEAR:
            if not after_refusal:  # after a refusal: the judges disagree, starting again would loop
                self._downloads.start(repo_id, quant)
            return
        if choice.outcome is Outcome.PROCEED:
            self._downloads.start(repo_id, quant, allow_unfit=True)
            return
        option = choice.option
        if option is not None and option.change is Change.NEXT_QUANT_DOWN and option.quant:
            self._downloads.start(repo_id, option.quant)
            return
        # a load-time setting makes the same file fit: download it as asked
        self._downloads.start(repo_id, quant, allow_unfit=True)

    def _on_error(self, exc: BaseException) -> None:
        if self._errors is not None:
            self._errors.show(exc)


__all__ = ["DownloadGuard"]
