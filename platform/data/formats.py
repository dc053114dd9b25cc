"""The input formats of SPEC section 3: one parsed record to the fields of a normal row.

Three kinds of feedback, each in a plain and a conversational layout:

- ``binary``: ``prompt``, ``completion``, ``label`` (a JSON boolean), or ``messages`` and
  ``label``;
- ``paired``: ``prompt``, ``chosen``, ``rejected``, or only ``chosen`` and ``rejected``
  holding whole dialogues that differ in the final assistant reply: HH-RLHF text
  (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``) or lists of turns;
- ``scored``: ``prompt``, ``response`` and a numeric score (``data.score_field``), or
  ``messages`` and the score; thumbs-up when the score reaches ``data.up_threshold``.

In ``messages`` the last turn (an assistant turn) is the completion and the earlier turns
are the prompt. A prompt of several turns is kept as the JSON text of its turns
(``chat`` true); a prompt of one user turn is kept as plain text, since both render the
same way. Turns keep only ``role`` and ``content``.

A defect is reported as ``"<reason>: <detail>"``: the reason (no ``": "`` in it) names the
kind of defect and is what bad rows are counted by; the detail shows the value.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

BINARY = "binary"
PAIRED = "paired"
SCORED = "scored"
KINDS = (PAIRED, BINARY, SCORED)  # the order auto-detection tries them in
ROLES = ("system", "user", "assistant")
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}

Fields = dict[str, Any]
Turns = list[dict[str, str]]


@dataclass(frozen=True)
class RowRules:
    """How records are read: the expected kind and the scored-row settings."""

    expected: str = "auto"  # auto, binary, paired or scored
    score_field: str = "helpfulness"
    up_threshold: float = 4.0


class _Defect(ValueError):
    """A record's defect; caught in :func:`check_record` and returned as text."""


def defect_reason(problem: str) -> str:
    """The countable reason of a defect text (the part before the first ``": "``)."""
    return problem.split(": ", 1)[0]


def check_record(record: Any, rules: RowRules) -> tuple[str, Fields]:
    """(problem, normal fields) of one parsed record; ``problem`` is "" when it is good."""
    if not isinstance(record, dict):
        return f"not an object: a row must be a JSON object, got {type(record).__name__}", {}
    kind = detect_kind(record, rules)
    if kind is None:
        return _missing_fields(record, rules), {}
    try:
        fields = _CHECKS[kind](record, rules)
    except _Defect as exc:
        return str(exc), {}
    return "", {"kind": kind, **fields}


def _layouts(rules: RowRules) -> dict[str, tuple[tuple[str, ...], ...]]:
    score = rules.score_field
    return {
        PAIRED: (("prompt", "chosen", "rejected"), ("chosen", "rejected")),
        BINARY: (("prompt", "completion", "label"), ("messages", "label")),
        SCORED: (("prompt", "response", score), ("messages", score)),
    }


def detect_kind(record: dict[str, Any], rules: RowRules) -> str | None:
    """The kind whose fields the record has (``rules.expected`` unless it is auto)."""
    layouts = _layouts(rules)
    kinds = KINDS if rules.expected == "auto" else (rules.expected,)
    for kind in kinds:
        if any(all(name in record for name in layout) for layout in layouts[kind]):
            return kind
    return None


def _missing_fields(record: dict[str, Any], rules: RowRules) -> str:
    layouts = _layouts(rules)
    kinds = KINDS if rules.expected == "auto" else (rules.expected,)
    wanted = "; ".join(
        f"a {kind} row needs " + " or ".join(str(list(layout)) for layout in layouts[kind])
        for kind in kinds
    )
    return f"missing fields: {wanted}; this row has {sorted(record)}"


# ---------------------------------------------------------------- kinds


def _check_binary(record: dict[str, Any], rules: RowRules) -> Fields:
    if "prompt" in record and "completion" in record:
        prompt, chat = _prompt(record["prompt"])
        completion = _reply("completion", record["completion"])
    else:
        prompt, chat, completion = _split_messages("messages", record["messages"])
    return {"prompt": prompt, "chat": chat, "completion": completion,
            "label": _label(record["label"])}


def _check_paired(record: dict[str, Any], rules: RowRules) -> Fields:
    if "prompt" in record:
        prompt, chat = _prompt(record["prompt"])
        chosen = _reply("chosen", record["chosen"])
        rejected = _reply("rejected", record["rejected"])
    else:
        prompt, chat, chosen, rejected = _split_dialogue_pair(record)
    return {"prompt": prompt, "chat": chat, "chosen": chosen, "rejected": rejected}


def _check_scored(record: dict[str, Any], rules: RowRules) -> Fields:
    if "prompt" in record and "response" in record:
        prompt, chat = _prompt(record["prompt"])
        completion = _reply("response", record["response"])
    else:
        prompt, chat, completion = _split_messages("messages", record["messages"])
    score = _score(rules.score_field, record[rules.score_field])
    return {"prompt": prompt, "chat": chat, "completion": completion, "score": score,
            "label": score >= rules.up_threshold}


_CHECKS = {BINARY: _check_binary, PAIRED: _check_paired, SCORED: _check_scored}


# ---------------------------------------------------------------- fields


def _text(name: str, value: Any) -> str:
    if value is None:
        raise _Defect(f"field {name!r} is missing or null")
    if not isinstance(value, str):
        raise _Defect(f"field {name!r} must be a string: got {type(value).__name__} "
                      f"{value!r:.60}")
    if not value.strip():
        raise _Defect(f"field {name!r} is empty")
    if "\ufffd" in value:
        raise _Defect(f"field {name!r} holds bytes that are not valid UTF-8")
    return value


def _label(value: Any) -> bool:
    if value is None:
        raise _Defect("field 'label' is missing or null")
    if not isinstance(value, bool):  # strict: 1, "true" or "yes" are not booleans
        raise _Defect(
            "field 'label' is not a boolean: must be true (thumbs-up) or false (thumbs-down), "
            f"got {value!r} ({type(value).__name__})"
        )
    return value


def _score(name: str, value: Any) -> float:
    if value is None:
        raise _Defect(f"field {name!r} is missing or null")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Defect(f"field {name!r} is not a number: got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise _Defect(f"field {name!r} is not a finite number: got {value!r}")
    return float(value)


def _prompt(value: Any) -> tuple[str, bool]:
    """(prompt text or JSON of its turns, chat) of a ``prompt`` field."""
    if not isinstance(value, list):
        return _text("prompt", value), False
    turns = _turns("prompt", value)
    if turns and turns[-1]["role"] == "assistant":
        raise _Defect("field 'prompt' ends with an assistant turn: the completion must "
                      "answer a user turn")
    return _prompt_of(turns, "prompt")


def _reply(name: str, value: Any) -> str:
    """A completion: text, or a list holding one assistant turn (TRL's chat layout)."""
    if isinstance(value, list):
        turns = _turns(name, value)
        if len(turns) != 1 or turns[0]["role"] != "assistant":
            raise _Defect(f"field {name!r} is not one assistant turn: a list completion must "
                          f"hold exactly one assistant turn, got roles "
                          f"{[t['role'] for t in turns]}")
        return _text(name, turns[0]["content"])
    return _text(name, value)


def _turns(name: str, value: Any) -> Turns:
    if not isinstance(value, list):
        raise _Defect(f"field {name!r} is not a list of turns: got {type(value).__name__} "
                      f"{value!r:.60}")
    if not value:
        raise _Defect(f"field {name!r} is empty")
    turns = []
    for index, turn in enumerate(value):
        if (not isinstance(turn, dict) or turn.get("role") not in ROLES
                or not isinstance(turn.get("content"), str)):
            raise _Defect(f"field {name!r} has a malformed turn: turn {index} must be an "
                          f"object with a role in {list(ROLES)} and a string content, got "
                          f"{turn!r:.80}")
        turns.append({"role": turn["role"], "content": turn["content"]})
    return turns


def _split_messages(name: str, value: Any) -> tuple[str, bool, str]:
    """(prompt, chat, completion) of a conversation: the final assistant turn answers."""
    turns = _turns(name, value)
    if turns[-1]["role"] != "assistant":
        raise _Defect(f"field {name!r} does not end with an assistant turn: the last role is "
                      f"{turns[-1]['role']!r}; the final assistant turn is the completion")
    if len(turns) < 2 or turns[-2]["role"] != "user":
        raise _Defect(f"field {name!r} has no user turn before the final assistant turn: "
                      f"roles {[t['role'] for t in turns]}")
    prompt, chat = _prompt_of(turns[:-1], name)
    return prompt, chat, _text(name, turns[-1]["content"])


def _prompt_of(turns: Turns, name: str) -> tuple[str, bool]:
    if not any(turn["role"] == "user" for turn in turns):
        raise _Defect(f"field {name!r} has no user turn: roles {[t['role'] for t in turns]}")
    if len(turns) == 1:
        return _text(name, turns[0]["content"]), False
    return json.dumps(turns, ensure_ascii=False, separators=(",", ":")), True


def _split_dialogue_pair(record: dict[str, Any]) -> tuple[str, bool, str, str]:
    """Chosen and rejected dialogues that share every turn but the final reply."""
    chosen = _dialogue("chosen", record["chosen"])
    rejected = _dialogue("rejected", record["rejected"])
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if turns[-1]["role"] != "assistant":
            raise _Defect(f"field {name!r} does not end with an assistant turn: the last "
                          f"role is {turns[-1]['role']!r}")
    if chosen[:-1] != rejected[:-1]:
        raise _Defect("chosen and rejected differ before the final reply: both dialogues "
                      "must share every turn but the last assistant turn")
    if len(chosen) < 2 or chosen[-2]["role"] != "user":
        raise _Defect("field 'chosen' has no user turn before the final assistant turn")
    prompt, chat = _prompt_of(chosen[:-1], "chosen")
    return (prompt, chat, _text("chosen", chosen[-1]["content"]),
            _text("rejected", rejected[-1]["content"]))


def _dialogue(name: str, value: Any) -> Turns:
    """Turns of a dialogue given as a list of turns or as HH-RLHF text."""
    if isinstance(value, list):
        return _turns(name, value)
    text = _text(name, value)
    if not text.lstrip("\n").startswith("Human:"):
        raise _Defect(
            "missing fields: a paired row needs 'prompt', or whole dialogues in 'chosen' and "
            f"'rejected' (HH-RLHF text starting with '\\n\\nHuman:', or lists of turns); "
            f"{name!r} starts with {text[:40]!r}"
        )
    return parse_hh_dialogue(text)


def parse_hh_dialogue(text: str) -> Turns:
    """HH-RLHF text (``\\n\\nHuman: ...\\n\\nAssistant: ...``) as a list of turns."""
    parts = _HH_TURN.split("\n\n" + text.lstrip("\n"))
    # parts: ["", role, content, role, content, ...]
    return [{"role": _HH_ROLES[role], "content": content.strip()}
            for role, content in zip(parts[1::2], parts[2::2], strict=True)]
