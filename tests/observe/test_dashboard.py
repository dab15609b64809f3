"""``diaspora dashboard`` in headless Chromium against a real tree: a crash and a link fault
show up live (the restart in the tree, new points in the lag plot, both faults with their
recoveries in the timeline), through a server restart; non-loopback binds need a token."""

from __future__ import annotations

import os
import shutil
import signal
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pytest

from diaspora.cli import main
from diaspora.errors import ConfigError
from diaspora.fabric import Fabric, LinkControl, LinkProxy
from diaspora.observe import Watcher
from diaspora.observe._dashboard import check_bind, serve
from diaspora.testing import Injector, wait_until
from diaspora.testing.plugin import WorkflowRunner
from diaspora.workflow import parse_config
from tests.observe.cli_helpers import cli_env, diaspora_cmd, quiet_logs_restored
from tests.observe.trees import SLOW, burst

#: Where the browser test leaves its screenshots (gitignored; CI may collect them).
ARTIFACTS = Path(
    os.environ.get("DIASPORA_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts")
)

pytestmark = pytest.mark.anyio

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no system Chromium (apt-get install -y chromium)"
)


async def _get(url: str, **headers: str) -> tuple[int, bytes]:
    """GET ``url``; a request unanswered for 20 s fails the test instead of hanging it."""

    def get() -> tuple[int, bytes]:
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=20) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    return await anyio.to_thread.run_sync(get)


def test_a_non_loopback_bind_needs_a_long_token() -> None:
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    with pytest.raises(ConfigError, match=r"--bind 0\.0\.0\.0 is not a loopback.*--token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(ConfigError, match="shorter than 16"):
        check_bind("192.0.2.1", "short")
    check_bind("0.0.0.0", "x" * 24)


def test_the_command_refuses_a_non_loopback_bind_without_a_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with quiet_logs_restored():
        assert main(["dashboard", "--url", "nats://127.0.0.1:9", "--bind", "0.0.0.0"]) == 2
    assert "not a loopback address" in capsys.readouterr().err


async def test_with_a_token_every_request_must_carry_it(fabric: Fabric) -> None:
    token = "t0ken-" + "x" * 20
    ready, bound = anyio.Event(), []
    async with (
        Fabric(fabric.urls, events_stream=False) as observer,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(
            lambda: serve(Watcher(observer), port=0, token=token, ready=ready, bound=bound)
        )
        await ready.wait()
        base = f"http://127.0.0.1:{bound[0]}"
        assert (await _get(f"{base}/"))[0] == 403
        assert (await _get(f"{base}/state?token=wrong"))[0] == 403
        status, body = await _get(f"{base}/?token={token}")
        assert status == 200
        assert f"stream?token={token}".encode() in body
        assert (await _get(f"{base}/state", Authorization=f"Bearer {token}"))[0] == 200
        tg.cancel_scope.cancel()


async def _count(page, selector: str) -> int:
    return int(await page.locator(selector).count())


@needs_chromium
async def test_the_page_in_chromium_shows_a_crash_and_a_link_fault_live_with_recoveries(
    fabric: Fabric, workflow: WorkflowRunner, injector: Injector, link_proxy: LinkProxy,
    tmp_path: Path,
) -> None:  # fmt: skip
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - before the event loop is busy
    from playwright.async_api import async_playwright

    await fabric.ensure_stream("obs.in")
    ready, bound = anyio.Event(), []
    async with (
        workflow(parse_config(SLOW)) as wf,
        LinkControl(fabric, "edge", link_proxy),
        Injector(fabric, link_site="edge") as links,
        Fabric(fabric.urls, name="dashboard", events_stream=False) as observer,
        async_playwright() as pw,
        anyio.create_task_group() as tg,
    ):
        await wf.wait_running()
        watcher = Watcher(observer, poll_s=0.5)
        tg.start_soon(lambda: serve(watcher, port=0, ready=ready, bound=bound))
        await ready.wait()
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1400, "height": 1100})
        await page.goto(f"http://127.0.0.1:{bound[0]}/")
        await page.wait_for_selector('#live[data-live="yes"]', timeout=20_000)
        row = 'tr[data-actor="root.slow"]'
        await page.wait_for_selector(f'{row}[data-state="running"]', timeout=20_000)
        url_before = page.url

        async def lag_points() -> int:
            points = await page.get_attribute("#lag-plot svg", "data-points")
            return int(points or 0)

        before = await lag_points()
        await burst(fabric)  # a backlog first, then the crash in it: the restart catches up
        await injector.crash("root.slow")
        await page.wait_for_selector(f'{row}[data-restarts="1"]', timeout=30_000)
        await wait_until(lambda: _more(lag_points, before), timeout=30, what="new lag points")
        await links.cut_link(duration=0.5)
        crash = 'tr[data-kind="crash"][data-who="root.slow"][data-open="false"]'
        cut = 'tr[data-kind="link cut_link"][data-who="edge"][data-open="false"]'
        await page.wait_for_selector(cut, timeout=30_000)
        await page.wait_for_selector(crash, timeout=30_000)
        for selector in (crash, cut):
            assert "recovered in" in await page.inner_text(selector)
            assert float(await page.get_attribute(selector, "data-recovery") or -1) >= 0
        assert await _count(page, 'tr[data-kind="restart"][data-who="root.slow"]') == 1
        assert await _count(page, 'tr[data-site="edge"][data-state="up"]') == 1
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

        # the fabric under the dashboard restarts: the page goes on with live updates
        await injector.restart_server()
        await wf.wait_running()
        await injector.crash("root.slow")
        await fabric.publish("obs.in", {"i": 600})
        await page.wait_for_selector(f'{row}[data-restarts="2"]', timeout=30_000)
        assert page.url == url_before  # never reloaded
        await page.screenshot(path=str(ARTIFACTS / "dashboard-after-restart.png"), full_page=True)
        await browser.close()
        tg.cancel_scope.cancel()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


async def _more(points, before: int) -> bool:
    return await points() > before


async def test_the_command_serves_the_page_on_loopback_and_ctrl_c_ends_it(fabric: Fabric) -> None:
    cmd = diaspora_cmd("dashboard", "--url", fabric.urls[0], "--port", "0")
    async with await anyio.open_process(cmd, env=cli_env()) as proc:
        assert proc.stderr is not None
        said = b""
        with anyio.fail_after(30):
            while b"\n" not in said.partition(b"diaspora dashboard: ")[2]:
                said += await proc.stderr.receive()
        url = said.partition(b"diaspora dashboard: ")[2].split()[0].decode()
        assert url.startswith("http://127.0.0.1:")
        status, body = await _get(url)
        assert status == 200
        assert b'id="tree"' in body
        proc.send_signal(signal.SIGINT)
        with anyio.fail_after(20):
            assert await proc.wait() == 0
