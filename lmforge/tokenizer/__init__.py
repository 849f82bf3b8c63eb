"""Stage package: tokenizer."""
