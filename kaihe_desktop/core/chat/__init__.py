"""Chat sessions: templates in a bounded sandbox, reasoning split, the SQLite history."""
