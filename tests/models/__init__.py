"""Tests for platform.models."""
