"""Tests of the service, run in process against its own database."""
