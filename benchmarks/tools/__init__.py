"""Generators: the manual's tables, the model cards, test fixtures."""
