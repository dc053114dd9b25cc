"""Evaluation scoring: reply parsing, judge prompts, aggregation and the judge client."""
