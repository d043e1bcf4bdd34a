"""A real headless Chromium for the page tests: found on PATH, or installed with Debian's
`apt-get install chromium` when missing and possible (root, apt-get); else the tests skip, saying why.

A page is checked through a copy of it with a probe script put first in its <head>: the probe
records script errors, console.error calls, resources that fail to load and unhandled promise
rejections, and after the load writes what it found (and each image's decoded size) into the DOM,
which Chromium prints with --dump-dom. Chromium's own log of uncaught errors is read as well."""

import fcntl
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_TIMEOUT_S = 900

PROBE = """<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) {
    var t = e.target;
    errors.push(t && t !== window && t.tagName ? "failed to load <" + t.tagName.toLowerCase() + "> "
      + String(t.src || t.href || "").slice(0, 60) : "error: " + e.message);
  }, true);
  window.addEventListener("unhandledrejection", function (e) { errors.push("unhandled rejection: " + e.reason); });
  var consoleError = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    consoleError.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    setTimeout(function () {
      // title, __pwned and the text: what a payload in the page's text would have changed or hidden
      var report = {errors: errors, counts: {}, sorted: null, title: document.title, text: document.body.innerText,
        pwned: window.__pwned === undefined ? null : String(window.__pwned),
        images: Array.prototype.map.call(document.images, function (img) {
          return {alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight};
        })};
      SELECTORS.forEach(function (s) { report.counts[s] = document.querySelectorAll(s).length; });
      var table = document.querySelector("table.sortable");
      if (table) {  // click the first header twice: rows ascending, then descending
        var th = table.querySelector("th"), first = function () { return table.tBodies[0].rows[0].cells[0].textContent; };
        th.click(); var up = first(); th.click(); report.sorted = [up, first()];
      }
      var pre = document.createElement("pre");
      pre.id = "probe-result";
      pre.textContent = JSON.stringify(report);
      document.body.appendChild(pre);
    }, WAIT_MS);
  });
})();
</script>"""


def find_chromium() -> str | None:
    return next((path for name in NAMES if (path := shutil.which(name))), None)


def _install() -> str:
    """Install Debian's chromium; '' on success, else why not."""
    if not shutil.which("apt-get"):
        return "no apt-get on this machine"
    if os.geteuid() != 0:
        return "installing it needs root (apt-get install chromium)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    for step in ([install], [["apt-get", "update"], install]):  # a stale package list: update, retry
        try:
            procs = [subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
                     for cmd in step]
        except subprocess.TimeoutExpired:
            return f"apt-get took more than {INSTALL_TIMEOUT_S} s"
        if procs[-1].returncode == 0:
            return ""
    return "apt-get install chromium failed: " + procs[-1].stderr.strip().splitlines()[-1][-200:]


@pytest.fixture(scope="session")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        # pytest-xdist workers each ask: one installs while the others wait (apt-get holds dpkg's lock)
        with open(Path(tempfile.gettempdir()) / "vistage-tests-chromium.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            why = "" if find_chromium() else _install()
        path = find_chromium()
        if path is None:
            pytest.skip(f"no Chromium for the browser tests, and it could not be installed: {why or 'not found'}")
    return path


def _run(chromium: str, args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def probe_page(chromium: str, page: Path, work: Path, selectors: tuple[str, ...] = (), wait_ms: int = 300) -> dict:
    """Load a probed copy of `page` (beside it, so relative links still work) and return what the
    probe saw: errors, images (decoded sizes), counts of `selectors`, the sort clicks, the title,
    the text shown (innerText) and window.__pwned (null unless a script set it)."""
    text = page.read_text(encoding="utf-8")
    probe = PROBE.replace("SELECTORS", json.dumps(list(selectors))).replace("WAIT_MS", str(wait_ms))
    probed = page.with_name(f".probed-{page.name}")
    probed.write_text(re.sub(r"<head>", "<head>" + probe, text, count=1, flags=re.I), encoding="utf-8")
    try:
        proc = _run(chromium, [f"--virtual-time-budget={wait_ms + 10000}", "--dump-dom", probed.as_uri()],
                    work / "profile")
    finally:
        probed.unlink()
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the probe wrote nothing (page did not load?):\n{proc.stderr[-3000:]}"
    result = json.loads(html.unescape(found.group(1)))
    # Chromium logs uncaught errors too, including any thrown before the probe could listen
    result["errors"] += [line for line in proc.stderr.splitlines() if ":CONSOLE" in line and "Uncaught" in line]
    return result


def screenshot(chromium: str, page: Path, out: Path, work: Path, width: int = 1200, height: int = 5000) -> Path:
    _run(chromium, [f"--window-size={width},{height}", "--virtual-time-budget=5000", f"--screenshot={out}",
                    page.as_uri()], work / "profile")
    assert out.is_file() and out.stat().st_size > 0, f"no screenshot written to {out}"
    return out
