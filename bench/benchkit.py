"""What the benchmarks in bench/ share: the release build, free ports, a private
redis-server, a server under test started from the release build, plain HTTP requests with
cookies handled by hand, and subprocesses timed with their peak memory.
"""

import http.client
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
# Where cargo puts the build: CARGO_TARGET_DIR when set, as cargo itself reads it.
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release"
# A current desktop Chrome user agent: what a real session record holds.
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
NAME = Path(sys.argv[0]).name


def fail(message):
    print(f"bench/{NAME}: {message}", file=sys.stderr)
    sys.exit(1)


def build_release(*packages):
    """`cargo build --release --locked` of the binaries of `packages` (into RELEASE)."""
    print(f"bench/{NAME}: cargo build --release ({', '.join(packages)})", flush=True)
    argv = ["cargo", "build", "--release", "--locked", "--bins"]
    for package in packages:
        argv += ["-p", package]
    subprocess.run(argv, cwd=ROOT, check=True)


def stop_on_sigterm():
    """A SIGTERM unwinds like Ctrl-C, so that every `finally` stops what it started."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupt)


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
    return vm_kib(pid, "VmRSS")


def vm_kib(pid, field):
    """A `/proc/PID/status` memory field (VmRSS, VmHWM, ...) in KiB; 0 once the process
    has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
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


def run_measured(argv, env, log, timeout, finished=None, grace=60):
    """Runs `argv` to its end, output appended to `log`; (exit status, wall seconds, peak
    RSS in KiB, seconds until `finished`). The peak is the kernel's high-water mark of the
    process (VmHWM), read every 5 ms for the first second, then every 20 ms, while it runs:
    only a new peak in its last moments could be missed (and a process that ends before the
    first reading shows 0). (Not wait4's `ru_maxrss`: it counts this script's own RSS, which the
    child had until its exec.) The process is killed, and
    the status is None, past `timeout` seconds, or `grace` seconds after `finished()` (asked
    once a second: e.g. "it printed its report") turned true without the process ending.
    Stopped whatever happens (Ctrl-C included)."""
    started = time.monotonic()
    done_at = None
    process = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        polls, peak = 0, 0
        while True:
            peak = max(peak, vm_kib(process.pid, "VmHWM"))
            pid, status = os.waitpid(process.pid, os.WNOHANG)
            if pid:
                # Reaped here: tell Popen, or its own wait would look for the process again.
                process.returncode = os.waitstatus_to_exitcode(status)
                return process.returncode, time.monotonic() - started, peak, done_at
            elapsed = time.monotonic() - started
            polls += 1
            if finished and done_at is None and polls % 20 == 0 and finished():
                done_at = elapsed
            if elapsed > timeout or (done_at is not None and elapsed > done_at + grace):
                process.kill()
                process.wait()
                return None, time.monotonic() - started, peak, done_at
            time.sleep(0.005 if elapsed < 1 else 0.02)
    finally:
        if process.returncode is None:
            process.kill()
            process.wait()


class Client:
    """A browser on one keep-alive connection: its cookies by name, kept by hand (the
    production cookie is `Secure`, which a cookie jar would not send over plain http).
    Each answer comes with the seconds from sending the request to reading the last byte
    of the body."""

    def __init__(self, port, headers=None):
        self.port = port
        self.headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self.cookies = {}
        self.connection = None

    def send(self, method, path, form=None):
        headers = dict(self.headers)
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
                self.connection.connect()
            try:
                began = time.perf_counter()
                self.connection.request(method, path, body=body, headers=headers)
                response = self.connection.getresponse()
                text = response.read().decode(errors="replace")
                seconds = time.perf_counter() - began
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection: once more on a new one.
                self.close()
                if attempt == 2:
                    raise
        for line in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = line.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return response.status, response.headers, text, seconds

    def form_token(self, path):
        """Loads the form at `path`; its CSRF token."""
        status, _, body, _ = self.send("GET", path)
        token = re.search(r'name="csrf_token" value="([^"]+)"', body)
        if status != 200 or not token:
            fail(f"GET {path} answered {status} without a form token")
        return token.group(1)

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None


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


def session_cookie(headers, name=None):
    """The first cookie `headers` set with a value, or the one called `name`: a login sets
    the session cookie next to others (the device cookie, the form cookie's removal)."""
    for value in headers.get_all("Set-Cookie") or []:
        pair = value.split(";", 1)[0]
        key, _, cookie_value = pair.partition("=")
        if cookie_value and (name is None or key.strip() == name):
            return pair
    return None
