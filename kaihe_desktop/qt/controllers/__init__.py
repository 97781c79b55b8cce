"""QObjects that are the only callers of the core, always through workers."""
