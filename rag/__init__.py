"""rag library."""
