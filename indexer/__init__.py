"""orthovec indexer stage."""
