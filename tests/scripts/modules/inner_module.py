"""Imported by outer_module."""
VALUE = 1
