"""orthovec integrate stage."""
