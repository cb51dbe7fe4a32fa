"""Contracts between orthovec's stages: table schemas, atlas layout, API models, errors."""
