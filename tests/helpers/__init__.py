"""Helpers shared by the tests: plain functions and classes, never tests or fixtures.

Test modules and conftest files import from here; nothing here imports a test module or a conftest.
"""
