"""The `kaihe` command: parses arguments, calls core, prints tables or JSON, maps errors to exit codes."""
