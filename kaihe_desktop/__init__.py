"""KAIHE Desktop: run open-weight LLMs offline, knowing what fits before anything is downloaded."""

__version__ = "0.1.0"
