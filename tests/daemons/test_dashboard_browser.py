"""The dashboard in a real headless browser (Debian's chromium driven through selenium; issue 16):
the cluster page lists every node, a run page shows every task id, and a task's state changes on
the page without a reload (server-sent events). Screenshots of both pages are saved in
tests/artifacts/. Skips, saying why, only where no chromium can be installed (`make browser`)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

import handoffd
from handoffd.observability.tokens import http_token

try:
    from selenium.common.exceptions import StaleElementReferenceException
except ImportError:  # the test skips before it would need it
    StaleElementReferenceException = RuntimeError  # type: ignore[misc,assignment]
from handoffd.testing import DaemonCluster, free_port, wait_for
from handoffd.transport.keys import load_local_key

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(240)
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def _browser():  # type: ignore[no-untyped-def]
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(
            "no chromium/chromedriver on this machine: `make browser` installs Debian's "
            "(apt-get install chromium chromium-driver, as root)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1100", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"):  # fmt: skip
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


def _gate(path: str) -> str:
    import os
    import time

    deadline = time.monotonic() + 90
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    print("gate: opened at last")
    return "opened"


def _flaky(marker: str) -> int:
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        print("flaky: first try")
        raise KeyError("dashboard test: the first attempt fails")
    print("flaky: second try")
    return 1


KNOWN_LINE = "talk: the answer is 42"
# Printed by a task: the page must show it as text, never run or render it.
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold?</b>'


def _talk(line: str, hostile: str) -> int:
    import logging
    import sys

    print(line)
    print(hostile)
    sys.stderr.write("talk: to stderr\n")
    logging.getLogger("talk").warning("talk: logged")
    return 0


def _work(*xs: int, k: int = 0) -> int:
    return k + len(xs)


def test_dashboard_cluster_and_run_pages_update_live(daemons: DaemonCluster, tmp_path) -> None:
    browser = _browser()
    try:
        ports = [free_port(), free_port()]
        a = daemons.start(cpu=2, memory=2000, extra=["--http-port", str(ports[0])])
        b = daemons.start(
            cpu=2, memory=2000, seeds=[a.address], extra=["--http-port", str(ports[1])]
        )
        token = http_token(load_local_key(os.path.join(daemons.workdir, "local.key")).secret)
        base = f"http://127.0.0.1:{ports[0]}"
        ARTIFACTS.mkdir(exist_ok=True)

        browser.get(f"{base}/?token={token}")
        names = {a.name, b.name}
        wait_for(
            lambda: names <= {e.get_attribute("data-node") for e in browser.find_elements("css selector", "tr[data-node]")}
            and all(e.text == "ALIVE" for e in browser.find_elements("css selector", "tr[data-node] .badge")),
            30,
            what="both nodes ALIVE on the cluster page",
        )  # fmt: skip
        assert "handoffd" in browser.title
        browser.save_screenshot(str(ARTIFACTS / "dashboard-cluster.png"))

        gate = str(tmp_path / "gate")
        dag = handoffd.DAG()
        for i in range(6):
            dag.add_function(handoffd.Function(id=f"load{i}", code=_work, kwargs={"k": i}))
        dag.add_function(
            handoffd.Function(id="flaky", code=_flaky, extra_args=[str(tmp_path / "m")])
        )
        dag.add_function(handoffd.Function(id="gate", code=_gate, extra_args=[gate]))
        dag.add_function(handoffd.Function(id="talk", code=_talk, extra_args=[KNOWN_LINE, HOSTILE]))
        dag.add_function(
            handoffd.Function(
                id="merge", code=_work, args=[f"load{i}" for i in range(6)] + ["flaky"]
            )
        )
        dag.add_function(handoffd.Function(id="final", code=_work, args=["merge", "gate"]))
        with handoffd.connect(a.address, timeout=10) as client:
            run = client.submit(dag, max_retries=2)
            browser.get(f"{base}/runs/{run.id}")  # the cookie set by ?token= carries the token

            def row_state(task: str) -> str | None:
                rows = browser.find_elements("css selector", f'tr[data-task="{task}"]')
                return rows[0].get_attribute("data-state") if rows else None

            def output_text(task: str, part: str = "pre.output-text") -> str:
                # (re-found each time: a redraw replaces the element)
                try:
                    found = browser.find_elements(
                        "css selector", f'div.output[data-output-task="{task}"] {part}'
                    )
                    return "".join(e.get_attribute("textContent") for e in found)
                except StaleElementReferenceException:
                    return ""

            def open_output(task: str) -> None:
                for _ in range(20):  # (a redraw may replace the button under the click)
                    try:
                        browser.find_element(
                            "css selector", f'button[data-output-toggle="{task}"]'
                        ).click()
                        return
                    except StaleElementReferenceException:
                        time.sleep(0.05)
                raise AssertionError(f"could not click {task}'s output button")

            want = {f"load{i}" for i in range(6)} | {"flaky", "gate", "merge", "final", "talk"}
            wait_for(
                lambda: want <= {e.get_attribute("data-task") for e in browser.find_elements("css selector", "tr[data-task]")},
                30,
                what="every task id on the run page",
            )  # fmt: skip
            nodes = {
                e.get_attribute("data-task-id")
                for e in browser.find_elements("css selector", "#dag .task-node")
            }
            assert want <= nodes  # fmt: skip
            wait_for(
                lambda: row_state("gate") == "ASSIGNED", 30, what="the gate task out on a node"
            )
            wait_for(lambda: row_state("merge") == "DONE", 30, what="merge done")
            page = browser.execute_script("return window.__handoffd.pageId")
            updates = browser.execute_script("return window.__handoffd.updates")
            assert row_state("final") == "PENDING"
            # The gate's output opened while it runs: nothing yet, then its line once it ended.
            open_output("gate")
            wait_for(
                lambda: "no output kept" in output_text("gate", "p.muted"), 15,
                what="the gate's (empty) output open",
            )  # fmt: skip
            Path(gate).touch()
            wait_for(lambda: row_state("gate") == "DONE", 30, what="the gate task DONE on the page")
            wait_for(
                lambda: row_state("final") == "DONE", 30, what="the final task DONE on the page"
            )
            wait_for(
                lambda: "gate: opened at last" in output_text("gate"), 15,
                what="the gate's output shown when it ended, without a click",
            )  # fmt: skip
            # The same page (no reload) got the news through its event stream.
            assert browser.execute_script("return window.__handoffd.pageId") == page
            assert browser.execute_script("return window.__handoffd.updates") > updates

            def failure(part: str) -> str:
                # (re-found each time: a redraw replaces the element)
                try:
                    return browser.find_element(
                        "css selector", f'details.failure[data-task="flaky"] {part}'
                    ).get_attribute("textContent")
                except StaleElementReferenceException:
                    return ""

            wait_for(lambda: "KeyError" in failure("summary"), 10, what="the failure listed")
            text = failure("pre")
            assert "the first attempt fails" in text and "Traceback" in text
            browser.execute_script('document.querySelector("details.failure").open = true')
            assert (
                len(browser.find_elements("css selector", "#gantt rect.attempt")) >= len(want) + 1
            )
            time.sleep(0.3)  # let the last frame paint
            browser.save_screenshot(str(ARTIFACTS / "dashboard-run.png"))
            assert run.wait(timeout=30).state == "DONE"

            # Task output: the task's printed line, shown as text (the hostile line literally).
            open_output("talk")
            wait_for(
                lambda: KNOWN_LINE in output_text("talk"), 15, what="talk's output on the page"
            )
            text = output_text("talk")
            assert HOSTILE in text and "talk: to stderr" in text and "talk: logged" in text
            box = 'div.output[data-output-task="talk"]'
            assert not browser.find_elements("css selector", f"{box} script, {box} img, {box} b")
            assert browser.execute_script("return window.__pwned === undefined")
            header = output_text("talk", ".attempt-output .muted")
            talked = run.tasks()
            node = next(t["node"] for t in talked if t["id"] == "talk")
            assert header == f"talk · attempt 1 on {node}"
            # Both attempts of the retried task, numbered, each with its node.
            open_output("flaky")
            wait_for(lambda: "flaky: second try" in output_text("flaky"), 15, what="flaky's output")
            heads = output_text("flaky", ".attempt-output .muted")
            assert "flaky · attempt 1 on " in heads and "flaky · attempt 2 on " in heads
            assert "flaky: first try" in output_text("flaky")
            visible = browser.find_element("css selector", f"{box} pre.output-text")
            browser.execute_script('arguments[0].scrollIntoView({block: "center"})', visible)
            assert visible.is_displayed() and KNOWN_LINE in visible.text
            time.sleep(0.3)
            browser.save_screenshot(str(ARTIFACTS / "dashboard-output.png"))
        browser.get(f"{base}/")
        wait_for(
            lambda: browser.find_elements("css selector", f'tr[data-run="{run.id}"] .badge')
            and browser.find_element("css selector", f'tr[data-run="{run.id}"] .badge').text == "DONE",
            30,
            what="the run DONE in the cluster page's list",
        )  # fmt: skip
        browser.save_screenshot(str(ARTIFACTS / "dashboard-cluster-runs.png"))
    finally:
        browser.quit()
