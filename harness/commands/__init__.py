"""The work of every CLI command, one module each, imported only when its command runs (harness/cli.py
holds the arguments)."""
