"""The catalogue: dataset and template documents, datasets, templates, purposes, the pre-flight."""
