"""A real ComfyUI for integration tests: install, start, talk to, stop.

ComfyUI is not on the package index; the project keeps a source snapshot
(a ``ComfyUI-<commit>.tar.gz`` whose top folder is ``comfy-snap/``) next to
the repository, in ``../shared/comfyui`` (override: ``$LIVELAYERS_COMFYUI_SNAPSHOT``,
a folder or the tarball itself). This module

* unpacks it and builds its virtual environment once per machine, in
  ``~/.cache/livelayers-comfyui/<sha256 of the tarball>-<torch version>/``
  (override the root with ``$LIVELAYERS_COMFYUI_CACHE``), guarded by a file
  lock so that parallel sessions build it once;
* installs the pack the way ComfyUI-Manager does: the repository is copied
  into ``<base>/custom_nodes/LiveLayers``, every line of its
  ``requirements.txt`` is pip-installed on its own, then ``install.py`` runs
  in the pack folder with the server's interpreter (cached per content of
  those two files: they only run again when they change; set
  ``$LIVELAYERS_COMFYUI_REINSTALL=1`` to force);
* starts ``main.py --cpu`` on a free loopback port with its own base
  directory (custom_nodes, input, output, temp, user) and an in-memory
  database, so sessions never share state, and stops it;
* talks to it: JSON over HTTP (``get``, ``post``, ``run_prompt``) and a
  small websocket client (``/ws``) for progress events and preview images.

Nothing here imports ComfyUI: it runs in its own interpreter.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import queue
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SNAPSHOT = ROOT.parent / "shared" / "comfyui"
PACK_NAME = "LiveLayers"
# server.py imports requests, which ComfyUI's requirements.txt does not list.
EXTRA_REQUIREMENTS = ("requests",)
TORCH_PACKAGES = ("torch", "torchvision", "torchaudio")
# The torch build when this interpreter has none (the one the snapshot was tried with).
FALLBACK_TORCH = ("torch==2.14.1", "torchvision==0.29.1")
COPY_IGNORE = (".git", ".venv", "venv", "__pycache__", "out", "runs", "*.egg-info",
               ".pytest_cache", "build", "dist")


class ComfyUnavailable(RuntimeError):
    """The snapshot is missing: tests skip with this message."""


# ------------------------------------------------------------------ the snapshot

def snapshot_tarball() -> Path:
    """The snapshot tarball, or ``ComfyUnavailable`` saying where it was looked for."""
    where = Path(os.environ.get("LIVELAYERS_COMFYUI_SNAPSHOT", DEFAULT_SNAPSHOT)).expanduser()
    if where.is_file():
        return where
    found = sorted(where.glob("ComfyUI-*.tar.gz")) if where.is_dir() else []
    if not found:
        raise ComfyUnavailable(f"no ComfyUI snapshot (ComfyUI-*.tar.gz) in {where}; set "
                               "LIVELAYERS_COMFYUI_SNAPSHOT to the folder or tarball")
    return found[-1]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _torch_pins() -> list[str]:
    """This interpreter's torch/torchvision, so pip reuses the wheels it already has."""
    try:
        return [f"{d}=={importlib.metadata.version(d)}" for d in ("torch", "torchvision")]
    except importlib.metadata.PackageNotFoundError:
        return list(FALLBACK_TORCH)


def cache_root() -> Path:
    return Path(os.environ.get("LIVELAYERS_COMFYUI_CACHE", "~/.cache/livelayers-comfyui")).expanduser()


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(cmd: list, log, **kw) -> None:
    """Run a command, its output appended to ``log``; raise with the log's tail on failure."""
    log.write(f"\n$ {' '.join(map(str, cmd))}\n")
    log.flush()
    code = subprocess.call([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT, **kw)
    if code != 0:
        log.flush()
        tail = Path(log.name).read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed with exit code {code}:\n{tail}")


@dataclass
class ComfyInstall:
    """An unpacked snapshot with its venv: ``source`` holds main.py, ``python`` runs it."""
    source: Path
    python: Path
    folder: Path

    def pip(self, *args: str) -> list[str]:
        return [str(self.python), "-m", "pip", "install", "-q", *args]


def prepare_comfyui() -> ComfyInstall:
    """Unpack the snapshot and build its venv once per machine (cached, locked)."""
    tarball = snapshot_tarball()
    torch_pins = _torch_pins()
    key = f"{_sha256(tarball)[:16]}-{torch_pins[0].split('==')[1]}"
    folder = cache_root() / key
    install = ComfyInstall(folder / "comfy-snap", folder / "venv" / "bin" / "python", folder)
    ready = folder / "READY"
    with _locked(cache_root() / f"{key}.lock"):
        if ready.is_file():
            return install
        if folder.exists():  # an interrupted build: start again
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        with open(folder / "build.log", "w") as log:
            with tarfile.open(tarball) as tar:
                try:
                    tar.extractall(folder, filter="data")
                except TypeError:  # Python without extraction filters
                    tar.extractall(folder)
            if not (install.source / "main.py").is_file():
                raise RuntimeError(f"{tarball} has no comfy-snap/main.py")
            _run([sys.executable, "-m", "venv", folder / "venv"], log)
            _run(install.pip(*torch_pins), log)
            reqs = [ln.strip() for ln in (install.source / "requirements.txt").read_text().splitlines()
                    if ln.strip() and not ln.startswith("#")
                    and ln.strip().split("=")[0].split(">")[0].split("<")[0] not in TORCH_PACKAGES]
            _run(install.pip("-c", _write_constraints(folder, torch_pins), *reqs,
                             *EXTRA_REQUIREMENTS), log)
        ready.write_text(json.dumps({"tarball": str(tarball), "torch": torch_pins}))
    return install


def _write_constraints(folder: Path, pins: list[str]) -> str:
    path = folder / "constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return str(path)


# ---------------------------------------------------------------- the pack

def copy_pack(custom_nodes: Path, source: Path = ROOT, name: str = PACK_NAME) -> Path:
    """Copy the repository into ``custom_nodes/<name>`` (what a git clone gives)."""
    dest = custom_nodes / name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(*COPY_IGNORE))
    return dest


def install_pack(install: ComfyInstall, pack: Path) -> None:
    """ComfyUI-Manager's install: each requirements.txt line on its own, then
    install.py in the pack folder. Skipped when those files were already
    installed into this venv unchanged (``$LIVELAYERS_COMFYUI_REINSTALL=1``: always)."""
    reqs_file, installer = pack / "requirements.txt", pack / "install.py"
    digest = hashlib.sha256(reqs_file.read_bytes() + installer.read_bytes()).hexdigest()[:16]
    marker = install.folder / f"pack-{digest}"
    with _locked(install.folder / "pack.lock"):
        if marker.is_file() and os.environ.get("LIVELAYERS_COMFYUI_REINSTALL") != "1":
            return
        with open(install.folder / "pack-install.log", "w") as log:
            for line in reqs_file.read_text().splitlines():
                line = line.split("#")[0].strip()
                if line:
                    _run(install.pip(line), log)
            _run([install.python, installer.name], log, cwd=pack)
        marker.write_text(digest)


def installed_version(install: ComfyInstall, dist: str) -> str:
    out = subprocess.run([str(install.python), "-c",
                          f"import importlib.metadata as m; print(m.version({dist!r}))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


# ---------------------------------------------------------------- the server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ComfyServer:
    """A running ComfyUI: its base directory, port and log."""
    install: ComfyInstall
    base: Path
    port: int
    process: subprocess.Popen
    log_path: Path
    client_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def input_dir(self) -> Path:
        return self.base / "input"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def pack(self) -> Path:
        return self.base / "custom_nodes" / PACK_NAME

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # -- HTTP
    def request(self, method: str, path: str, body=None, timeout: float = 30.0):
        """(status, parsed JSON or text) of an HTTP request; errors are returned, not raised."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def get(self, path: str):
        status, value = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {value}")
        return value

    def upload_image(self, name: str, data: bytes, subfolder: str = "") -> dict:
        """POST /upload/image (multipart), as the image upload widget does."""
        boundary = uuid.uuid4().hex
        parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"]
        for key, value in (("subfolder", subfolder), ("type", "input"), ("overwrite", "true")):
            parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n"
                         f"{value}\r\n".encode())
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        req = urllib.request.Request(self.url + "/upload/image", data=body, method="POST", headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    # -- prompts
    def queue_prompt(self, graph: dict, extra: dict | None = None) -> tuple[int, dict]:
        """POST /prompt; (HTTP status, answer) — 200 gives {"prompt_id": ...}, 400 the node_errors."""
        body = {"prompt": graph, "client_id": self.client_id, **(extra or {})}
        return self.request("POST", "/prompt", body)

    def wait_history(self, prompt_id: str, timeout: float = 300.0) -> dict:
        """The /history entry of a finished prompt (status, outputs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None \
                    and entry["status"].get("status_str") in ("success", "error"):
                return entry
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited ({self.process.returncode}):\n{self.log()[-4000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout:.0f} s:\n{self.log()[-3000:]}")

    def run_prompt(self, graph: dict, timeout: float = 300.0) -> dict:
        status, answer = self.queue_prompt(graph)
        if status != 200:
            raise RuntimeError(f"/prompt refused the graph (HTTP {status}): {json.dumps(answer)[:3000]}")
        return self.wait_history(answer["prompt_id"], timeout)

    def interrupt(self) -> None:
        status, value = self.request("POST", "/interrupt", {})
        if status != 200:
            raise RuntimeError(f"/interrupt: HTTP {status}: {value}")

    def websocket(self) -> "WebSocket":
        return WebSocket("127.0.0.1", self.port, f"/ws?clientId={self.client_id}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_server(install: ComfyInstall, base: Path, threads: int | None = None,
                 startup_timeout: float = 180.0, cpu: bool = True) -> ComfyServer:
    """Start ComfyUI with ``base`` as its base directory on a free loopback port;
    returns once /object_info answers (raises with the log when it cannot start)."""
    for sub in ("custom_nodes", "input", "output", "temp", "user"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    port = free_port()
    log_path = base / "comfyui.log"
    cmd = [str(install.python), str(install.source / "main.py"), "--listen", "127.0.0.1",
           "--port", str(port), "--base-directory", str(base), "--database-url", "sqlite:///:memory:",
           "--disable-api-nodes", "--disable-auto-launch", *(["--cpu"] if cpu else [])]
    log = open(log_path, "w")
    process = subprocess.Popen(cmd, cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = ComfyServer(install, base, port, process, log_path)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with {process.returncode} while starting:\n{server.log()[-4000:]}")
        with contextlib.suppress(OSError):
            status, _ = server.request("GET", "/system_stats", timeout=5)
            if status == 200:
                return server
        time.sleep(0.5)
    server.stop()
    raise TimeoutError(f"ComfyUI did not answer within {startup_timeout:.0f} s:\n{server.log()[-4000:]}")


# ---------------------------------------------------------------- websocket

@dataclass
class WsMessage:
    """A websocket message: ``kind`` "text" (``data`` = parsed JSON) or "binary" (raw bytes)."""
    kind: str
    data: object
    time: float

    @property
    def type(self) -> str | None:
        return self.data.get("type") if self.kind == "text" else None

    @property
    def payload(self) -> dict:
        return self.data.get("data", {}) if self.kind == "text" else {}


class WebSocket:
    """A minimal RFC 6455 client for ComfyUI's /ws: a reader thread collects
    every message (text as JSON, binary as bytes) in ``messages``."""

    def __init__(self, host: str, port: int, path: str, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        head, self._buffer = head.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")
        self.sock.settimeout(None)
        self.messages: list[WsMessage] = []
        self._new = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def _recv_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(max(65536, n))
            if not chunk:
                raise ConnectionError("websocket closed")
            self._buffer += chunk
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def _frame(self) -> tuple[int, bool, bytes]:
        b0, b1 = self._recv_exact(2)
        length = b1 & 0x7F
        if length == 126:
            length = struct.unpack(">H", self._recv_exact(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self._recv_exact(8))[0]
        mask = self._recv_exact(4) if b1 & 0x80 else None
        data = self._recv_exact(length)
        if mask:
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
        return b0 & 0x0F, bool(b0 & 0x80), data

    def _send(self, opcode: int, data: bytes = b"") -> None:
        mask = os.urandom(4)  # clients must mask every frame
        n = len(data)
        head = bytes([0x80 | opcode])
        head += bytes([0x80 | n]) if n < 126 else (bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536
                                                   else bytes([0x80 | 127]) + struct.pack(">Q", n))
        with self._lock:
            self.sock.sendall(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(data)))

    def _read_loop(self) -> None:
        parts, first = [], 0
        try:
            while True:
                opcode, fin, data = self._frame()
                if opcode == 8:  # close
                    break
                if opcode == 9:  # ping
                    self._send(10, data)
                    continue
                if opcode in (1, 2):
                    parts, first = [data], opcode
                elif opcode == 0:
                    parts.append(data)
                else:
                    continue
                if fin:
                    raw = b"".join(parts)
                    msg = (WsMessage("text", json.loads(raw), time.monotonic()) if first == 1
                           else WsMessage("binary", raw, time.monotonic()))
                    self.messages.append(msg)
                    self._new.put(msg)
        except (OSError, ConnectionError, ValueError):
            pass
        finally:
            self._closed = True
            self._new.put(None)

    def wait_for(self, predicate, timeout: float = 60.0) -> WsMessage:
        """The first message (already received or arriving) for which ``predicate(msg)`` is true."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for msg in self.messages[seen:]:
                seen += 1
                if predicate(msg):
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching websocket message in time")
            if self._closed:
                raise ConnectionError("websocket closed before a matching message arrived")
            with contextlib.suppress(queue.Empty):
                self._new.get(timeout=min(left, 0.5))

    def of_prompt(self, prompt_id: str, type_: str | None = None) -> list[WsMessage]:
        return [m for m in self.messages if m.kind == "text" and m.payload.get("prompt_id") == prompt_id
                and (type_ is None or m.type == type_)]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send(8, struct.pack(">H", 1000))
        with contextlib.suppress(OSError):
            self.sock.close()


# ---------------------------------------------------------------- all of it

@contextlib.contextmanager
def comfyui_session(base: Path, threads: int | None = 1):
    """Install (cached), copy the pack in, start the server; stop it afterwards."""
    install = prepare_comfyui()
    pack = copy_pack(base / "custom_nodes")
    install_pack(install, pack)
    server = start_server(install, base, threads=threads)
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":  # python tests/comfyui_host.py: build the cache and start once
    import tempfile
    with tempfile.TemporaryDirectory() as tmp, comfyui_session(Path(tmp)) as srv:
        print(f"ComfyUI at {srv.url}, {len(srv.get('/object_info'))} nodes; log {srv.log_path}")
