"""Resumable, locked, verified downloads of a variant and the queue that survives a restart."""
