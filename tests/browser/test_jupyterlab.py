"""End to end: JupyterLab + headless Chromium run notebook 01 and move the batch explorer.

What a learner does after ``make lab``, automated:

1. start ``jupyter lab`` from this interpreter's environment (the project's ``.venv``) on
   127.0.0.1, a free port and a random token, serving a temporary copy of ``notebooks/`` (the
   repository's stored outputs are never touched) with fresh config/runtime/data/settings
   directories, and nothing that fetches from the internet (news, update check, PyPI);
2. open ``01_the_padding_thief.ipynb`` in Debian's Chromium (``/usr/bin/chromium``, driven by
   the Python ``playwright`` package; no browser is ever downloaded), clear the stored outputs
   and run all cells from the *Run* menu;
3. check that every code cell ran and none shows an error;
4. drag the *batch size* slider of the batch explorer and check that its readout, the figure and
   the waste numbers change -- the numbers to exactly what :func:`packviz.widgets.explore` gives
   for the controls now shown.

Screenshots go to ``$PACKVIZ_SCREENSHOTS`` (default: the test's tmp dir); their paths are
printed (``pytest -s``). Every wait is on page or server state, bounded; no sleeps decide
anything. Every process started here (server, its kernels, the browser) is ended in teardown,
also when the test fails.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(f"{CHROMIUM} not found (Debian package 'chromium'; CI installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Python package 'playwright' not installed")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = "01_the_padding_thief.ipynb"
VIEWPORT = {"width": 1400, "height": 1000}

SERVER_START_S = 120  # jupyter lab up and answering /api/status
PAGE_S = 120  # JupyterLab loaded and the kernel idle
RUN_ALL_S = 240  # every cell executed (about 15 s under nbconvert here; the browser adds overhead)
UPDATE_S = 90  # one explorer update after a slider move

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]

# JupyterLab user settings for the test profile: never ask about / fetch news or updates, and
# keep every cell attached to the DOM (the default 'contentVisibility' windowing attaches cells
# lazily while the notebook loads, so a DOM query could miss cells).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


# ---------------------------------------------------------------------------- processes
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time), to tell a process from a later one with its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every live descendant of ``pid`` (Linux /proc; [] elsewhere)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int(d.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            st = _proc_start_time(c)
            if st is not None:
                out.append((c, st))
                todo.append(c)
    return out


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


@dataclass
class LabServer:
    proc: subprocess.Popen
    port: int
    token: str
    root: Path
    log: Path
    seen_children: set[tuple[int, str]] = field(default_factory=set)

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}{path}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET", timeout: float = 5.0):
        req = urllib.request.Request(self.url(path), method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def remember_children(self) -> None:
        if self.proc.poll() is None:
            self.seen_children.update(_descendants(self.proc.pid))

    def stop(self) -> None:
        """End the server, its kernels and anything else it started: graceful first, then kill."""
        self.remember_children()
        if self.proc.poll() is None:
            try:  # graceful: the server shuts its kernels down itself
                self.api("/api/shutdown", method="POST", timeout=10)
            except (OSError, urllib.error.URLError, ValueError):
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)  # its own session: the whole group
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        # Kernels run in sessions of their own (jupyter_client starts them so): kill leftovers
        # by pid, only if still the same process (same start time).
        for pid, start in sorted(self.seen_children):
            if _proc_start_time(pid) == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _start_lab(tmp: Path) -> LabServer:
    jupyter = Path(sys.executable).parent / "jupyter"
    assert jupyter.exists(), f"{jupyter} missing: install the project with its 'lab' extra (make install)"
    root = tmp / "notebooks"
    shutil.copytree(REPO / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    home = tmp / "jupyter-home"
    dirs = {name: home / name for name in ("config", "runtime", "data", "settings", "workspaces", "ipython")}
    for d in dirs.values():
        d.mkdir(parents=True)
    for rel, settings in LAB_SETTINGS.items():
        p = dirs["settings"] / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(settings))
    env = dict(os.environ)
    for k in ("JUPYTER_PATH", "JUPYTER_TOKEN", "JUPYTER_CONFIG_PATH"):
        env.pop(k, None)
    env.update(JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
               JUPYTER_DATA_DIR=str(dirs["data"]), JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
               JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]), IPYTHONDIR=str(dirs["ipython"]),
               JUPYTER_PREFER_ENV_PATH="1",  # kernelspecs: the environment's before any user's
               PYTHONUNBUFFERED="1")
    token = secrets.token_hex(24)
    last_error = ""
    for attempt in range(3):  # a free port can be taken between probing and binding: retry
        port = _free_port()
        log = tmp / f"jupyter-lab-{attempt}.log"
        cmd = [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root",
               "--ServerApp.open_browser=False",
               "--ServerApp.shutdown_no_activity_timeout=1800",  # safety net if ever orphaned
               "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly",
               "--LabApp.expose_app_in_browser=True"]  # window.jupyterapp: read the notebook model
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        server = LabServer(proc, port, token, root, log)
        try:
            deadline = time.monotonic() + SERVER_START_S
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                try:
                    server.api("/api/status", timeout=2)
                    return server
                except (OSError, urllib.error.URLError, ValueError):
                    time.sleep(0.25)  # polling interval only
            last_error = (f"jupyter lab {'exited with ' + str(proc.returncode) if proc.poll() is not None else 'not ready after ' + str(SERVER_START_S) + ' s'}"
                          f"\n--- {log} ---\n{server.log_tail()}")
        except BaseException:
            server.stop()
            raise
        server.stop()
        if "address already in use" not in server.log_tail().lower():
            break
    pytest.fail(last_error)


@pytest.fixture
def lab(tmp_path):
    server = _start_lab(tmp_path)
    try:
        yield server
    finally:
        server.stop()
        assert server.proc.poll() is not None


@pytest.fixture
def page():
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
            pg = context.new_page()
            pg.set_default_timeout(60_000)
            pg.console_errors = []
            pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
            yield pg
        finally:
            browser.close()


@pytest.fixture
def shots(tmp_path):
    d = Path(os.environ.get("PACKVIZ_SCREENSHOTS") or tmp_path / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


# ---------------------------------------------------------------------------- page helpers
# The notebook's kernel is connected and idle (window.jupyterapp: --LabApp.expose_app_in_browser).
JS_KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!(k && k.status === 'idle' && k.connectionStatus === 'connected');
}"""

JS_PROMPTS = """() => Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt'))
                 .map(e => e.textContent.trim())"""

JS_ALL_RAN = """(n) => {
  const ind = document.querySelector('.jp-Notebook-ExecutionIndicator');
  const p = Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt'));
  return ind && ind.dataset.status === 'idle' && p.length === n
         && p.every(e => /^\\[\\d+\\]:$/.test(e.textContent.trim()));
}"""

# From the notebook model (window.jupyterapp): each code cell's count and output types.
JS_MODEL = """() => {
  const nb = window.jupyterapp.shell.currentWidget;
  const cells = nb.content.model.cells;
  const out = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    out.push({index: i, count: c.executionCount,
              outputs: c.outputs.toJSON().map(o => ({type: o.output_type, name: o.name || null,
                                                    text: [].concat(o.text || o.traceback || []).join('').slice(0, 2000),
                                                    ename: o.ename || null}))});
  }
  return out;
}"""

# Rendered outputs that show an error: error/stderr mime types with error-looking text, widget
# rendering failures, tracebacks anywhere.
JS_ERRORS = """() => {
  const bad = [];
  document.querySelectorAll('.jp-Notebook .jp-CodeCell').forEach((cell, i) => {
    cell.querySelectorAll('.jp-OutputArea-output').forEach(o => {
      const mime = o.dataset.mimeType || '';
      const text = o.innerText || '';
      const errorMime = mime === 'application/vnd.jupyter.error'
        || (mime === 'application/vnd.jupyter.stderr' && /Traceback|Error|Exception/.test(text));
      if (errorMime || /Traceback \\(most recent call last\\)|Error displaying widget|Error rendering|Model not found/.test(text))
        bad.push({codeCell: i, mime: mime, text: text.slice(0, 1500)});
    });
  });
  return bad;
}"""

JS_EXPLORER_STATE = """(root) => {
  const q = s => root.querySelector(s);
  const readout = s => q(s + ' .widget-readout').textContent.trim();
  const img = q('img.packviz-figure') || q('.packviz-figure img') || q('.packviz-figure');
  const rows = Array.from(root.querySelectorAll('.packviz-numbers .packviz-table tr')).map(tr =>
    Array.from(tr.querySelectorAll('td')).map(td => td.innerText.trim()));
  const r = root.getBoundingClientRect(), ir = img.getBoundingClientRect();
  return {
    params: {source: q('.packviz-source select').value, n: +readout('.packviz-num-sequences'),
             batch_size: +readout('.packviz-batch-size'), pack_len: +readout('.packviz-pack-len'),
             padding: q('.packviz-padding select').value, strategy: q('.packviz-strategy select').value,
             model: q('.packviz-model select').value},
    src: img.getAttribute('src') || '', loaded: img.complete && img.naturalWidth > 0,
    natural: [img.naturalWidth, img.naturalHeight], box: [r.width, r.height], imgBox: [ir.width, ir.height],
    rows: rows, values: Array.from(root.querySelectorAll('.packviz-numbers .packviz-value')).map(e => e.innerText.trim()),
  };
}"""


def _menu(page, menu: str, command: str) -> None:
    """Click a main-menu entry (e.g. Run → Run All Cells) by its lumino command id."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(rf"^\s*{re.escape(menu)}\s*$")).click()
    item = page.locator(f".lm-Menu-item[data-command='{command}']")
    item.wait_for(state="visible")
    item.click()
    page.locator(".lm-Menu").first.wait_for(state="hidden")


def _expected_values(params: dict) -> list[str]:
    """The cell texts of the numbers table that packviz computes for these control values."""
    from packviz.widgets import explore, numbers_html

    res = explore(source=params["source"], n=params["n"], batch_size=params["batch_size"],
                  pack_len=params["pack_len"], strategy=params["strategy"], padding=params["padding"],
                  model=params["model"])
    table = numbers_html(res["numbers"], model=params["model"])
    return [html.unescape(v).strip() for v in re.findall(r"class='packviz-value'>(.*?)</td>", table)]


def _waste(rows: list[list[str]]) -> str:
    found = [r[1] for r in rows if len(r) == 2 and "wast" in r[0].lower()]
    assert found, f"no 'wasted' row in the numbers table: {rows}"
    return found[0]


# ---------------------------------------------------------------------------- the test
def test_notebook_01_runs_and_batch_explorer_reacts(lab, page, shots):
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    saved: list[Path] = []

    def shot(name: str, locator=None) -> None:
        path = shots / name
        (locator or page).screenshot(path=str(path), **({} if locator else {"full_page": True}))
        saved.append(path)

    nb_cells = json.loads((lab.root / NOTEBOOK).read_text())["cells"]
    n_code = sum(c["cell_type"] == "code" for c in nb_cells)

    try:
        # -- open the notebook; its kernel (the project's interpreter) starts and goes idle
        page.goto(lab.url(f"/lab/tree/{NOTEBOOK}"), wait_until="domcontentloaded", timeout=PAGE_S * 1000)
        page.wait_for_function(JS_KERNEL_IDLE, timeout=PAGE_S * 1000, polling=250)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=PAGE_S * 1000)
        page.wait_for_function(f"() => document.querySelectorAll('.jp-Notebook .jp-CodeCell').length === {n_code}",
                               timeout=PAGE_S * 1000)
        lab.remember_children()
        kernels = [pid for pid, _ in lab.seen_children if "ipykernel_launcher" in " ".join(_cmdline(pid))]
        assert kernels, f"no ipykernel process under the server: {[_cmdline(p) for p, _ in lab.seen_children]}"
        for pid in kernels:
            exe = _cmdline(pid)[0]
            assert Path(exe).parent == Path(sys.executable).parent, \
                f"kernel runs {exe}, not the project's interpreter {sys.executable}"
        timings["open"] = time.monotonic() - t0

        # -- clear the stored outputs, then Run → Run All Cells, and wait for every count
        _menu(page, "Edit", "editmenu:clear-all")
        page.wait_for_function("""() => Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt'))
                                        .every(e => !/\\d/.test(e.textContent))""")
        assert page.locator(".packviz-batch-explorer").count() == 0
        _menu(page, "Run", "runmenu:run-all")
        page.wait_for_function(JS_ALL_RAN, arg=n_code, timeout=RUN_ALL_S * 1000, polling=250)
        timings["run_all"] = time.monotonic() - t0
        shot("01_after_run_all.png")

        # -- nothing shows an error: rendered outputs and the notebook model agree
        prompts = page.evaluate(JS_PROMPTS)
        assert [int(p[1:-2]) for p in prompts] == list(range(1, n_code + 1)), prompts
        model = page.evaluate(JS_MODEL)
        assert [c["count"] for c in model] == list(range(1, n_code + 1)), model
        model_errors = [(c["index"], o) for c in model for o in c["outputs"]
                        if o["type"] == "error" or (o["name"] == "stderr" and re.search(r"Traceback|Error|Exception", o["text"]))]
        assert not model_errors, f"cells with errors: {model_errors}"
        dom_errors = page.evaluate(JS_ERRORS)
        assert not dom_errors, f"outputs showing an error: {dom_errors}"
        stderr = [(c["index"], o["text"][:300]) for c in model for o in c["outputs"] if o["name"] == "stderr"]
        if stderr:
            print(f"\nnote: cells writing to stderr (no error): {stderr}")
        for i, img in enumerate(page.locator(".jp-Notebook .jp-OutputArea-output[data-mime-type='image/png'] img").all()):
            shot(f"02_figure_{i + 1}.png", img)

        # -- the batch explorer rendered: controls, a decoded figure, the numbers table
        explorer = page.locator(".packviz-batch-explorer")
        explorer.wait_for(state="visible")
        assert explorer.count() == 1
        page.wait_for_function(
            """(root) => { const img = root.querySelector('img.packviz-figure, .packviz-figure img');
                           return img && img.getAttribute('src') && img.complete && img.naturalWidth > 0
                                  && root.querySelectorAll('.packviz-numbers .packviz-value').length > 0; }""",
            arg=explorer.element_handle(), timeout=UPDATE_S * 1000)
        explorer.scroll_into_view_if_needed()
        before = explorer.evaluate(JS_EXPLORER_STATE)
        assert before["values"] == _expected_values(before["params"]), (before["values"], before["params"])
        figure = explorer.locator("img.packviz-figure, .packviz-figure img").first
        figure_before = figure.screenshot()
        shot("03_explorer.png")
        shot("04_explorer_before.png", explorer)

        # -- drag the batch-size slider's handle to the right (a real mouse drag; the widget
        #    has continuous_update=False, so the kernel sees one change, on release)
        slider = explorer.locator(".packviz-batch-size")
        handle = slider.locator(".noUi-handle")
        handle.scroll_into_view_if_needed()
        hb, track = handle.bounding_box(), slider.locator(".noUi-target").bounding_box()
        assert hb and track and track["width"] > 20, f"batch-size slider has no usable track: {track}"
        x, y = hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + max(0.4 * track["width"], 12), y, steps=10)
        page.mouse.up()
        t_move = time.monotonic()

        page.wait_for_function(
            """([root, old]) => root.querySelector('.packviz-batch-size .widget-readout').textContent.trim() !== old""",
            arg=[explorer.element_handle(), str(before["params"]["batch_size"])], timeout=UPDATE_S * 1000)
        params = explorer.evaluate(JS_EXPLORER_STATE)["params"]
        assert params["batch_size"] > before["params"]["batch_size"], (before["params"], params)
        expected = _expected_values(params)
        # the kernel recomputed: new figure loaded, numbers equal to packviz's for the new controls
        page.wait_for_function(
            """([root, oldSrc, want]) => {
                 const img = root.querySelector('img.packviz-figure, .packviz-figure img');
                 const got = Array.from(root.querySelectorAll('.packviz-numbers .packviz-value')).map(e => e.innerText.trim());
                 return img.getAttribute('src') !== oldSrc && img.complete && img.naturalWidth > 0
                        && JSON.stringify(got) === JSON.stringify(want); }""",
            arg=[explorer.element_handle(), before["src"], expected], timeout=UPDATE_S * 1000, polling=100)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=UPDATE_S * 1000)
        timings["update"] = time.monotonic() - t_move
        after = explorer.evaluate(JS_EXPLORER_STATE)
        assert after["params"] == params, "a control changed after the update"
        assert after["src"] != before["src"]
        assert after["values"] == expected != before["values"]
        assert _waste(after["rows"]) != _waste(before["rows"]), (before["rows"], after["rows"])
        assert figure.screenshot() != figure_before, "the figure's pixels did not change"
        shot("05_explorer_after.png", explorer)
        shot("06_after_slider.png")

        print(f"\nbatch size {before['params']['batch_size']} -> {after['params']['batch_size']}; "
              f"wasted {_waste(before['rows'])} -> {_waste(after['rows'])}")
        print(f"explorer box {before['box']} -> {after['box']}; figure shown {before['imgBox']} -> {after['imgBox']}"
              f" (PNG {before['natural']} -> {after['natural']})")
        if page.console_errors:
            print(f"browser console errors: {page.console_errors[:10]}")
    except BaseException:
        try:
            shot("99_failure.png")
        except Exception:  # the page may be gone
            pass
        print(f"\n--- jupyter lab log (tail) ---\n{lab.log_tail()}")
        raise
    finally:
        timings["total"] = time.monotonic() - t0
        print("\ntimings (s from page open): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
        print("screenshots:\n" + "\n".join(f"  {p}" for p in saved))


# ---------------------------------------------------------------------------- the cheat sheet and the guide
GUIDE = "README.md"  # notebooks/README.md: the workshop guide


def test_cheatsheet_renders_headings_and_figures_with_alt_text(page, shots, tmp_path):
    """``scripts/cheatsheet.py`` built here, opened from disk: headings, loaded figures with alt text, one page."""
    out = tmp_path / "cheatsheet.html"
    built = subprocess.run([sys.executable, str(REPO / "scripts" / "cheatsheet.py"), str(out)],
                           capture_output=True, text=True, cwd=REPO, timeout=SERVER_START_S)
    assert built.returncode == 0, built.stderr
    cells = json.loads((REPO / "notebooks" / "06_interview_cheatsheet.ipynb").read_text())["cells"]
    kept = [c for c in cells if "cheatsheet-omit" not in c.get("metadata", {}).get("tags", [])]
    answers = [line[4:].replace("`", "").strip() for c in kept if c["cell_type"] == "markdown"
               for line in "".join(c["source"]).splitlines() if line.startswith("### ")]
    alts = [o["metadata"]["image/png"]["alt"] for c in kept for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(answers) == 7 and alts, (answers, alts)

    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.as_uri(), wait_until="load")
    shown = page.evaluate("() => Array.from(document.querySelectorAll('h3')).filter(h => h.offsetHeight > 0)"
                          ".map(h => h.innerText.trim())")
    assert shown == answers
    images = page.evaluate("""() => Array.from(document.querySelectorAll('img')).map(i => ({
        alt: i.getAttribute('alt'), loaded: i.complete && i.naturalWidth > 0, shown: i.getBoundingClientRect().height}))""")
    assert [i["alt"] for i in images] == alts
    assert all(i["loaded"] and i["shown"] > 50 for i in images), images
    assert not page.locator(".jp-InputArea-editor, .jp-InputPrompt, script").count()
    assert all(u.startswith(("file:", "data:")) for u in requests), f"the sheet fetched {requests}"
    shot = shots / "07_cheatsheet.png"
    page.emulate_media(media="print")
    page.screenshot(path=str(shot), full_page=True)
    for fmt in ("A4", "Letter"):  # the print stylesheet fits the answers on one page
        pages = len(re.findall(rb"/Type\s*/Page[^s]", page.pdf(format=fmt, print_background=True)))
        assert pages == 1, f"the cheat sheet prints on {pages} {fmt} pages"
    print(f"\ncheat sheet: {len(shown)} answers, {len(images)} figure(s) with alt text, one page; screenshot {shot}")


def test_workshop_guide_renders_in_jupyterlab(lab, page, shots):
    """``notebooks/README.md`` opened in JupyterLab's Markdown viewer: it renders, and its notebook links exist."""
    guide = lab.root / GUIDE
    assert guide.is_file(), f"notebooks/{GUIDE} (the workshop guide) is missing"
    page.goto(lab.url("/lab"), wait_until="domcontentloaded", timeout=PAGE_S * 1000)
    page.wait_for_function("() => !!(window.jupyterapp && window.jupyterapp.commands)", timeout=PAGE_S * 1000)
    page.evaluate("""async (path) => { await window.jupyterapp.restored;
                                       await window.jupyterapp.commands.execute('markdownviewer:open', {path}); }""", GUIDE)
    viewer = page.locator(".jp-MarkdownViewer .jp-RenderedMarkdown").last
    viewer.locator("h1, h2").first.wait_for(state="visible", timeout=PAGE_S * 1000)
    text = viewer.inner_text()
    assert "90-minute" in text, text[:500]
    assert viewer.locator("h1, h2").count() >= 2 and viewer.locator("a").count() > 0
    hrefs = viewer.evaluate("(root) => Array.from(root.querySelectorAll('a')).map(a => a.getAttribute('href') || '')")
    linked = {re.sub(r"[?#].*$", "", h).rsplit("/", 1)[-1] for h in hrefs if ".ipynb" in h}
    assert linked, f"the guide links no notebook: {hrefs}"
    missing = sorted(n for n in linked if not (lab.root / n).is_file())
    assert not missing, f"the guide links notebooks that do not exist: {missing}"
    viewer.screenshot(path=str(shots / "08_workshop_guide.png"))
    print(f"\nworkshop guide: {len(text.split()):,} words rendered, links {sorted(linked)}")
