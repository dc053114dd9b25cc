"""Metric keys, written once. Objectives and the trainer import these names."""

LOSS = "train/loss"
LEARNING_RATE = "train/lr"
TOKENS_PER_S = "train/tokens_per_s"
GRAD_NORM = "train/grad_norm"
EPOCH = "train/epoch"
PEAK_WORKER_RSS_GIB = "memory/peak_worker_rss_gib"  # the largest worker's peak resident set
PEAK_DEVICE_GIB = "memory/peak_device_gib"  # the largest worker's peak GPU memory allocated

REWARDS_UP = "rewards/up"
REWARDS_DOWN = "rewards/down"
REWARDS_CHOSEN = "rewards/chosen"
REWARDS_REJECTED = "rewards/rejected"
REWARDS_MARGIN = "rewards/margin"
REWARDS_ACCURACY = "rewards/accuracy"

DELTA = "objective/delta"  # BCO's reward shift (paper eq. 7)
Z_REF = "objective/z_ref"  # KTO's reference point (paper eq. 3)
ERROR_TERM = "objective/error_term"  # gap of the BCE bound to DPO (paper fig. 3)
KL = "objective/kl"  # -mean(logp_policy - logp_reference) (paper appendix B, fig. 4a)
SFT_NLL = "objective/nll"  # token-mean negative log-likelihood of thumbs-up completions
