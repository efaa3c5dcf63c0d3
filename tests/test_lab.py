"""`make lab` as a user gets it: JupyterLab starts (as root too), on 127.0.0.1 only, behind its token.

The command is the Makefile's own (`make -n lab`), so the test fails if the target changes in a way that breaks it.
"""

import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lab_command(port: int) -> list[str]:
    dry = subprocess.run(["make", "-n", "lab", f"LAB_PORT={port}"], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    # a stale .venv stamp makes `make -n` print the install steps first; the server is the last line
    lines = [line for line in dry.stdout.splitlines() if " lab " in f" {line} "]
    assert lines, f"`make -n lab` shows no `jupyter lab` command:\n{dry.stdout}"
    return shlex.split(lines[-1])


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port``, from Linux's /proc/net/tcp and tcp6."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                # the kernel prints each 32-bit word in host byte order
                if sys.byteorder == "little":
                    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(socket.AF_INET if width == 8 else socket.AF_INET6, raw))
    return found


def _get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:  # not answering (yet)
        return 0


def test_make_lab_serves_on_localhost_only_and_needs_its_token(tmp_path):
    port = _free_port()
    cmd = _lab_command(port)
    assert ("--allow-root" in cmd) == (os.geteuid() == 0), cmd  # JupyterLab refuses root without it

    runtime = tmp_path / "runtime"
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_TOKEN", "JUPYTER_PASSWORD")}
    env.update({"JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
                "JUPYTER_RUNTIME_DIR": str(runtime), "IPYTHONDIR": str(tmp_path / "ipython"),
                "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")})
    log_path = tmp_path / "lab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, server = time.monotonic() + 60, None
        while server is None:
            if proc.poll() is not None:
                pytest.fail(f"`make lab` exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"`make lab` did not answer within 60 s:\n{log_path.read_text()[-3000:]}")
            for info in runtime.glob("jpserver-*.json"):
                try:
                    candidate = json.loads(info.read_text())
                except ValueError:  # still being written
                    continue
                if candidate.get("pid") == proc.pid and _get(f"http://127.0.0.1:{port}/api/status") in (200, 403):
                    server = candidate
            time.sleep(0.5)

        assert server["port"] == port and server["token"], server  # the default: a random token, not none
        api = f"http://127.0.0.1:{port}/api/contents"
        assert _get(api) == 403, "the API answers without the token"
        assert _get(api, token="not-the-token") == 403
        assert _get(api, token=server["token"]) == 200

        if os.path.exists("/proc/net/tcp"):
            assert _listening_addresses(port) == {"127.0.0.1"}
        with socket.socket() as s:  # a server on 0.0.0.0 would take this one too (Linux routes 127/8 to lo)
            s.settimeout(2)
            assert s.connect_ex(("127.0.0.2", port)) != 0, "answers on 127.0.0.2: not bound to 127.0.0.1 only"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
