"""cache library."""
