"""Training on Ray Train workers: batches, log-probs, reductions, DeepSpeed and the loop."""
