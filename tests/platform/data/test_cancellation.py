"""A Ray task cancelled during its first import must not leave the worker unable to import."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from platform.data.cancellation import interrupts_deferred

REPO = Path(__file__).resolve().parents[3]


def test_an_interrupt_waits_for_the_block_and_is_raised_after_it():
    finished = False
    with pytest.raises(KeyboardInterrupt, match="once it ended"):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal arrives and is held
            finished = True
    assert finished
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_an_interrupt_nothing_is_raised_and_errors_pass_through():
    with interrupts_deferred():
        pass
    with pytest.raises(ValueError, match="bad"), interrupts_deferred():
        raise ValueError("bad")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_off_the_main_thread_it_does_nothing():
    errors = []

    def body():
        try:
            with interrupts_deferred():
                pass
        except Exception as exc:  # signal.signal would raise ValueError off the main thread
            errors.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert errors == []


_LOAD_UNDER_CANCELLATION = """
import signal, sys, threading
from platform.data.tokenize import load_tokenizer

path = sys.argv[1]
# Ray's cancellation of a running task: SIGINT to the main thread, here while the first
# load of a fresh process is still importing transformers and torch.
threading.Timer(0.3, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
try:
    load_tokenizer(path)
    print("not interrupted")
except KeyboardInterrupt as exc:
    print("interrupted:", exc)
load_tokenizer.cache_clear()
print("second load:", type(load_tokenizer(path)).__name__)
"""


def test_a_tokenizer_load_cancelled_mid_import_leaves_the_process_able_to_load(tiny_model_path):
    result = subprocess.run([sys.executable, "-c", _LOAD_UNDER_CANCELLATION, tiny_model_path],
                            cwd=REPO, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    # The cancellation is not lost: it is raised once the import and the load are whole.
    assert lines[0] == ("interrupted: interrupted while a first import ran; raised once it "
                        "ended"), result.stdout
    assert lines[1].startswith("second load: ") and "Tokenizer" in lines[1], result.stdout
