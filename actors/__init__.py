"""Concrete actors of real workflows, and small examples the shipped supervision trees use."""
