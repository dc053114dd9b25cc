"""Tests for platform.data."""
