"""Dataset preparation: CSV manifests for each corpus and miniature corpora for tests."""
