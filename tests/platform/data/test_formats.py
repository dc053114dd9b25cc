"""Input formats: scored, conversational and HH-RLHF rows to the normal form."""

from __future__ import annotations

import json

import pytest

from platform.data.formats import BINARY, PAIRED, SCORED, RowRules, check_record
from platform.data.readers import coerce_csv_record

RULES = RowRules()
TURNS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2 + 2?"}]


def _good(record: dict, rules: RowRules = RULES) -> dict:
    problem, fields = check_record(record, rules)
    assert problem == ""
    return fields


@pytest.mark.parametrize(("score", "label"), [(4, True), (4.5, True), (3, False), (0, False)])
def test_scored_rows_are_thumbs_up_from_the_threshold_on(score, label):
    fields = _good({"prompt": "p", "response": "r", "helpfulness": score, "correctness": 1})
    assert fields["kind"] == SCORED and fields["label"] is label
    assert fields["completion"] == "r" and fields["score"] == float(score)


def test_the_score_field_and_threshold_are_configurable():
    rules = RowRules(score_field="rating", up_threshold=7)
    assert _good({"prompt": "p", "response": "r", "rating": 7}, rules)["label"] is True
    assert _good({"prompt": "p", "response": "r", "rating": 6.9}, rules)["label"] is False
    problem, _ = check_record({"prompt": "p", "response": "r", "helpfulness": 4}, rules)
    assert problem.startswith("missing fields") and "'rating'" in problem


def test_messages_give_a_multi_turn_prompt_and_the_last_assistant_turn():
    messages = TURNS + [{"role": "assistant", "content": "4."}]
    fields = _good({"messages": messages, "label": True})
    assert fields["kind"] == BINARY and fields["chat"] is True
    assert json.loads(fields["prompt"]) == TURNS and fields["completion"] == "4."
    scored = _good({"messages": messages, "helpfulness": 2})
    assert scored["kind"] == SCORED and scored["label"] is False


def test_a_one_turn_conversation_keeps_a_plain_prompt():
    fields = _good({"messages": [{"role": "user", "content": "2 + 2?"},
                                 {"role": "assistant", "content": "4."}], "label": False})
    assert (fields["prompt"], fields["chat"]) == ("2 + 2?", False)


def test_trl_conversational_pairs_are_read():
    fields = _good({"prompt": TURNS, "chosen": [{"role": "assistant", "content": "4."}],
                    "rejected": [{"role": "assistant", "content": "5."}]})
    assert fields["kind"] == PAIRED and (fields["chosen"], fields["rejected"]) == ("4.", "5.")


def test_hh_rlhf_dialogues_become_a_shared_prompt_and_two_replies():
    dialogue = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: 2 + 2?\n\nAssistant:"
    fields = _good({"chosen": dialogue + " 4.", "rejected": dialogue + " 5, surely."})
    assert fields["kind"] == PAIRED and fields["chat"] is True
    assert json.loads(fields["prompt"]) == TURNS[1:]
    assert (fields["chosen"], fields["rejected"]) == ("4.", "5, surely.")


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"},
         "chosen and rejected differ before the final reply"),
        ({"chosen": "\n\nHuman: a\n\nAssistant:", "rejected": "\n\nHuman: a\n\nAssistant: d"},
         "field 'chosen' is empty"),
        ({"chosen": "\n\nHuman: a", "rejected": "\n\nHuman: a"},
         "field 'chosen' does not end with an assistant turn"),
        ({"chosen": "just text", "rejected": "other"}, "missing fields"),
        ({"prompt": TURNS + [{"role": "assistant", "content": "x"}], "completion": "c",
          "label": True}, "field 'prompt' ends with an assistant turn"),
        ({"messages": [{"role": "assistant", "content": "x"}], "label": True},
         "field 'messages' has no user turn before the final assistant turn"),
        ({"prompt": "p", "chosen": [{"role": "user", "content": "x"}], "rejected": "r"},
         "field 'chosen' is not one assistant turn"),
    ],
)
def test_malformed_dialogues_are_bad_rows_with_a_reason(record, reason):
    problem, fields = check_record(record, RULES)
    assert problem.split(": ", 1)[0] == reason
    assert fields == {}


def test_csv_cells_are_typed_strictly():
    record = coerce_csv_record({"prompt": "p", "completion": "c", "label": "TRUE"}, RULES)
    assert record["label"] is True
    for cell in ("yes", "1"):  # not booleans: reported with their value
        record = coerce_csv_record({"prompt": "p", "completion": "c", "label": cell}, RULES)
        assert f"got {cell!r} (str)" in check_record(record, RULES)[0]
    scored = coerce_csv_record({"prompt": "p", "response": "r", "helpfulness": "nan"}, RULES)
    assert check_record(scored, RULES)[0].startswith("field 'helpfulness' is not a finite")
    empty = coerce_csv_record({"prompt": "p", "completion": "", "label": "false"}, RULES)
    assert check_record(empty, RULES)[0] == "field 'completion' is missing or null"
    chat = coerce_csv_record({"messages": json.dumps(TURNS[1:3]), "label": "true"}, RULES)
    assert _good(chat)["completion"] == "Hello!"
