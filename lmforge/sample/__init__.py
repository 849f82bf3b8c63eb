"""Stage package: sample."""
