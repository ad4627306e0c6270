"""Bella's Trattoria: a restaurant booking line (see README.md)."""
