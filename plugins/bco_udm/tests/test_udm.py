"""The bco_udm plug-in: density ratio, thumbs-down weights, pickling, loss, registration."""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bco_udm.density_ratio import DensityRatioModel, fit_weighter, mean_one_scale
from bco_udm.objective import BCOUDMConfig, BCOUDMObjective

from objectives.base import BinaryLogps, RowSample
from platform import registry

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[3]
F64 = torch.float64

COOKING = [
    f"How long should I {verb} {food} for dinner?"
    for verb in ("bake", "roast", "boil", "grill", "fry")
    for food in ("chicken", "potatoes", "salmon", "carrots", "rice", "eggs")
]
CODE = [
    f"How do I {verb} a {thing} in Python?"
    for verb in ("sort", "reverse", "copy", "serialize", "merge")
    for thing in ("list", "dictionary", "string", "tuple", "set", "dataframe")
]
# (topic, thumbs-up rows, thumbs-down rows): users mostly give thumbs-down to code questions.
TOPIC_ROWS = ((COOKING, 90, 30), (CODE, 90, 150))


def test_density_ratio_of_two_gaussians_matches_the_true_ratio() -> None:
    # p_up = N((+0.5, 0), I) and p_down = N((-0.5, 0), I). The log density ratio is
    #   log p_up(x) - log p_down(x) = (|x - mu_down|^2 - |x - mu_up|^2) / 2
    #                               = x . (mu_up - mu_down) - (|mu_up|^2 - |mu_down|^2) / 2
    #                               = x_0,
    # linear in x, so a logistic regression can represent it exactly. There are twice as
    # many thumbs-up rows as thumbs-down rows: the classifier's logit carries the prior
    # log(2), which log_ratio must remove.
    generator = torch.Generator().manual_seed(0)
    n_up, n_down = 3000, 1500
    up = torch.randn(n_up, 2, generator=generator) + torch.tensor([0.5, 0.0])
    down = torch.randn(n_down, 2, generator=generator) + torch.tensor([-0.5, 0.0])
    labels = torch.cat([torch.ones(n_up, dtype=torch.bool), torch.zeros(n_down, dtype=torch.bool)])

    model = DensityRatioModel.fit(torch.cat([up, down]), labels, l2=1e-4)

    assert model.log_prior_odds == pytest.approx(math.log(2))
    probes = torch.tensor([[x0, 0.0] for x0 in (-2.0, -1.0, 0.0, 1.0, 2.0)])
    torch.testing.assert_close(model.log_ratio(probes), probes[:, 0].to(F64), atol=0.15, rtol=0)

    # The true weights of the thumbs-down rows: rho = exp(x_0), and E_{p_down}[rho] = 1
    # (E[exp(x_0)] for x_0 ~ N(-0.5, 1) is exp(-0.5 + 1/2) = 1), so the mean-1 scale is
    # close to 1 and the weights are the true ratio over its sample mean.
    true_weights = down[:, 0].to(F64).exp()
    true_weights = true_weights / true_weights.mean()
    ratios = model.log_ratio(down).exp()
    scale = mean_one_scale(ratios, clip_min=1e-3, clip_max=1e3)
    weights = (scale * ratios).clamp(1e-3, 1e3)

    assert scale == pytest.approx(1.0, abs=0.1)
    assert weights.mean().item() == pytest.approx(1.0, abs=1e-9)
    relative_error = (weights - true_weights).abs() / true_weights
    assert relative_error.median().item() < 0.05
    assert relative_error.quantile(0.95).item() < 0.15


def test_mean_one_scale_keeps_mean_one_when_weights_clip() -> None:
    # Ratios 1, 1, 1, 100 clipped to [0.1, 10]. If s >= 0.1 the large weight clips at 10
    # and the mean is at least (3 * 0.1 + 10) / 4 > 1, so s < 0.1: the three small weights
    # sit at the floor 0.1 and (3 * 0.1 + 100 s) / 4 = 1 gives s = 0.037 (large weight 3.7).
    ratios = torch.tensor([1.0, 1.0, 1.0, 100.0], dtype=F64)
    scale = mean_one_scale(ratios, clip_min=0.1, clip_max=10.0)
    assert scale == pytest.approx(0.037, rel=1e-9)
    assert (scale * ratios).clamp(0.1, 10.0).mean().item() == pytest.approx(1.0, abs=1e-12)


def _topic_sample() -> RowSample:
    rng = random.Random(0)
    prompts: list[str] = []
    labels: list[bool] = []
    for topic, n_up, n_down in TOPIC_ROWS:
        for label, count in ((True, n_up), (False, n_down)):
            prompts += [rng.choice(topic) for _ in range(count)]
            labels += [label] * count
    return RowSample(prompts=prompts, completions=["an answer"] * len(prompts), labels=labels)


@pytest.fixture(scope="module")
def topic_fit() -> tuple[RowSample, object]:
    """The objective's weighter, fitted on real MiniLM embeddings of the two topics."""
    sample = _topic_sample()
    return sample, BCOUDMObjective.fit_row_weights(BCOUDMConfig(), sample)


def test_thumbs_down_rows_of_the_over_represented_topic_are_down_weighted(topic_fit) -> None:
    # p_up(cooking) = 90/180 = 1/2, p_down(cooking) = 30/180 = 1/6: rho = 3.
    # p_up(code)    = 90/180 = 1/2, p_down(code)    = 150/180 = 5/6: rho = 0.6.
    # Over the thumbs-down rows (30 * 3 + 150 * 0.6) / 180 = 1: the mean-1 weights are rho.
    sample, weighter = topic_fit
    weights = weighter(sample.prompts, sample.labels)
    config = BCOUDMConfig()

    rows = list(zip(sample.prompts, weights, sample.labels, strict=True))
    down = [(prompt, weight) for prompt, weight, label in rows if not label]
    cooking = [weight for prompt, weight in down if prompt in COOKING]
    code = [weight for prompt, weight in down if prompt in CODE]
    assert all(weight == 1.0 for _, weight, label in rows if label)
    assert statistics.mean(weight for _, weight in down) == pytest.approx(1.0, abs=1e-9)
    assert all(config.weight_clip_min <= weight <= config.weight_clip_max for _, weight in down)
    assert max(code) < min(cooking)
    assert statistics.mean(cooking) == pytest.approx(3.0, rel=0.25)
    assert statistics.mean(code) == pytest.approx(0.6, rel=0.25)


NEW_PROMPTS = [
    "How long should I steam broccoli for dinner?",
    "How do I flatten a nested list in Python?",
    "How long should I poach pears for dinner?",
    "How do I parse a date string in Python?",
]
NEW_LABELS = [False, False, False, True]


def test_weighter_pickles_and_gives_the_same_weights(topic_fit, tmp_path: Path) -> None:
    _, weighter = topic_fit
    before = weighter(NEW_PROMPTS, NEW_LABELS)  # prompts unseen in the fit: embedded now

    payload = pickle.dumps(weighter)
    after = pickle.loads(payload)(NEW_PROMPTS, NEW_LABELS)

    assert len(payload) < 100_000  # settings and floats, no model weights
    assert after == pytest.approx(before, rel=1e-6)
    assert before[3] == 1.0  # thumbs-up
    assert before[0] > before[1] and before[2] > before[1]  # cooking above code, as fitted

    # A fresh process, as a data-stream worker: it loads the embedding model itself.
    path = tmp_path / "weighter.pkl"
    path.write_bytes(payload)
    script = (
        "import json, pickle, sys; weighter = pickle.loads(open(sys.argv[1], 'rb').read()); "
        "print(json.dumps(weighter(json.loads(sys.argv[2]), json.loads(sys.argv[3]))))"
    )
    arguments = [str(path), json.dumps(NEW_PROMPTS), json.dumps(NEW_LABELS)]
    result = subprocess.run([sys.executable, "-c", script, *arguments], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == pytest.approx(before, rel=1e-5)


def test_weighter_refuses_rows_without_one_label_each(topic_fit) -> None:
    _, weighter = topic_fit
    with pytest.raises(ValueError, match="2 prompts and 1 labels"):
        weighter(NEW_PROMPTS[:2], [True])
    with pytest.raises(TypeError, match="labels must be bool"):
        weighter(NEW_PROMPTS[:1], [0])


def test_fit_refuses_a_sample_of_one_class() -> None:
    with pytest.raises(ValueError, match="needs thumbs-up and thumbs-down rows; got 2"):
        fit_weighter(["a", "b"], [True, True], lambda prompts: torch.zeros(len(prompts), 2),
                     l2=1.0, clip_min=0.1, clip_max=10.0)


def test_loss_is_the_weighted_bce_with_delta() -> None:
    # beta = 0.1, log-ratios (policy - reference) 2, 1, -1, 0.5 -> rewards 0.2, 0.1, -0.1, 0.05.
    # First call: delta = (mean up + mean down) / 2 = ((0.2 + 0.1)/2 + (-0.1 + 0.05)/2) / 2
    #                   = (0.15 - 0.025) / 2 = 0.0625.
    # Up rows lose -log sigma(r - delta) = log(1 + exp(-(r - delta))), down rows
    # -log sigma(-(r - delta)) = log(1 + exp(r - delta)); weights 1, 1, 2.5, 0.5 (sum 5).
    objective = BCOUDMObjective(BCOUDMConfig(beta=0.1))
    reference = torch.full((4,), -10.0, dtype=F64)
    batch = BinaryLogps(
        policy_logps=reference + torch.tensor([2.0, 1.0, -1.0, 0.5], dtype=F64),
        reference_logps=reference,
        labels=torch.tensor([True, True, False, False]),
        completion_lengths=torch.full((4,), 5.0, dtype=F64),
        weights=torch.tensor([1.0, 1.0, 2.5, 0.5], dtype=F64),
    )
    delta = 0.0625
    losses = [
        math.log1p(math.exp(-(0.2 - delta))),
        math.log1p(math.exp(-(0.1 - delta))),
        math.log1p(math.exp(-0.1 - delta)),
        math.log1p(math.exp(0.05 - delta)),
    ]
    expected = (losses[0] + losses[1] + 2.5 * losses[2] + 0.5 * losses[3]) / 5.0

    output = objective(batch)

    assert objective.delta.item() == pytest.approx(delta, abs=1e-12)
    assert output.loss.item() == pytest.approx(expected, abs=1e-12)
    assert output.loss.item() != pytest.approx(sum(losses) / 4, abs=1e-6)  # weights matter


def test_registry_finds_the_plug_in_through_its_entry_point() -> None:
    registry.discover.cache_clear()
    registry.load_class.cache_clear()

    entry = registry.discover()["bco_udm"]

    assert entry.distribution == "bco-udm"
    assert entry.target == "bco_udm.objective:BCOUDMObjective"
    assert registry.load_class("bco_udm") is BCOUDMObjective
    config = registry.build_config("bco_udm", {"weight_clip_max": 5.0, "beta": 0.2})
    assert (config.weight_clip_max, config.beta) == (5.0, 0.2)
    problems = registry.validation_problems("bco_udm", {"weight_clip_max": 0.5, "clip": 1})
    assert {location for location, _, _ in problems} == {("weight_clip_max",), ("clip",)}
