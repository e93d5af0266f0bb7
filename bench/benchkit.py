"""What the benchmarks in bench/ share: free ports, a private redis-server, a server under
test started from the release build, and plain HTTP requests with cookies handled by hand.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
# A current desktop Chrome user agent: what a real session record holds.
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
NAME = Path(sys.argv[0]).name


def fail(message):
    print(f"bench/{NAME}: {message}", file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            fail(f"{what} exited with {process.returncode} before it listened")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    fail(f"{what} did not listen on port {port} within {timeout} s")


class Redis:
    def __init__(self, workdir):
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process, "redis-server")

    def cli(self, *args):
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], check=True,
                             capture_output=True, text=True)
        return out.stdout

    def info(self):
        """Total command calls (less our own INFO calls) and CPU seconds so far."""
        text = self.cli("INFO", "all")
        calls = sum(int(m) for m in re.findall(r"^cmdstat_\w+:calls=(\d+)", text, re.M))
        calls -= int(re.search(r"^cmdstat_info:calls=(\d+)", text, re.M).group(1))
        cpu = sum(float(v) for v in re.findall(r"^used_cpu_(?:sys|user):([\d.]+)", text, re.M))
        return calls, cpu

    def stop(self):
        self.process.terminate()
        self.process.wait()


def rss_kib(pid):
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1)) if match else 0


class Server:
    """A server under test: its process, URL and the Cookie header of a logged-in user."""

    def __init__(self, name, argv, env, port, log):
        self.name, self.port = name, port
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env},
                                        stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(port, self.process, name)
        self.cookie = None

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


HTTP = urllib.request.build_opener(NoRedirect)


def request(url, cookie=None, form=None):
    """One request; returns (status, headers, body). The cookies are handled by hand: the
    production cookie is `Secure`, which a cookie jar would not send over plain http."""
    headers = {"User-Agent": USER_AGENT}
    if cookie:
        headers["Cookie"] = cookie
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with HTTP.open(urllib.request.Request(url, data=data, headers=headers)) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def session_cookie(headers):
    for value in headers.get_all("Set-Cookie") or []:
        pair = value.split(";", 1)[0]
        if pair.split("=", 1)[1]:
            return pair
    return None
