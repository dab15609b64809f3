"""``diaspora top`` in a pseudo-terminal against a real tree: a crash, its restart and a lag
spike appear; keys sort and filter; ``q`` exits 0 and gives the terminal back."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import pexpect
import pytest

from diaspora.cli import main
from diaspora.fabric import Fabric
from diaspora.testing import Injector, wait_until
from diaspora.testing.plugin import WorkflowRunner
from diaspora.workflow import parse_config
from tests.observe.cli_helpers import cli_env, diaspora_cmd, quiet_logs_restored
from tests.observe.trees import SLOWER, burst

pytestmark = pytest.mark.anyio

_STYLE = re.compile(r"\x1b\[[0-9;]*m")
_MOVE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


def plain(text: str) -> str:
    """The text without styles; cursor moves (a redraw) become line breaks."""
    return _MOVE.sub("\n", _STYLE.sub("", text))


class Screen:
    """What a pexpect child wrote, without escape sequences, read as table rows."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child
        self.text = ""

    def read(self) -> None:
        while True:
            try:
                self.text += self.child.read_nonblocking(100_000, timeout=0)
            except (pexpect.TIMEOUT, pexpect.EOF):
                return

    def rows(self, first: str) -> list[list[str]]:
        """Every table row (cells split on the column rule) whose first cell is ``first``."""
        found = []
        for line in plain(self.text).splitlines():
            cells = [c.strip() for c in line.split("│")]
            if cells and cells[0] == first:
                found.append(cells)
        return found

    async def wait_for(self, check, what: str, timeout: float = 30) -> None:
        async def seen() -> bool:
            self.read()
            return bool(check())

        await wait_until(seen, timeout=timeout, what=what)


async def test_top_in_a_pty_shows_the_crash_the_restart_and_the_lag_spike_and_q_exits(
    fabric: Fabric, workflow: WorkflowRunner, injector: Injector
) -> None:
    await fabric.ensure_stream("obs.in")
    async with workflow(parse_config(SLOWER)) as wf:
        await wf.wait_running()
        cmd = diaspora_cmd("top", "--url", fabric.urls[0])
        child = pexpect.spawn(
            cmd[0], cmd[1:], dimensions=(50, 200), encoding="utf-8",
            env=cli_env(TERM="xterm-256color"),
        )  # fmt: skip
        screen = Screen(child)
        try:
            await screen.wait_for(lambda: screen.rows("root.slow"), "the actor's row")
            (_, state, *_rest) = screen.rows("root.slow")[-1]
            assert state == "running"
            # the backlog is in the stream first, then the crash, at the next of its
            # messages: at 20 ms an input the restart finds hundreds left (a lag spike)
            # however slowly the burst went out
            await burst(fabric)
            await injector.crash("root.slow")

            def restart_and_lag() -> bool:
                rows = screen.rows("root.slow")  # actor, state, where, inc, restarts, ..., lag
                return any(r[3] == "1" and r[4] == "1" and r[7].isdigit() and int(r[7]) > 50
                           for r in rows)  # fmt: skip

            await screen.wait_for(restart_and_lag, "a restart and a lag over 50")
            await screen.wait_for(
                lambda: re.search(r"crash\s*│\s*root\.slow\s*│\s*\d+\.\d\ds", _plain(screen)),
                "the crash with its recovery in the timeline",
            )
            assert re.search(r"restart\s*│\s*root\.slow\s*│", _plain(screen))
            # keys: sort by lag, filter to an id that matches nothing, quit
            child.send("s")
            await screen.wait_for(lambda: "sort lag" in _plain(screen), "sort by lag")
            child.send("/nosuch\r")
            await screen.wait_for(
                lambda: "no row matches the filter" in _plain(screen), "the filter"
            )
            child.send("q")
            with anyio.fail_after(20):
                while child.isalive():
                    screen.read()
                    await anyio.sleep(0.05)
            assert child.exitstatus == 0
            assert "\x1b[?1049l" in screen.text  # the alternate screen is left
        finally:
            if child.isalive():
                child.terminate(force=True)


def _plain(screen: Screen) -> str:
    return plain(screen.text)


def test_top_of_a_recorded_file_prints_a_frame_off_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded = tmp_path / "events.jsonl"
    recorded.write_text(
        '{"seq":1,"category":"actor","name":"root.sum","kind":"started","time":1.0,'
        '"positions":{"numbers":0},"epoch":1,"pid":7}\n'
        '{"seq":2,"category":"actor","name":"root.sum","kind":"crashed","time":2.0,'
        '"reason":"boom"}\n'
    )
    with quiet_logs_restored():
        assert main(["top", str(recorded)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"root\.sum\s*│\s*crashed", out)
    assert re.search(r"crash\s*│\s*root\.sum\s*│\s*open\s*│\s*boom", out)
