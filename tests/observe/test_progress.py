"""Progress bars: drawn on a terminal (a real pseudo-terminal), nothing off one."""

from __future__ import annotations

import io
import os

from diaspora.observe import Progress


def test_a_bar_is_drawn_on_a_terminal_and_nothing_is_written_elsewhere() -> None:
    leader, follower = os.openpty()
    with open(follower, "w", closefd=True) as tty:
        with Progress("moving things", total=10, stream=tty) as bar:
            assert bar.enabled
            bar.advance(4, note="4 of 10")
            bar.update(10)
        tty.flush()
        drawn = os.read(leader, 65536).decode(errors="replace")
    os.close(leader)
    assert "moving things" in drawn
    quiet = io.StringIO()
    with Progress("moving things", total=10, stream=quiet) as bar:
        bar.advance(10)
    assert (bar.enabled, quiet.getvalue()) == (False, "")


def test_the_environment_turns_it_off_even_on_a_terminal(monkeypatch) -> None:
    monkeypatch.setenv("DIASPORA_PROGRESS", "0")
    leader, follower = os.openpty()
    with open(follower, "w", closefd=True) as tty, Progress("x", stream=tty) as bar:
        assert not bar.enabled
    os.close(leader)
