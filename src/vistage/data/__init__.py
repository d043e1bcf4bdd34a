"""Data: sources (by keyword), the decoded local store, and splits."""
