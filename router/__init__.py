"""router library."""
