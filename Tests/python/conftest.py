"""Starts `dsv4 serve` processes for the black-box API tests (loopback only)."""
import http.client, json, os, socket, ssl, subprocess, tempfile, time, urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("DSV4_BIN") or os.path.join(ROOT, ".build", "debug", "dsv4")

TOOL_SCRIPT = ("Let me check the weather.</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
               "<｜DSML｜parameter name=\"location\" string=\"true\">Paris</｜DSML｜parameter>\n"
               "<｜DSML｜parameter name=\"days\" string=\"false\">2</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix domain socket."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Server:
    def __init__(self, *args, tls_ca=None, unix_socket=None, launcher=(), env=None):
        """`launcher`: a command line `dsv4 serve` runs under (e.g. mpirun and its flags)."""
        self.port = free_port()
        self.tls_ca = tls_ca
        self.unix_socket = unix_socket
        self.log = tempfile.NamedTemporaryFile(prefix="dsv4-serve-", suffix=".log", delete=False)
        extra = ["--unix-socket", unix_socket] if unix_socket else []
        self.proc = subprocess.Popen([*launcher, BIN, "serve", "--port", str(self.port), *extra, *args], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        self.base = f"{'https' if tls_ca else 'http'}://127.0.0.1:{self.port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + open(self.log.name).read()[-2000:])
            try:
                if self.request("GET", "/health", timeout=1)[0] == 200:
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def connection(self, timeout=30):
        if self.unix_socket:
            return UnixHTTPConnection(self.unix_socket, timeout=timeout)
        if self.tls_ca:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=ssl.create_default_context(cafile=self.tls_ca))
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=30):
        """(status, headers, body bytes) of one request on a fresh connection."""
        c = self.connection(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
        finally:
            c.close()

    def log_lines(self):
        return open(self.log.name, encoding="utf-8", errors="replace").read().splitlines()

    def json_log(self):
        """The log lines that are JSON objects (with --log-format json)."""
        out = []
        for line in self.log_lines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def rss_kb(self, field="VmRSS"):
        """Resident KB from /proc/PID/status: VmRSS (all), or RssAnon (heap and other private
        memory, without the mapped model file's pages, which the page cache may drop and refill)."""
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"no {field}")

    def metrics(self):
        text = self.request("GET", "/metrics", timeout=5)[2].decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def server():
    s = Server()  # no --model: the bundled default model
    yield s
    s.stop()


@pytest.fixture(scope="session")
def scripted():
    f = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
    f.write(TOOL_SCRIPT)
    f.close()
    s = Server("--fake-script", f.name, "--api-key", "sk-test")
    yield s
    s.stop()


PARALLEL_SCRIPT = ("\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
                   "<｜DSML｜parameter name=\"location\" string=\"true\">Paris</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
                   "<｜DSML｜invoke name=\"get_weather\">\n"
                   "<｜DSML｜parameter name=\"location\" string=\"true\">Rome</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>")


@pytest.fixture(scope="session")
def ops():
    """The real tiny model with the operational flags set to small, testable values."""
    s = Server("--max-concurrent-requests", "3", "--header-timeout", "1", "--body-timeout", "2", "--idle-timeout", "4",
               "--log-format", "json", "--served-model-name", "tiny-a", "--served-model-name", "tiny-b", "--max-model-len", "512",
               "--keep-alive-interval", "0.05")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def parallel(tmp_path_factory):
    """A scripted model answering with two parallel tool calls (no reasoning), on a Unix socket."""
    d = tmp_path_factory.mktemp("parallel")
    script = d / "script.txt"
    script.write_text(PARALLEL_SCRIPT)
    s = Server("--fake-script", str(script), unix_socket=str(d / "dsv4.sock"))
    yield s
    s.stop()
