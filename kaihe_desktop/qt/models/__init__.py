"""Item models over frozen tuples from the core: no I/O, sorting on raw values through SORT_ROLE."""
