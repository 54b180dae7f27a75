"""Typed client for the TaskFlow REST API."""
