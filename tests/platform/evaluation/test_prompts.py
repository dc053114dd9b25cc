"""Judge prompts loaded from the benchmark folder and filled in per SCORING_SPECS."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from platform.evaluation import prompts
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "judge_prompts").is_dir(),
                                reason=f"benchmark data not found at {SHARED_DATA}")


def _questions() -> dict[int, dict]:
    path = SHARED_DATA / "mt_bench" / "question.jsonl"
    return {record["question_id"]: record
            for record in map(json.loads, path.read_text().splitlines())}


@pytest.fixture(scope="module")
def fastchat() -> dict[str, prompts.JudgePrompt]:
    return prompts.load_fastchat_prompts(SHARED_DATA)


ANSWERS = ["ANSWER-TURN-1", "ANSWER-TURN-2"]
REFERENCES = ["REFERENCE-TURN-1", "REFERENCE-TURN-2"]


@pytest.mark.parametrize("question_id, category", [(81, "writing"), (101, "reasoning"),
                                                   (111, "math"), (121, "coding")])
def test_mt_bench_turn_1(fastchat, question_id, category):
    question = _questions()[question_id]
    assert question["category"] == category
    system, user = prompts.mt_bench_single_messages(fastchat, question, ANSWERS, 1, REFERENCES)
    expected = "single-math-v1" if category in {"math", "reasoning", "coding"} else "single-v1"
    assert system == {"role": "system", "content": fastchat[expected].system_prompt}
    assert question["turns"][0] in user["content"] and ANSWERS[0] in user["content"]
    assert question["turns"][1] not in user["content"] and ANSWERS[1] not in user["content"]
    # Only the reference categories see a reference, and only its first turn on turn 1.
    assert (REFERENCES[0] in user["content"]) is (expected == "single-math-v1")
    assert REFERENCES[1] not in user["content"]


@pytest.mark.parametrize("question_id", [82, 102, 112, 122])
def test_mt_bench_turn_2_shows_the_conversation_and_both_references(fastchat, question_id):
    question = _questions()[question_id]
    needs_reference = question["category"] in prompts.MT_BENCH_REFERENCE_CATEGORIES
    system, user = prompts.mt_bench_single_messages(fastchat, question, ANSWERS, 2, REFERENCES)
    name = "single-math-v1-multi-turn" if needs_reference else "single-v1-multi-turn"
    assert system["content"] == fastchat[name].system_prompt
    assert "second" in system["content"]  # the judge is told to focus on turn 2
    text = user["content"]
    for part in (*question["turns"], *ANSWERS):
        assert part in text
    # Conversation order: question 1, answer 1, question 2, answer 2.
    positions = [text.rindex(part) for part in (question["turns"][0], ANSWERS[0],
                                                question["turns"][1], ANSWERS[1])]
    assert positions == sorted(positions)
    assert all((reference in text) is needs_reference for reference in REFERENCES)


def test_mt_bench_references_come_from_the_judge_named_file(fastchat):
    references = prompts.load_mt_bench_references(SHARED_DATA, "gpt-4")
    assert sorted(references) == list(range(101, 131))
    question = _questions()[111]
    _, user = prompts.mt_bench_single_messages(fastchat, question, ANSWERS, 2, references[111])
    assert references[111][0] in user["content"] and references[111][1] in user["content"]
    corrected = prompts.load_mt_bench_references(SHARED_DATA, "gpt-4-0125-preview")
    assert sorted(corrected) == sorted(references)


def test_mt_bench_reference_category_without_reference_is_refused(fastchat):
    with pytest.raises(ValueError, match=r"question 111 \(math\).*load_mt_bench_references"):
        prompts.mt_bench_single_messages(fastchat, _questions()[111], ANSWERS, 1)
    with pytest.raises(ValueError, match="turn must be 1 or 2"):
        prompts.mt_bench_single_messages(fastchat, _questions()[81], ANSWERS, 3)


def test_paper_pairwise_prompt():
    system, user = prompts.paper_pairwise_messages("How do I bake bread?", "Knead it.",
                                                   "Buy it.")
    assert system["content"].startswith("Please act as an impartial judge")
    assert "to the conversation displayed below" in system["content"]  # figure 5 wording
    assert system["content"].endswith("[[A]] if assistant A is better, [[B]] if assistant B "
                                      "is better, and [[C]] for a tie.")
    assert user["content"] == (
        "[Conversation]\nHow do I bake bread?\n\n"
        "[The Start of Assistant A's Answer]\nKnead it.\n[The End of Assistant A's Answer]\n\n"
        "[The Start of Assistant B's Answer]\nBuy it.\n[The End of Assistant B's Answer]")


def test_arena_hard_prompt_and_continuation():
    arena = prompts.load_arena_hard_prompt(SHARED_DATA)
    assert arena.max_attempts == 2
    messages = prompts.arena_hard_messages(arena, "Q?", "baseline says", "model says")
    text = messages[1]["content"]
    assert text.index("baseline says") < text.index("model says")
    assert "[[A>>B]]" in messages[0]["content"]
    follow_up = prompts.arena_hard_continuation(arena, messages, "thinking...")
    assert [m["role"] for m in follow_up] == ["system", "user", "assistant", "user"]
    assert follow_up[-1]["content"] == arena.continue_message
    assert "final verdict label" in arena.continue_message


def test_alpaca_eval_prompt_swaps_the_outputs():
    prompt = prompts.load_alpaca_eval_prompt(SHARED_DATA)
    assert "<|im_start|>" not in prompt.system_prompt + prompt.prompt_template
    plain = prompts.alpaca_eval_messages(prompt, "Say hi {politely}", "BASE", "MODEL",
                                         is_switched=False)[1]["content"]
    swapped = prompts.alpaca_eval_messages(prompt, "Say hi {politely}", "BASE", "MODEL",
                                           is_switched=True)[1]["content"]
    assert '"""Say hi {politely}"""' in plain  # braces in a value are left alone
    # "m" is listed first: unswapped it shows output_1 (the baseline).
    assert plain.index("BASE") < plain.index("MODEL")
    assert swapped.index("MODEL") < swapped.index("BASE")


def test_missing_file_and_missing_prompt_are_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"fastchat_llm_judge_prompts\.jsonl"):
        prompts.load_fastchat_prompts(tmp_path)
    (tmp_path / "judge_prompts").mkdir()
    source = SHARED_DATA / prompts.FASTCHAT_PROMPTS_FILE
    kept = [line for line in source.read_text().splitlines()
            if json.loads(line)["name"] != "single-math-v1"]
    (tmp_path / prompts.FASTCHAT_PROMPTS_FILE).write_text("\n".join(kept))
    with pytest.raises(ValueError, match=r"lacks the MT-Bench prompts \['single-math-v1'\]"):
        prompts.load_fastchat_prompts(tmp_path)
    shutil.copy(SHARED_DATA / prompts.ARENA_HARD_PROMPT_FILE, tmp_path / "judge_prompts")
    record = json.loads((tmp_path / prompts.ARENA_HARD_PROMPT_FILE).read_text())
    del record["prompt_template"]
    (tmp_path / prompts.ARENA_HARD_PROMPT_FILE).write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"missing keys \['prompt_template'\]"):
        prompts.load_arena_hard_prompt(tmp_path)


def test_fill_template_names_missing_and_unused_values():
    with pytest.raises(ValueError, match=r"without a value \['answer'\].*"
                                         r"without a placeholder \['extra'\]"):
        prompts.fill_template("{question} {answer}", {"question": "q", "extra": "x"}, "demo")
