"""Interoperability with other code: the paper's reference implementation."""
