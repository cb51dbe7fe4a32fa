"""The embedding layer shared by indexing and sequence queries: ESM-2 shapes, checkpoints, encoder.

Indexing a proteome and embedding a query sequence must give vectors in the same space, so both
go through this one package; neither stage imports the other's internals.
"""
