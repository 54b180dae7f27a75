"""The taskflow command."""
