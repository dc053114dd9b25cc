"""Model names and the built-in checkpoints the platform can build on first use."""
