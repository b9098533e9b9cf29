"""One module per benchmark family: its files, its official prompt and extraction."""
