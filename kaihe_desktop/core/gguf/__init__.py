"""GGUF headers, read locally or over HTTP Range from the Hub, never the weights."""
