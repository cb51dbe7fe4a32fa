"""orthovec lookup stage."""
