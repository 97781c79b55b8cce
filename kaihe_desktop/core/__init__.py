"""All of KAIHE's logic. No Qt, no printing, no sys.exit: results are data, errors are KaiheError."""
