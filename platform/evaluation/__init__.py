"""Evaluation scoring: judge-reply parsing, judge prompts, metric aggregation, judge client."""
