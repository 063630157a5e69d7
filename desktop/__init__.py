"""Hearth: private, local chat with open LLMs."""

__version__ = "0.1.0"
