"""Feature store plumbing: Feast definitions, fast Redis reads and writes, similarity features."""
