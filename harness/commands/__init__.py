"""The CLI commands whose work is long enough to keep their heavy imports out of harness/cli.py."""
