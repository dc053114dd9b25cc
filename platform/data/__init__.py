"""Feedback data: reading, validating, tokenizing and balancing rows with Ray Data."""
