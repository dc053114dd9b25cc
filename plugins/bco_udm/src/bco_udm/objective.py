"""BCO with Underlying Distribution Matching: the objective and its options."""

from __future__ import annotations

import logging

from pydantic import Field

from bco_udm.density_ratio import fit_weighter
from bco_udm.embedding import PromptEmbedder
from objectives.base import ObjectiveConfig, RowSample, RowWeighter
from objectives.bco import BCOConfig, BCOObjective

logger = logging.getLogger(__name__)


class BCOUDMConfig(BCOConfig):
    weight_clip_min: float = Field(
        0.1,
        gt=0.0,
        le=1.0,
        description=(
            "Smallest weight of a thumbs-down row; it keeps rows on prompts rare among "
            "thumbs-up rows from vanishing from the loss."
        ),
    )
    weight_clip_max: float = Field(
        10.0,
        ge=1.0,
        description=(
            "Largest weight of a thumbs-down row; it bounds the variance that a few rows "
            "with a large estimated density ratio would add to the gradient."
        ),
    )
    classifier_l2: float = Field(
        1.0,
        ge=0.0,
        description=(
            "L2 penalty on the coefficients of the density-ratio classifier, added to its "
            "mean log-loss (features standardised). Larger values pull the weights toward "
            "1 (plain BCO); small ones let the classifier memorise single prompts."
        ),
    )


class BCOUDMObjective(BCOObjective):
    r"""BCO with Underlying Distribution Matching (UDM), Jung et al. 2025, Binary Classifier
    Optimization for LLM Alignment (extended version, UDM).

    BCO (``objectives.bco``) trains the implicit reward r = beta * (log pi - log pi_ref) as
    a classifier of thumbs-up (D+) vs thumbs-down (D-) rows:

        L = E_{x ~ p_up, y}[-log sigma(r(x, y) - delta)]
          + E_{x ~ p_down, y}[-log sigma(-(r(x, y) - delta))]

    When the prompts of the two classes come from different distributions (p_up != p_down,
    e.g. users give thumbs-down mostly to one kind of question), r can lower L by telling
    the prompt distributions apart, lowering the reward of every answer to a prompt typical
    of D-, instead of telling good answers from bad ones. UDM rewrites the thumbs-down term
    as an expectation over thumbs-up prompts by importance weighting:

        E_{x ~ p_up}[f(x)] = E_{x ~ p_down}[rho(x) f(x)],   rho(x) = p_up(x) / p_down(x)

    so that both terms see the same prompt distribution. rho is estimated with a classifier
    c(x) ~ P(up | x) trained on the prompts of a sample of n_up thumbs-up and n_down
    thumbs-down rows; by Bayes' rule

        rho(x) = [c(x) / (1 - c(x))] * [n_down / n_up]

    and each thumbs-down row weighs w(x) = clip(s * rho(x), w_min, w_max) (thumbs-up rows
    weigh 1), where s makes the mean of w over the sample's thumbs-down rows exactly 1.
    For the true ratio E_{p_down}[rho] = 1, so s ~ 1 when c is well calibrated; s also
    restores the mean after clipping. The loss is BCO's with these weights:

        L_UDM = sum_i w_i * l_i / sum_i w_i     (class_weighting "none"; per class for
                                                  "balanced"), l_i BCO's per-row loss.

    w_min, w_max, the classifier's L2 penalty -> weight_clip_min, weight_clip_max,
    classifier_l2; D+ / D- -> label True / False.

    What is implemented, and its simplifications:

    - c is a linear logistic regression (full-batch L-BFGS, L2 penalty, standardised
      features) on frozen all-MiniLM-L6-v2 prompt embeddings (mean-pooled, L2-normalised);
      this choice of classifier and embedding is this plug-in's, not taken from the paper.
    - It is fitted once, before training, on the platform's sample of training rows, and
      the same rows then receive weights: no held-out split, so in-sample ratios are
      somewhat overconfident; the L2 penalty and the clip range bound that.
    - The mean of 1 holds exactly on the sample; on the training stream it holds
      approximately (class balancing repeats rows; rows outside the sample are weighted
      by the same fitted classifier).
    - delta is BCO's, from the unweighted class means of the reward (``BCOObjective``);
      the weights enter the loss only.
    - A preference pair split into a thumbs-up and a thumbs-down row adds its prompt to
      both classes, which pulls its ratio toward 1.
    """

    config_cls = BCOUDMConfig

    @classmethod
    def fit_row_weights(cls, config: ObjectiveConfig, sample: RowSample) -> RowWeighter:
        """Fit the prompt density ratio on ``sample`` and return the thumbs-down weighter."""
        if not isinstance(config, BCOUDMConfig):
            raise TypeError(
                f"bco_udm fits its row weights from a BCOUDMConfig, got "
                f"{type(config).__name__}. Build it with BCOUDMConfig(**options)."
            )
        logger.info("fitting the UDM density ratio on %d sampled rows", len(sample.labels))
        return fit_weighter(
            sample.prompts,
            sample.labels,
            PromptEmbedder(),
            l2=config.classifier_l2,
            clip_min=config.weight_clip_min,
            clip_max=config.weight_clip_max,
        )
