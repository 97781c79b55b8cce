"""The llama.cpp engine in a process of its own: protocol (messages), worker (child), client (app side)."""
