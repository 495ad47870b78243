#!/usr/bin/python3
"""Drives headless Chromium over the DevTools protocol against a running
Shutter console and checks what its pages show.

Run by console_test (ConsoleBrowserTest), which starts a real cluster with
a snapshot in flight and passes what the admin API says, so the pages are
checked against it:

  console_browser.py --url http://127.0.0.1:PORT --job ID --nodes n0,n1,n2
      --partitions 12 --out DIR [--token TOKEN --viewer-token TOKEN]

Exit 0 when every check passed; otherwise one line per failed check on
stderr and exit 1. Screenshots of every page at 1280x800 (and the job page
at phone width) go to DIR.

Needs Debian's chromium and python3-websocket (websocket-client).
"""
import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import websocket  # python3-websocket

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what, file=sys.stderr)
    return cond


class Browser:
    """One headless Chromium and one page in it, over CDP (flat sessions)."""

    def __init__(self, profile):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if exe is None:
            raise RuntimeError("chromium not found (Debian package chromium)")
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run",
             "--ignore-certificate-errors",  # the test's own CA
             "--remote-debugging-port=0", "--user-data-dir=" + profile,
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = None
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                if self.proc.poll() is not None:
                    break
                continue
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                url = m.group(1)
                break
        if url is None:
            self.close()
            raise RuntimeError("chromium did not start its DevTools endpoint")
        self.ws = websocket.create_connection(url, timeout=30,
                                              suppress_origin=True)
        self.next_id = 0
        target = self.call("Target.createTarget", {"url": "about:blank"})
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target["targetId"],
                                  "flatten": True})["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Runtime.enable", session=True)
        self.size(1280, 800)

    def call(self, method, params=None, session=False):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError("%s: %s" % (method, reply["error"]))
                return reply.get("result", {})

    def size(self, w, h, mobile=False):
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": w, "height": h, "deviceScaleFactor": 1,
                   "mobile": mobile}, session=True)

    def eval(self, expr):
        r = self.call("Runtime.evaluate",
                      {"expression": expr, "returnByValue": True,
                       "awaitPromise": True}, session=True)
        if "exceptionDetails" in r:
            raise RuntimeError("%s: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    def goto(self, url):
        self.call("Page.navigate", {"url": url}, session=True)

    def wait(self, expr, seconds=20):
        """Polls `expr` in the page until it is truthy (bounded)."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                v = self.eval(expr)
                if v:
                    return v
            except RuntimeError:
                pass  # page still loading
            time.sleep(0.05)
        return None

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png"},
                         session=True)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self.proc.kill()
        self.proc.wait()


def rendered(b, after):
    """Waits until the page has rendered a view after render count `after`."""
    return b.wait("Number(document.body.dataset.rendered||0) > %d && "
                  "Number(document.body.dataset.rendered)" % after)


def text(b, sel):
    return b.eval("(document.querySelector(%s)||{}).innerText||''" %
                  json.dumps(sel))


def open_page(b, base, route, name, out):
    """Navigates to a route, waits for its first render, screenshots it."""
    before = b.eval("Number((document.body||{dataset:{}}).dataset.rendered||0)") or 0
    if b.eval("location.href.startsWith(%s)" % json.dumps(base)):
        b.eval("location.hash = %s" % json.dumps(route))
        check(rendered(b, before), name + ": rendered")
    else:
        b.goto(base + "/" + route)
        check(rendered(b, 0), name + ": rendered")
    banner = b.eval("document.querySelector('#banner').hidden ? '' : "
                    "document.querySelector('#banner').innerText")
    check(not banner, "%s: no error banner (%s)" % (name, banner))
    b.screenshot(os.path.join(out, name + ".png"))


def measure(b, a):
    """Loads the job page `a.measure` times from a fresh navigation and
    prints what one load transferred and how long until it was drawn."""
    times, sizes = [], []
    for i in range(a.measure):
        b.goto("about:blank")
        b.wait("location.href === 'about:blank'")
        b.call("Network.enable", session=True)
        b.call("Network.setCacheDisabled", {"cacheDisabled": True},
               session=True)
        b.goto(a.url + "/#/jobs/" + a.job)
        if not check(rendered(b, 0), "job page rendered (load %d)" % i):
            return
        times.append(int(b.eval("Number(document.body.dataset.renderedAt)")))
        sizes.append(int(b.eval(
            "performance.getEntriesByType('navigation').concat("
            "performance.getEntriesByType('resource'))"
            ".reduce((s, e) => s + (e.transferSize || 0), 0)")))
        # Where the time went: each request's span, then the drawing.
        spans = b.eval(
            "performance.getEntriesByType('navigation').concat("
            "performance.getEntriesByType('resource')).map(e => "
            "[e.name.replace(location.origin, ''), Math.round(e.startTime), "
            "Math.round(e.responseEnd)])")
        marks = b.eval("performance.getEntriesByType('mark').map(e => "
                       "[e.name, Math.round(e.startTime)])")
        print("load %d: drawn at %d ms; requests [path, start, end]: %s; "
              "marks: %s" % (i, times[-1], json.dumps(spans),
                             json.dumps(marks)), file=sys.stderr)
        rows = b.eval("document.querySelectorAll('#partitions tbody tr')"
                      ".length")
        check(rows == 100, "job page shows a page of 100 partitions (%s)" % rows)
    # What was measured, kept beside the other pages' screenshots.
    b.screenshot(os.path.join(a.out, "job-measured.png"))
    times.sort()
    sizes.sort()
    print(json.dumps({"loads": len(times), "render_ms_median":
                      times[len(times) // 2], "render_ms_max": times[-1],
                      "bytes_median": sizes[len(sizes) // 2],
                      "bytes_max": sizes[-1]}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--job", required=True)
    ap.add_argument("--nodes", default="")
    ap.add_argument("--partitions", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--token", default="")
    ap.add_argument("--viewer-token", default="")
    ap.add_argument("--committed", action="store_true",
                    help="the job has finished already (no live checks)")
    ap.add_argument("--measure", type=int, default=0,
                    help="only load the job page this many times and print "
                    "its size and render time as JSON (benchmarks)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    nodes = a.nodes.split(",")
    profile = tempfile.mkdtemp(prefix="shutter-chromium-")
    b = Browser(profile)
    try:
        if a.measure:
            measure(b, a)
            return 1 if failures else 0
        if a.token:
            login(b, a)
        # Overview: the running job, nodes alive.
        open_page(b, a.url, "#/", "overview", a.out)
        if not a.committed:
            check(a.job in text(b, "#running"),
                  "overview lists the running job")
        check(text(b, "#nodes-alive").strip() ==
              "%d / %d" % (len(nodes), len(nodes)),
              "overview: nodes alive " + text(b, "#nodes-alive"))

        # The job page: one lane group per node, live progress.
        open_page(b, a.url, "#/jobs/" + a.job,
                  "job" if a.committed else "job-running", a.out)
        check(text(b, "#job-id") == a.job, "job page names the job")
        rows = b.eval("[...document.querySelectorAll('#node-lanes tbody tr')]"
                      ".map(r => r.cells[0].innerText)")
        check(sorted(rows or []) == sorted(nodes),
              "job page: a lane group per node (%s)" % rows)
        check(b.eval("document.querySelector('#timeline').height > 0"),
              "job page: the timeline is drawn")
        if not a.committed:
            first = text(b, "#progress")
            check(first != "%d/%d" % (a.partitions, a.partitions),
                  "the job still runs when its page opens (%s)" % first)
            # Live: the progress changes without a reload as tasks finish.
            changed = b.wait("document.querySelector('#progress') && "
                             "document.querySelector('#progress').innerText "
                             "!== " + json.dumps(first), 60)
            check(changed, "job page updates live (stayed at %s)" % first)
        done = b.wait("document.querySelector('#progress') && "
                      "document.querySelector('#progress').innerText === "
                      + json.dumps("%d/%d" % (a.partitions, a.partitions)),
                      120)
        check(done, "job page reaches %d/%d" % (a.partitions, a.partitions))
        check(b.wait("/committed/.test(document.querySelector('h1').innerText)",
                     30),
              "job page shows COMMITTED")
        b.screenshot(os.path.join(a.out, "job-committed.png"))
        published = b.eval("document.querySelectorAll('#partitions "
                           "tbody tr').length")
        check(published == min(a.partitions, 100),
              "partition table rows: %s" % published)
        check("last to finish" in text(b, "#node-lanes"),
              "the last node to finish is named")
        check("uploaded" in text(b, "#bytes-split"),
              "job page: bytes uploaded vs reused (%s)" % text(b, "#bytes-split"))
        if a.committed and a.token:
            # A restore shows its plan (a dry run) before anything starts.
            b.eval("document.querySelector('#restore').click()")
            check(b.wait("document.querySelectorAll('#plan tbody tr').length"
                         " === %d" % len(nodes), 30),
                  "restore: the plan lists every node")
            check(("%d partition" % a.partitions) in text(b, "#plan-summary"),
                  "restore plan: " + text(b, "#plan-summary"))
            b.screenshot(os.path.join(a.out, "restore-plan.png"))
            b.eval("document.querySelector('#restore-start').click()")
            check(b.wait("location.hash.startsWith('#/jobs/') && "
                         "!location.hash.endsWith(%s) && "
                         "/restore/.test(document.querySelector('h1')"
                         ".innerText)" % json.dumps(a.job), 30),
                  "restore: the restore job's page opens")
            check(b.wait("/committed/.test(document.querySelector('h1')"
                         ".innerText)", 120),
                  "restore: the job page follows it to COMMITTED")
            b.screenshot(os.path.join(a.out, "restore-job.png"))

        # The other pages show what the admin API says.
        open_page(b, a.url, "#/jobs", "jobs", a.out)
        check(a.job in text(b, "#jobs"), "jobs page lists the job")
        open_page(b, a.url, "#/nodes", "nodes", a.out)
        t = text(b, "#nodes")
        check(all(n in t for n in nodes), "nodes page lists every node")
        check(t.count("alive") >= len(nodes), "nodes page: all alive")
        check("Limit changes" in t, "nodes page: limit changes column")
        open_page(b, a.url, "#/schedules", "schedules", a.out)
        open_page(b, a.url, "#/repository", "repository", a.out)
        check("1" in text(b, "#repo"), "repository page shows counts")
        check(b.wait("!!document.querySelector('#growth')", 20) and
              a.job in text(b, "#growth"),
              "repository page: the snapshot in the growth table")
        open_page(b, a.url, "#/controllers", "controllers", a.out)
        check("leader" in text(b, "#controllers"), "controllers: a leader")

        # Keyboard: the page links are reachable with Tab.
        b.eval("document.activeElement && document.activeElement.blur()")
        reached = set()
        for _ in range(12):
            b.call("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Tab",
                                              "code": "Tab",
                                              "windowsVirtualKeyCode": 9},
                   session=True)
            b.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": "Tab",
                                              "code": "Tab",
                                              "windowsVirtualKeyCode": 9},
                   session=True)
            reached.add(b.eval("document.activeElement.innerText||''"))
        check({"Jobs", "Nodes", "Overview"} <= reached,
              "Tab reaches the navigation (%s)" % sorted(reached))

        # Phone width: the job page fits (wide tables scroll inside).
        b.size(390, 844, mobile=True)
        open_page(b, a.url, "#/jobs/" + a.job, "job-phone", a.out)
        width = b.eval("document.documentElement.scrollWidth")
        check(width is not None and width <= 400,
              "job page fits a phone (%s px wide)" % width)
        b.size(1280, 800)
    finally:
        b.close()
        shutil.rmtree(profile, ignore_errors=True)
    return 1 if failures else 0


def login(b, a):
    """With authorization: only the login form before; a viewer logs in
    and sees no actions; the operator token is used for the rest."""
    b.goto(a.url + "/")
    check(b.wait("!!document.querySelector('#token')"),
          "unauthenticated: the login form")
    check(not b.eval("document.querySelector('#main')"),
          "unauthenticated: no console page")
    for token, role in ((a.viewer_token, "viewer"), (a.token, "operator")):
        if not token:
            continue
        b.goto(a.url + "/")
        b.wait("!!document.querySelector('#token')")
        b.eval("document.querySelector('#token').value = %s;"
               "document.querySelector('form').submit()" % json.dumps(token))
        check(b.wait("document.querySelector('#who') && "
                     "document.querySelector('#who').innerText === %s"
                     % json.dumps(role)), "logged in as " + role)
        if role == "viewer":
            b.eval("location.hash = '#/jobs'")
            b.wait("!!document.querySelector('#jobs')")
            check(not b.eval("document.querySelector('#create')"),
                  "viewer: no create button")
            # With the session's own CSRF token: refused for the role.
            answer = b.eval(
                "fetch('/api/v1/session').then(r => r.json()).then(s => "
                "fetch('/api/v1/snapshots', {method: 'POST', body: '{}', "
                "headers: {'X-Shutter-CSRF': s.csrf}})).then(r => r.json()"
                ".then(j => r.status + ' ' + j.code))")
            check(answer == "403 PERMISSION_DENIED",
                  "viewer: a POST is refused (%s)" % answer)
            b.call("Network.clearBrowserCookies", session=True)


if __name__ == "__main__":
    sys.exit(main())
