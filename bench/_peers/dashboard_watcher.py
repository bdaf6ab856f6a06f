"""The dashboard open during a benchmark (issue 16: W1/W3 with the dashboard open and polling).

``HANDOFFD_BENCH_HTTP=off`` starts the daemons with ``--http-port 0``; ``=dashboard`` gives the
first one an HTTP port and opens Debian's headless chromium on it: the cluster page in one tab, and
in another the page of the newest run as soon as it shows (what a user watching the cluster does);
a Prometheus-style scrape of /metrics every second besides. ``=poll`` does the same requests
without a browser (the cluster's and the newest run's event streams read by threads, /metrics
every second): the daemon's own cost, without a browser's rendering competing for the CPU.
Unset: the daemons' defaults."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request
from typing import Any

MODE_ENV = "HANDOFFD_BENCH_HTTP"


class DashboardWatcher:
    def __init__(self, base: str, token: str, browser: bool = True) -> None:
        self.base, self.token, self.browser = base, token, browser
        self._stop = threading.Event()
        self.scrapes = self.pages = 0
        self.error = ""
        self._thread = threading.Thread(target=self._run, name="dashboard-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _get(self, path: str) -> bytes:
        req = urllib.request.Request(self.base + path)
        req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read()  # type: ignore[no-any-return]

    def _stream(self, path: str, stop: threading.Event) -> None:
        """Read an event stream until ``stop`` (as a browser's EventSource does)."""
        req = urllib.request.Request(self.base + path)
        req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=30) as resp:
            while not stop.is_set() and not self._stop.is_set():
                if not resp.readline():
                    return

    def _poll(self) -> None:
        threading.Thread(target=self._stream, args=("/api/events", self._stop), daemon=True).start()
        showing, stop_run = "", threading.Event()
        while not self._stop.wait(1.0):
            self._get("/metrics")
            self.scrapes += 1
            runs = json.loads(self._get("/api/cluster"))["runs"]
            if runs and runs[0]["run_id"] != showing:
                stop_run.set()
                showing, stop_run = runs[0]["run_id"], threading.Event()
                path = f"/api/events?run={showing}"
                threading.Thread(target=self._stream, args=(path, stop_run), daemon=True).start()
                self.pages += 1

    def _run(self) -> None:
        if not self.browser:
            try:
                self._poll()
            except Exception as exc:  # noqa: BLE001 - reported with the figures
                self.error = repr(exc)
            return
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium") or "chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1400,1000", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync"):  # fmt: skip
            opts.add_argument(arg)
        browser: Any = None
        try:
            browser = webdriver.Chrome(
                service=Service(shutil.which("chromedriver") or "chromedriver"), options=opts
            )
            browser.get(f"{self.base}/?token={self.token}")
            cluster_tab = browser.current_window_handle
            browser.switch_to.new_window("tab")
            run_tab, showing = browser.current_window_handle, ""
            browser.switch_to.window(cluster_tab)
            while not self._stop.wait(1.0):
                self._get("/metrics")
                self.scrapes += 1
                runs = json.loads(self._get("/api/cluster"))["runs"]
                if runs and runs[0]["run_id"] != showing:
                    showing = runs[0]["run_id"]
                    browser.switch_to.window(run_tab)
                    browser.get(f"{self.base}/runs/{showing}")
                    browser.switch_to.window(cluster_tab)
                    self.pages += 1
        except Exception as exc:  # noqa: BLE001 - reported with the figures
            self.error = repr(exc)
        finally:
            if browser is not None:
                browser.quit()


__all__ = ["MODE_ENV", "DashboardWatcher"]
