"""Supervised fine-tuning: token-mean negative log-likelihood of thumbs-up completions."""

from __future__ import annotations

from objectives import metrics
from objectives.base import (
    BinaryLogps,
    DataShape,
    Objective,
    ObjectiveOutput,
    Reducer,
    global_mean,
    global_mean_value,
)


class SFTObjective(Objective):
    r"""Supervised fine-tuning, as stated in Jung et al. 2024 (arXiv:2404.04656) section 3.

        L = sum_{(x, y) in D+} -log pi(y|x) / sum_{(x, y) in D+} |y|

    pi -> policy_logps (summed over completion tokens), |y| -> completion_lengths,
    D+ -> rows of the global batch with label True. Thumbs-down rows are ignored; paired
    data reaches this objective as binary rows, its chosen completions as thumbs-up rows.
    A data-stream weight w multiplies a row's tokens: sum w * -log pi / sum w * |y|.
    Section 3 writes the per-sequence expectation -E[log p(y|x)]; the mean over tokens used
    here (the SPEC's) keeps the loss on a per-token scale whatever the completion lengths.
    No reference model runs, and no reward metric is logged.
    """

    data_shape = DataShape.BINARY
    needs_reference = False
    requires_both_labels = False  # learns from thumbs-up rows alone

    def forward(self, batch: BinaryLogps, reducer: Reducer) -> ObjectiveOutput:
        lengths = batch.completion_lengths.to(batch.policy_logps.dtype)
        token_weights = lengths * batch.labels
        if batch.weights is not None:
            token_weights = token_weights * batch.weights

        # sum(w * |y| * nll / |y|) / sum(w * |y|): the token mean. A row without tokens has
        # weight 0; clamping its length keeps its value finite so that 0 * value is 0.
        token_nll = -batch.policy_logps / lengths.clamp(min=1)
        loss = global_mean(token_nll, reducer, token_weights)

        nll, _ = global_mean_value(token_nll, reducer, token_weights)
        return ObjectiveOutput(loss=loss, metrics={metrics.SFT_NLL: nll})
