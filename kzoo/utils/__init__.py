"""Helpers with no model knowledge that every floor may use (files, hashes)."""
