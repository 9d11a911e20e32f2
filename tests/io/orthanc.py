"""A real Orthanc PACS for integration tests, reachable on loopback only.

Orthanc 1.10 cannot bind to an address, so it runs in a private network namespace that has only ``lo``; the
test process enters the same namespace (setns on the calling thread; threads it starts, such as pynetdicom's,
inherit it) while a test talks to the server, and returns to its own namespace afterwards. The server is
stopped by PID and the namespace deleted at teardown, also when a test fails. Needs root; CI installs
orthanc, orthanc-dicomweb and iproute2 with scripts/install_system_deps.sh.
"""
from __future__ import annotations

import base64
import contextlib
import ctypes
import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
CLONE_NEWNET = 0x40000000
USER, PASSWORD = "researcher", "s3cret-pw"
SERVER_AET, CLIENT_AET = "ORTHANC", "DIFFRECON"
DICOM_PORT, HTTP_PORT = 4242, 8042


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns failed: {os.strerror(errno)}")


@contextlib.contextmanager
def network_namespace(name: str):
    """Run the body with this thread in network namespace ``name``; always switch back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        yield
    finally:
        _setns(home)
        os.close(target)
        os.close(home)


def require_orthanc() -> None:
    """Skip for a user without root (with the reason); fail clearly where root lacks the installed tools."""
    if os.geteuid() != 0:
        pytest.skip("the Orthanc PACS tests need root (a private network namespace); CI runs them as root")
    missing = [tool for tool in ("Orthanc", "ip") if shutil.which(tool) is None]
    if not DICOMWEB_PLUGIN.is_file():
        missing.append(str(DICOMWEB_PLUGIN))
    if missing:
        pytest.fail(f"PACS integration tests need {', '.join(missing)}: run scripts/install_system_deps.sh "
                    "(Debian packages orthanc, orthanc-dicomweb, iproute2)")


class OrthancServer:
    """Orthanc with DICOM and DICOMweb in its own network namespace; storage survives restart()."""

    def __init__(self, root: Path, **extra_config):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.netns = f"diffrecon-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.process: subprocess.Popen | None = None
        self.config = root / "orthanc.json"
        self.config.write_text(json.dumps({
            "Name": "DIFFRECON-TEST", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
            "HttpPort": HTTP_PORT, "DicomPort": DICOM_PORT, "DicomAet": SERVER_AET, "DicomCheckCalledAet": True,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
            "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": False, "DicomAlwaysAllowFind": False,
            "DicomCheckModalityHost": True,
            "DicomModalities": {"diffrecon": {"AET": CLIENT_AET, "Host": "127.0.0.1", "Port": 11112,
                                              "AllowEcho": True, "AllowStore": True, "AllowFind": True}},
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Ssl": False},
            **extra_config,
        }))
        self.netns_created = False

    def _create_netns(self) -> None:
        for command in (["ip", "netns", "add", self.netns],
                        ["ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up"]):
            done = subprocess.run(command, capture_output=True, text=True)
            self.netns_created = self.netns_created or done.returncode == 0
            if done.returncode:
                pytest.fail(f"cannot set up the network namespace for Orthanc ({' '.join(command)}): {done.stderr}")

    @property
    def dicomweb_url(self) -> str:
        return f"http://127.0.0.1:{HTTP_PORT}/dicom-web"

    def start(self) -> None:
        if not self.netns_created:
            self._create_netns()
        log = open(self.root / "orthanc.log", "ab")
        # `ip netns exec` execs Orthanc, so this PID is Orthanc's. TCP_NODELAY=1 makes DCMTK inside Orthanc
        # disable Nagle's algorithm: without it every C-STORE response waits ~40 ms for a delayed ACK.
        self.process = subprocess.Popen(["ip", "netns", "exec", self.netns, "Orthanc", str(self.config)],
                                        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TCP_NODELAY": "1"})
        log.close()
        deadline = time.monotonic() + 20
        with network_namespace(self.netns):
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                try:
                    self.rest("/system")
                    return
                except (urllib.error.URLError, OSError):
                    time.sleep(0.1)
        tail = (self.root / "orthanc.log").read_text(errors="replace")[-2000:]
        self.stop()
        pytest.fail(f"Orthanc did not start within 20 s; log:\n{tail}")

    def stop(self) -> None:
        """Stop the server by PID (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self.netns_created:
            subprocess.run(["ip", "netns", "delete", self.netns], check=False)

    def client(self):
        """Context manager: the body talks to this server (enters its network namespace)."""
        return network_namespace(self.netns)

    def rest(self, path: str, body: object | None = None) -> object:
        """Orthanc REST call (from inside the namespace); JSON in and out, raw bytes for files."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{HTTP_PORT}{path}", data=data)
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {auth}")
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = response.read()
        return payload if path.endswith("/file") else json.loads(payload)

    def instances_of_series(self, series_uid: str) -> list[str]:
        """Orthanc IDs of the stored instances of a series."""
        return self.rest("/tools/find", {"Level": "Instance", "Query": {"SeriesInstanceUID": series_uid}})


class AnswerDroppingProxy:
    """An HTTP relay to the server that loses the answer to one POST after the server has handled it.

    From the client's side this is a server dying mid-series with a request in flight: the instances of that
    STOW-RS request are stored, but no acknowledgement comes back. ``after_drop`` runs before the connection
    is closed (e.g. ``server.stop`` for a server that stays down); requests the server cannot take are
    answered 502. Create it inside ``server.client()`` (its threads then share the server's namespace); use
    it as a context manager; ``url`` is its DICOMweb root.
    """

    def __init__(self, server: OrthancServer, drop_post: int, after_drop: Callable[[], None] | None = None):
        self.posts = 0
        proxy = self

        class Relay(http.server.BaseHTTPRequestHandler):
            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))) or None
                headers = {k: v for k, v in self.headers.items() if k in ("Authorization", "Content-Type", "Accept")}
                request = urllib.request.Request(f"http://127.0.0.1:{HTTP_PORT}{self.path}", data=body,
                                                 headers=headers, method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        code, payload = response.status, response.read()
                except urllib.error.HTTPError as error:
                    code, payload = error.code, error.read()
                except (urllib.error.URLError, OSError):
                    code, payload = 502, b""
                if self.command == "POST":
                    proxy.posts += 1
                    if proxy.posts == drop_post:
                        if after_drop is not None:
                            after_drop()
                        self.close_connection = True  # no answer at all
                        return
                self.send_response(code)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _relay  # noqa: N815 (http.server's naming)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Relay)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/dicom-web"

    def __enter__(self) -> AnswerDroppingProxy:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def make_tls_files(folder: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it (openssl); returns their paths."""
    if shutil.which("openssl") is None:
        pytest.fail("the DICOM TLS test needs the openssl command (Debian package openssl) to make certificates")
    paths = {name: folder / name for name in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt", "san")}
    paths["san"].write_text("subjectAltName=IP:127.0.0.1\n")
    for command in (
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", paths["ca.key"], "-out", paths["ca.crt"],
             "-days", "1", "-subj", "/CN=diffrecon test CA"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", paths["server.key"], "-out", paths["server.csr"],
             "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", paths["server.csr"], "-CA", paths["ca.crt"], "-CAkey", paths["ca.key"],
             "-CAcreateserial", "-out", paths["server.crt"], "-days", "1", "-extfile", paths["san"]]):
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    return paths


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """A running Orthanc (module scope); tests talk to it inside ``with orthanc.client():``."""
    require_orthanc()
    server = OrthancServer(tmp_path_factory.mktemp("orthanc"))
    try:
        server.start()
        yield server
    finally:
        server.close()
