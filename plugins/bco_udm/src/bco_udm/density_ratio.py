"""The prompt density ratio p_up(x) / p_down(x) and the thumbs-down row weights built on it.

A logistic regression separates thumbs-up prompts from thumbs-down prompts in an embedding
space. By Bayes' rule its odds, divided by the class-count odds, estimate the density ratio:

    p_up(x) / p_down(x) = [P(up | x) / P(down | x)] * [n_down / n_up]

Thumbs-down rows are weighted by that ratio, scaled to mean 1 and clipped; thumbs-up rows
weigh 1.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

Embed = Callable[[list[str]], torch.Tensor]  # prompts -> (len(prompts), dimension)


@dataclass(frozen=True)
class DensityRatioModel:
    """A fitted logistic regression of thumbs-up (1) vs thumbs-down (0) on embeddings.

    Held as plain floats so that it pickles small and independent of the torch version.
    Features are standardised with the training mean and scale, so ``l2`` means the same
    whatever the spread of the embedding space.
    """

    feature_mean: tuple[float, ...]
    feature_scale: tuple[float, ...]
    coefficients: tuple[float, ...]
    intercept: float
    log_prior_odds: float  # log(n_up / n_down) of the training rows

    @classmethod
    def fit(
        cls, embeddings: torch.Tensor, labels: torch.Tensor, l2: float, max_iterations: int = 300
    ) -> DensityRatioModel:
        """Full-batch L-BFGS on mean log-loss + (l2 / 2) * |coefficients|^2.

        Args:
            embeddings: (rows, dimension) features of each row's prompt.
            labels: (rows,) bool, True = thumbs-up.
            l2: strength of the L2 penalty on the coefficients (not on the intercept).
            max_iterations: L-BFGS iterations.
        """
        _check_training_input(embeddings, labels, l2)
        features = embeddings.detach().to(torch.float64)
        mean = features.mean(dim=0)
        # A constant feature would divide by zero; it carries no information anyway.
        scale = features.std(dim=0).clamp(min=1e-8)
        standard = (features - mean) / scale
        targets = labels.to(torch.float64)
        n_up = int(labels.sum())
        log_prior_odds = math.log(n_up / (len(labels) - n_up))

        coefficients = torch.zeros(features.shape[1], dtype=torch.float64, requires_grad=True)
        # Starting at the class prior makes the first iterate the best constant classifier.
        intercept = torch.tensor(log_prior_odds, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS(
            [coefficients, intercept], lr=1.0, max_iter=max_iterations, history_size=20,
            tolerance_grad=1e-10, tolerance_change=1e-14, line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            logits = standard @ coefficients + intercept
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
            loss = loss + 0.5 * l2 * coefficients.square().sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        return cls(
            feature_mean=tuple(mean.tolist()),
            feature_scale=tuple(scale.tolist()),
            coefficients=tuple(coefficients.detach().tolist()),
            intercept=float(intercept.detach()),
            log_prior_odds=log_prior_odds,
        )

    def log_ratio(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(rows,) float64 estimate of log p_up(x) - log p_down(x)."""
        if embeddings.ndim != 2 or embeddings.shape[1] != len(self.coefficients):
            raise ValueError(
                f"embeddings must be (rows, {len(self.coefficients)}), the shape the model "
                f"was fitted on; got {tuple(embeddings.shape)}. Embed with the same model."
            )
        features = embeddings.detach().to(torch.float64)
        standard = (features - torch.tensor(self.feature_mean, dtype=torch.float64)) / (
            torch.tensor(self.feature_scale, dtype=torch.float64)
        )
        logits = standard @ torch.tensor(self.coefficients, dtype=torch.float64) + self.intercept
        # logit = log P(up|x)/P(down|x); removing the prior odds leaves the density ratio.
        return logits - self.log_prior_odds


def _check_training_input(embeddings: torch.Tensor, labels: torch.Tensor, l2: float) -> None:
    if embeddings.ndim != 2 or labels.ndim != 1 or len(embeddings) != len(labels):
        raise ValueError(
            f"embeddings must be (rows, dimension) and labels (rows,); got "
            f"{tuple(embeddings.shape)} and {tuple(labels.shape)}. Pass one label per row."
        )
    if labels.dtype != torch.bool:
        raise TypeError(f"labels must be a bool tensor (True = thumbs-up), got {labels.dtype}.")
    _check_both_classes(int(labels.sum()), len(labels))
    if not (l2 >= 0 and math.isfinite(l2)):
        raise ValueError(f"l2 must be a finite number >= 0, got {l2}.")


def _check_both_classes(n_up: int, n_rows: int) -> None:
    if n_up == 0 or n_up == n_rows:
        raise ValueError(
            f"the density-ratio classifier needs thumbs-up and thumbs-down rows; got {n_up} "
            f"thumbs-up of {n_rows} rows. Sample rows of both classes."
        )


def mean_one_scale(ratios: torch.Tensor, clip_min: float, clip_max: float) -> float:
    """The factor s with mean(clip(s * ratios, clip_min, clip_max)) = 1.

    The clipped mean grows continuously from ``clip_min`` (s -> 0) to ``clip_max``
    (s -> inf), so with ``clip_min <= 1 <= clip_max`` a solution exists; bisection on
    log s finds it.
    """
    _check_clip_range(clip_min, clip_max)
    if ratios.ndim != 1 or len(ratios) == 0 or not bool((ratios > 0).all()):
        raise ValueError(
            f"ratios must be a non-empty 1-D tensor of positive numbers, got shape "
            f"{tuple(ratios.shape)}: {ratios.tolist()[:5]}... Pass exp(log ratio) values."
        )
    log_ratios = ratios.to(torch.float64).log()
    # At `low` every weight is clipped to clip_min, at `high` every one to clip_max.
    low = math.log(clip_min) - log_ratios.max().item()
    high = math.log(clip_max) - log_ratios.min().item()
    for _ in range(200):
        middle = (low + high) / 2
        clipped = (log_ratios + middle).exp().clamp(clip_min, clip_max)
        if clipped.mean().item() < 1.0:
            low = middle
        else:
            high = middle
        if high - low < 1e-13:
            break
    return math.exp((low + high) / 2)


def _check_clip_range(clip_min: float, clip_max: float) -> None:
    if not (0 < clip_min <= 1 <= clip_max < math.inf):
        raise ValueError(
            f"the weight clip range must satisfy 0 < min <= 1 <= max < inf (weights of mean "
            f"1 must fit inside it); got [{clip_min}, {clip_max}]. Widen the range."
        )


def _prompt_key(prompt: str) -> bytes:
    # A digest, not the text: the weighter travels to every data-stream task, and long
    # prompts would make it heavy.
    return hashlib.blake2b(prompt.encode("utf-8"), digest_size=16).digest()


class DensityRatioWeighter:
    """Per-row weights: 1 for thumbs-up, clip(scale * ratio(x)) for thumbs-down.

    Pickles as the fitted model, a few floats, the embedder's settings and the weights of
    the prompts seen when fitting (so the data stream need not embed those again).
    """

    def __init__(
        self,
        model: DensityRatioModel,
        scale: float,
        clip_min: float,
        clip_max: float,
        embed: Embed,
        known_weights: dict[bytes, float] | None = None,
    ) -> None:
        _check_clip_range(clip_min, clip_max)
        self.model = model
        self.scale = scale
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.embed = embed
        self.known_weights = dict(known_weights or {})

    def thumbs_down_weights(self, prompts: Sequence[str]) -> list[float]:
        """The weight each prompt would give a thumbs-down row."""
        keys = [_prompt_key(prompt) for prompt in prompts]
        unknown = {  # key -> prompt: each unseen prompt is embedded once
            key: prompt
            for key, prompt in zip(keys, prompts, strict=True)
            if key not in self.known_weights
        }
        computed: dict[bytes, float] = {}
        if unknown:
            ratios = self.model.log_ratio(self.embed(list(unknown.values()))).exp()
            weights = (self.scale * ratios).clamp(self.clip_min, self.clip_max)
            computed = dict(zip(unknown, weights.tolist(), strict=True))
        return [self.known_weights.get(key, computed.get(key)) for key in keys]

    def __call__(self, prompts: list[str], labels: list[bool]) -> list[float]:
        _check_rows(prompts, labels)
        down = [prompt for prompt, label in zip(prompts, labels, strict=True) if not label]
        down_weights = iter(self.thumbs_down_weights(down))
        return [1.0 if label else next(down_weights) for label in labels]


def _check_rows(prompts: Sequence[str], labels: Sequence[bool]) -> None:
    if len(prompts) != len(labels):
        raise ValueError(
            f"got {len(prompts)} prompts and {len(labels)} labels; pass one label per row."
        )
    bad = sorted({type(label).__name__ for label in labels if not isinstance(label, bool)})
    if bad:
        raise TypeError(
            f"labels must be bool (True = thumbs-up), got values of type(s) {bad}. "
            "Convert them with bool() first."
        )


def fit_weighter(
    prompts: list[str],
    labels: list[bool],
    embed: Embed,
    l2: float,
    clip_min: float,
    clip_max: float,
) -> DensityRatioWeighter:
    """Fit the density ratio on a sample of rows and return its row weighter.

    Each distinct prompt is embedded once; every row counts in the fit, so a prompt asked
    more often weighs more. ``scale`` makes the sample's thumbs-down weights average 1.
    """
    _check_rows(prompts, labels)
    _check_clip_range(clip_min, clip_max)
    _check_both_classes(sum(labels), len(labels))  # before the costly embedding
    distinct = list(dict.fromkeys(prompts))
    position = {prompt: index for index, prompt in enumerate(distinct)}
    row_index = torch.tensor([position[prompt] for prompt in prompts], dtype=torch.long)
    embeddings = embed(distinct)
    label_tensor = torch.tensor(labels, dtype=torch.bool)
    model = DensityRatioModel.fit(embeddings[row_index], label_tensor, l2)

    ratios = model.log_ratio(embeddings).exp()  # (distinct,)
    down_ratios = ratios[row_index[~label_tensor]]
    scale = mean_one_scale(down_ratios, clip_min, clip_max)
    weights = (scale * ratios).clamp(clip_min, clip_max)
    _log_fit(weights[row_index[~label_tensor]], labels, len(distinct), scale, clip_min, clip_max)
    known = {
        _prompt_key(prompt): weight
        for prompt, weight in zip(distinct, weights.tolist(), strict=True)
    }
    return DensityRatioWeighter(model, scale, clip_min, clip_max, embed, known)


def _log_fit(
    down_weights: torch.Tensor,
    labels: list[bool],
    distinct: int,
    scale: float,
    clip_min: float,
    clip_max: float,
) -> None:
    clipped = ((down_weights <= clip_min) | (down_weights >= clip_max)).double().mean()
    # Kish's effective sample size: how many unweighted rows the weighted ones are worth.
    effective = down_weights.sum() ** 2 / down_weights.square().sum()
    logger.info(
        "density ratio fitted on %d rows (%d thumbs-up, %d thumbs-down, %d distinct prompts): "
        "scale %.3g, thumbs-down weights in [%.3g, %.3g], %.1f%% at the clip range "
        "[%g, %g], effective thumbs-down rows %.0f of %d",
        len(labels), sum(labels), len(down_weights), distinct, scale,
        down_weights.min().item(), down_weights.max().item(), 100 * clipped.item(),
        clip_min, clip_max, effective.item(), len(down_weights),
    )
