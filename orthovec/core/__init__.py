"""The ground floor: what every stage may use and which imports no stage.

Files and locks, fault points, progress, logging and warnings, the version, and the click options
the stage CLIs share. Stages (`indexer`, `lookup`, `integrate`) build on this and on `schemas`;
the top floor (`orthovec.api`, `orthovec.cli`, `orthovec.demo`, `orthovec.indexing`,
`orthovec.build`) composes the stages. `tests/test_import_contracts.py` keeps it so.
"""
