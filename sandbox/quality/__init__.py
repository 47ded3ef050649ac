"""Data-quality profiles computed next to the data (see `profile.py`)."""
