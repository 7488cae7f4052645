"""Tests of the API package, as its clients see it."""
