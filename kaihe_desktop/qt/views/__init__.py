"""Widgets only: each view gets its controllers and models in its constructor."""
