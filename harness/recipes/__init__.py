"""Recipes: short functions that set up, run and return one kind of result (teacher, compression, public
LMMs, the from-scratch baseline). They read and write runs only through harness.store."""
