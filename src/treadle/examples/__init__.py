"""Runnable examples: ``python -m treadle.examples.demo "What is 17 + 25?"``."""
