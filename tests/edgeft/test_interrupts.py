"""Ctrl-C around commits (edgeft/interrupts.py): a forced bundle replace is never cut
between its two renames, and a fine-tune given a Ctrl-C that a finalizer swallowed does not
write its bundle. Real signals to this process; the timing of each is pinned by running it
from inside the step it must hit."""

from __future__ import annotations

import gc
import os
import signal

import pytest

from edgeft import atomic
from tests.conftest import tiny_bundle


def _fill(text: str):
    def fill(tmp):
        (tmp / "weights.pt").write_text(text)

    return fill


def test_a_ctrl_c_between_the_two_renames_of_a_forced_replace_is_held(tmp_path, monkeypatch):
    out = tmp_path / "bundle"
    atomic.replace_dir(out, _fill("old"))
    real_rename, calls = os.rename, []

    def rename(src, dst):
        real_rename(src, dst)
        calls.append(dst)
        if len(calls) == 1:  # the old folder is aside, the new one not yet in place
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(1000))  # the default handler would raise here, between the renames

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        atomic.replace_dir(out, _fill("new"))
    assert len(calls) == 2  # both renames ran, then the interrupt
    assert (out / "weights.pt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no .old-, no .partial-


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed one
def test_a_ctrl_c_a_finalizer_swallowed_during_training_stops_the_bundle_write(
    tmp_path, monkeypatch
):
    """Python swallows a KeyboardInterrupt raised while a finalizer runs ("Exception ignored
    in ..."): training goes on, and the fine-tune must still not write its bundle."""
    from edgeft.train import training

    real_train = training.train

    class SignalsWhenCollected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)  # handled on the next bytecode: this finalizer
            sum(range(1000))

    def train(*args, **kwargs):
        run = real_train(*args, **kwargs)
        SignalsWhenCollected()
        gc.collect()
        return run  # returned: the interrupt was swallowed

    monkeypatch.setattr(training, "train", train)
    with pytest.raises(KeyboardInterrupt):
        tiny_bundle(tmp_path, n_per_class=8)  # writes tmp_path/data, then tmp_path/bundle
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no bundle, no partial
