"""Imported by importer.py; imports inner_module in turn."""
import inner_module  # noqa: F401
