"""The panel's ComfyUI back end against a small fake server on 127.0.0.1.

The fake speaks the parts of ComfyUI's API the back end uses (as ComfyUI's
server.py does): POST /prompt, the /ws websocket (JSON events and binary
preview frames: 4-byte event type 1, 4-byte image format, PNG bytes),
POST /interrupt, GET /history/<id> and GET /view of an output file. Its
"execution" streams progress for node 3, a preview, then LL_SaveEXR's
``ui`` with a file only /view can deliver (the server is "remote"). The
real ComfyUI is driven in tests/test_ui_comfyui.py.
"""
from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import torch

pytest.importorskip("PySide6")
from PySide6.QtCore import QBuffer, QByteArray, QIODevice  # noqa: E402
from PySide6.QtGui import QColor, QImage  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from livelayers.ui.backends import ComfyUIBackend  # noqa: E402
from livelayers.ui.comfy import ComfyClient, ComfyError, parse_binary  # noqa: E402
from livelayers.ui.panel import LiveLayersPanel  # noqa: E402
from qt_helpers import wait_for  # noqa: E402  (tests/qt_helpers.py)

ROOT = Path(__file__).resolve().parents[1]
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455


def _frame(opcode: int, data: bytes) -> bytes:
    """An unmasked server frame."""
    n = len(data)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + data


class FakeComfy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, exr: bytes, preview_png: bytes):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.exr, self.preview_png = exr, preview_png
        self.sockets: dict[str, tuple] = {}  # client id -> (wfile, lock)
        self.prompts: list[dict] = []
        self.interrupts: list[dict] = []
        self.history: dict[str, dict] = {}
        self.steps, self.delay, self.refuse = 20, 0.005, False
        self._interrupt = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def send(self, client_id: str, message) -> None:
        wfile, lock = self.sockets[client_id]
        with lock:
            if isinstance(message, bytes):
                wfile.write(_frame(2, message))
            else:
                wfile.write(_frame(1, json.dumps(message).encode()))
            wfile.flush()

    def execute(self, prompt_id: str, client_id: str, graph: dict) -> None:
        def ev(kind, **data):
            self.send(client_id, {"type": kind, "data": dict(data, prompt_id=prompt_id)})
        ev("execution_start")
        for node in ("1", "2", "3"):
            ev("executing", node=node, display_node=node)
        for step in range(1, self.steps + 1):
            if self._interrupt.is_set():
                ev("execution_interrupted", node_id="3", node_type="LL_Text2LIVE", executed=["1", "2"])
                return
            time.sleep(self.delay)
            ev("progress", value=step, max=self.steps, node="3")
            if step == 5:
                self.send(client_id, struct.pack(">II", 1, 2) + self.preview_png)
        ev("executing", node="4", display_node="4")
        ui = {"exr": [{"filename": "edit.0001.exr", "subfolder": "shots", "type": "output"}],
              "text": ["/far/away/server/output/shots/edit.0001.exr"]}
        ev("executed", node="4", display_node="4", output=ui)
        self.history[prompt_id] = {"outputs": {"4": ui}, "status": {"status_str": "success"}}
        ev("execution_success")
        ev("executing", node=None)


class _Handler(BaseHTTPRequestHandler):
    server: FakeComfy
    protocol_version = "HTTP/1.1"  # a websocket handshake needs it

    def log_message(self, *args):  # quiet
        pass

    def _json(self, code: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/ws":
            return self._websocket(query.get("clientId") or uuid.uuid4().hex)
        if url.path.startswith("/history/"):
            pid = url.path.rsplit("/", 1)[1]
            return self._json(200, {pid: self.server.history[pid]} if pid in self.server.history else {})
        if url.path == "/view":
            ok = (query.get("filename"), query.get("subfolder"), query.get("type")) == \
                ("edit.0001.exr", "shots", "output")
            if not ok:
                return self._json(404, {})
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.server.exr)))
            self.end_headers()
            self.wfile.write(self.server.exr)
            return None
        return self._json(404, {})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/prompt":
            if self.server.refuse:
                return self._json(400, {"error": {"message": "Prompt outputs failed validation"},
                                        "node_errors": {"3": {"class_type": "LL_Text2LIVE", "errors": [
                                            {"message": "Value smaller than min", "details": "steps: 0 < 1"}]}}})
            pid = uuid.uuid4().hex
            self.server.prompts.append(body)
            self.server._interrupt.clear()
            threading.Thread(target=self.server.execute, daemon=True,
                             args=(pid, body["client_id"], body["prompt"])).start()
            return self._json(200, {"prompt_id": pid, "number": 0, "node_errors": {}})
        if self.path == "/interrupt":
            self.server.interrupts.append(body)
            self.server._interrupt.set()
            return self._json(200, {})
        return self._json(404, {})

    def _websocket(self, client_id: str) -> None:
        accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] + WS_GUID)
                                               .encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.server.sockets[client_id] = (self.wfile, threading.Lock())
        self.server.send(client_id, {"type": "status", "data": {"sid": client_id}})
        try:  # read (and drop) client frames until it closes
            while True:
                head = self.rfile.read(2)
                if len(head) < 2 or head[0] & 0x0F == 8:
                    break
                n = head[1] & 0x7F
                if n == 126:
                    n = struct.unpack(">H", self.rfile.read(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", self.rfile.read(8))[0]
                self.rfile.read(n + (4 if head[1] & 0x80 else 0))
        finally:
            self.server.sockets.pop(client_id, None)
            self.close_connection = True


@pytest.fixture(scope="module")
def qapp():
    return QApplication.instance() or QApplication([])


def _exr_bytes(tmp: Path) -> bytes:
    """A real LL_SaveEXR file: a blue edit (alpha 1) on the left half of a grey 32x32 plate."""
    from livelayers.nodes.io_nodes import LL_SaveEXR
    plate = torch.full((1, 32, 32, 3), 0.5)
    edit = torch.zeros(1, 32, 32, 3)
    edit[..., 2] = 1.0
    alpha = torch.zeros(1, 32, 32)
    alpha[:, :, :16] = 1.0
    comp = alpha[..., None] * edit + (1 - alpha[..., None]) * plate
    out = LL_SaveEXR().save(str(tmp / "edit.####.exr"), edit_image=edit, edit_alpha=alpha,
                            source=plate, composite=comp, relevancy=alpha, frames="1")
    return Path(out["result"][0]).read_bytes()


def _png(colour: QColor) -> bytes:
    img = QImage(8, 8, QImage.Format.Format_RGB888)
    img.fill(colour)
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    img.save(buf, "PNG")
    return bytes(data.data())


@pytest.fixture
def server(qapp, tmp_path):
    srv = FakeComfy(_exr_bytes(tmp_path), _png(QColor(0, 0, 255)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def make_panel(server, tmp_path) -> LiveLayersPanel:
    wf = json.loads((ROOT / "examples" / "text2live.json").read_text())
    backend = ComfyUIBackend(server.url, download_dir=tmp_path / "fetched")
    return LiveLayersPanel(wf, backend=backend)


def test_a_run_on_the_server_shows_progress_preview_and_the_fetched_result(server, tmp_path):
    panel = make_panel(server, tmp_path)
    panel.prompt_edit.setText("a green circle")
    values, outcomes = [], []
    panel.progress_bar.valueChanged.connect(values.append)
    panel.run_finished.connect(outcomes.append)
    assert panel.run()
    wait_for(lambda: outcomes)
    assert outcomes == ["done"], panel.error_label.text()
    # the server got the panel's graph, with the typed prompt
    sent = server.prompts[0]
    assert sent["prompt"]["3"]["inputs"]["prompt"] == "a green circle" and sent["client_id"]
    # progress followed the node's steps; the preview came through the websocket
    assert len(values) > 10 and values == sorted(values) and panel.progress_bar.value() == 1000
    assert tuple(panel.viewer.canvas.pictures["preview"].display[2, 2]) == (0.0, 0.0, 1.0)
    # the result was fetched through /view and is shown
    fetched = tmp_path / "fetched" / "shots" / "edit.0001.exr"
    assert panel.written == [str(fetched)] and fetched.stat().st_size > 1000
    assert panel.viewer.view == "composite"
    comp = panel.viewer.canvas.pictures["composite"].display
    assert comp[16, 4, 2] > 0.99 and comp[16, 4, 0] < 0.01        # blue where the edit is
    assert abs(comp[16, 28] - 0.5).max() < 0.01                    # the grey plate elsewhere
    assert panel.history.entries[0].backend == "comfyui"
    assert "LL_Text2LIVE" in panel.log_view.toPlainText()
    panel.shutdown()


def test_stop_interrupts_the_prompt_on_the_server(server, tmp_path):
    server.steps, server.delay = 100000, 0.01
    panel = make_panel(server, tmp_path)
    outcomes = []
    panel.run_finished.connect(outcomes.append)
    panel.run()
    wait_for(lambda: panel.progress_bar.value() > 0 and server.prompts)
    started = time.monotonic()
    panel.stop()
    wait_for(lambda: outcomes, timeout=10)
    took = time.monotonic() - started
    assert outcomes == ["stopped"] and took < 1.0, took
    assert len(server.interrupts) == 1 and server.interrupts[0]["prompt_id"]
    assert "ComfyUI interrupted the run at node 3" in panel.error_label.text()
    assert not (tmp_path / "fetched").exists()
    panel.shutdown()


def test_a_refused_graph_and_an_absent_server_are_reported(server, tmp_path):
    server.refuse = True
    panel = make_panel(server, tmp_path)
    outcomes = []
    panel.run_finished.connect(outcomes.append)
    panel.run()
    wait_for(lambda: outcomes)
    assert outcomes == ["failed"]
    text = panel.error_label.text()
    assert text.startswith("ComfyError: ComfyUI POST /prompt: HTTP 400")
    assert "node 3 (LL_Text2LIVE): Value smaller than min steps: 0 < 1" in text
    panel.shutdown()

    with pytest.raises(ComfyError, match="cannot be reached"):
        ComfyClient("127.0.0.1:9", timeout=2).object_info()
    with pytest.raises(ValueError, match="allowed: http://host:port"):
        ComfyClient("ftp://x")


def test_binary_frames_parse():
    png = b"\x89PNG..."
    assert parse_binary(struct.pack(">II", 1, 2) + png) == (1, png)
    meta = json.dumps({"node_id": "3"}).encode()
    assert parse_binary(struct.pack(">II", 4, len(meta)) + meta + png) == (4, png)
    assert parse_binary(struct.pack(">I", 3) + b"text") == (3, b"")
    assert parse_binary(b"\x00") == (-1, b"")
