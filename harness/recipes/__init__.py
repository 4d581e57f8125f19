"""Recipes: short functions that set up, run and return one kind of result (teacher, compression, public
LMMs, the from-scratch baseline), each as its typed model (harness/results.py `Result`). They read and write
cached runs only through harness.store, and render nothing: the CLI writes the result and renders it
(harness/commands/run.py)."""
