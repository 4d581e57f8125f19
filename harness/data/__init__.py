"""Data: the SynthAd generator, MAAD-format loading, and the tokenizer/processor trained on the data."""
