"""Thin HTTP routes: read the request, hand it to the serving code, return its response."""
