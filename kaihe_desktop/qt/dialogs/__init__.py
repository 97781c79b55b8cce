"""Dialogs: about (settings, guardrail and confirm-delete come later)."""
