"""Starts `dsv4 serve` processes for the black-box API tests (loopback only)."""
import os, socket, subprocess, tempfile, time, urllib.request

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


class Server:
    def __init__(self, *args):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="dsv4-serve-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([BIN, "serve", "--port", str(self.port), *args], stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + open(self.log.name).read()[-2000:])
            try:
                urllib.request.urlopen(self.base + "/health", timeout=1).read()
                return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def metrics(self):
        text = urllib.request.urlopen(self.base + "/metrics", timeout=5).read().decode()
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
