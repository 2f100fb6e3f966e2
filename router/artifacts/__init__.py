"""Trained router artifacts shipped with the package (rebuilt by `frugate router train`)."""
