"""The ComfyUI back end: run the panel's workflow on a running ComfyUI server.

ComfyUI's HTTP and websocket API (server.py of ComfyUI):

- ``POST /prompt {"prompt": graph, "client_id": id}`` queues the graph and
  answers ``{"prompt_id": …}`` (400 with ``error``/``node_errors`` when the
  server's validation refuses it).
- ``GET /ws?clientId=id`` streams JSON events ``{"type", "data"}``:
  ``execution_start``, ``executing`` (``node`` None = the prompt finished),
  ``progress`` (``value``/``max``/``node``), ``executed`` (a node's ``ui``
  output), ``execution_success``, ``execution_error``,
  ``execution_interrupted``; and binary frames: a 4-byte big-endian event
  type, then for type 1 (PREVIEW_IMAGE) a 4-byte image format and the
  JPEG/PNG bytes, for type 4 (PREVIEW_IMAGE_WITH_METADATA) a 4-byte JSON
  length, the JSON and the image bytes.
- ``POST /interrupt {"prompt_id": …}`` stops the running prompt at its next
  progress update (our nodes' progress updates are interruption points).
- ``GET /history/<prompt_id>`` holds every output node's ``ui`` dict;
  ``GET /view?filename=&subfolder=&type=output`` serves a file of the output
  folder. LL_SaveEXR lists its files there as ``ui["exr"]``.

``ComfyClient`` is plain Python (urllib + the ``websockets`` client);
``ComfyRunThread`` has the same signals as ``ui.worker.RunThread``.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from PySide6.QtCore import QThread, Signal
from PySide6.QtGui import QImage

from ..engine.errors import Cancelled, LiveLayersError

DEFAULT_URL = "http://127.0.0.1:8188"
PREVIEW_IMAGE, PREVIEW_IMAGE_WITH_METADATA = 1, 4
POLL_S = 0.1  # how often the run loop looks at the Stop flag while waiting for events


class ComfyError(LiveLayersError):
    """The ComfyUI server refused, failed or could not be reached."""


def _summarise_refusal(body: dict) -> str:
    """One line from a /prompt 400 answer: the error and the first node error."""
    err = body.get("error") or {}
    text = err.get("message", "refused") if isinstance(err, dict) else str(err)
    for node_id, info in (body.get("node_errors") or {}).items():
        for e in (info.get("errors") or [])[:1]:
            text += f"; node {node_id} ({info.get('class_type', '?')}): " \
                    f"{e.get('message', '')} {e.get('details', '')}".rstrip()
        break
    return text


class ComfyClient:
    """A client of one ComfyUI server, e.g. ``ComfyClient("http://127.0.0.1:8188")``."""

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 30.0):
        url = url.strip().rstrip("/")
        if "://" not in url:
            url = "http://" + url
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"ComfyUI address {url!r}; allowed: http://host:port")
        self.url, self.timeout = url, timeout

    # ------------------------------------------------------------ HTTP

    def _request(self, method: str, path: str, body: Any = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                detail = _summarise_refusal(json.loads(raw))
            except (ValueError, AttributeError):
                detail = raw[:300].decode(errors="replace")
            raise ComfyError(f"ComfyUI {method} {path}: HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            raise ComfyError(f"ComfyUI at {self.url} cannot be reached ({e}); is the server "
                             "running (python main.py --listen 127.0.0.1 --port 8188)?") from None

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        return json.loads(self._request(method, path, body) or b"null")

    def object_info(self) -> dict:
        return self._json("GET", "/object_info")

    def queue_prompt(self, workflow: dict, client_id: str) -> str:
        """Queue ``workflow``; returns its prompt id. ComfyError if the server refuses it."""
        answer = self._json("POST", "/prompt", {"prompt": workflow, "client_id": client_id})
        if not isinstance(answer, dict) or "prompt_id" not in answer:
            raise ComfyError(f"ComfyUI /prompt answered {answer!r}")
        return str(answer["prompt_id"])

    def interrupt(self, prompt_id: str | None = None) -> None:
        self._request("POST", "/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    def history(self, prompt_id: str) -> dict:
        """The history entry of one prompt ({} while it has none)."""
        return (self._json("GET", f"/history/{urllib.parse.quote(prompt_id)}") or {}).get(prompt_id, {})

    def view(self, filename: str, subfolder: str = "", kind: str = "output") -> bytes:
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": kind})
        return self._request("GET", f"/view?{query}")

    def ws_url(self, client_id: str) -> str:
        parts = urllib.parse.urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}/ws?clientId={urllib.parse.quote(client_id)}"

    # ------------------------------------------------------------ results

    def fetch_outputs(self, outputs: dict, into: str | Path) -> list[str]:
        """Local paths of the files the output nodes wrote.

        A file listed in ``ui["exr"]`` (filename/subfolder/type) is used in
        place when its ``ui["text"]`` path exists on this machine (a local
        server), else downloaded through ``/view`` into ``into``.
        """
        paths: list[str] = []
        for ui in outputs.values():
            local = [p for p in ui.get("text", []) if isinstance(p, str)]
            entries = ui.get("exr") or []
            for i, entry in enumerate(entries):
                if i < len(local) and os.path.isfile(local[i]):
                    paths.append(local[i])
                    continue
                dest = Path(into) / entry.get("subfolder", "") / entry["filename"]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(self.view(entry["filename"], entry.get("subfolder", ""),
                                           entry.get("type", "output")))
                paths.append(str(dest))
            if not entries:  # an output node that lists plain paths only
                paths += [p for p in local if os.path.isfile(p)]
        return paths


def parse_binary(message: bytes) -> tuple[int, bytes]:
    """A binary websocket frame -> (event type, image bytes) for preview events,
    (event type, b"") for others."""
    if len(message) < 4:
        return -1, b""
    event = struct.unpack(">I", message[:4])[0]
    if event == PREVIEW_IMAGE and len(message) >= 8:
        return event, bytes(message[8:])
    if event == PREVIEW_IMAGE_WITH_METADATA and len(message) >= 8:
        n = struct.unpack(">I", message[4:8])[0]
        return event, bytes(message[8 + n:])
    return event, b""


class ComfyRunThread(QThread):
    """Queues one workflow on a ComfyUI server and relays its events.

    Signals as ``RunThread``: progressed(step, total, info), preview(QImage),
    succeeded(RunResult), failed(exception). ``request_stop()`` sends
    ``/interrupt`` for this prompt; the server reports
    ``execution_interrupted`` and the thread fails with ``Cancelled``.
    """

    progressed = Signal(int, int, object)
    preview = Signal(QImage)
    succeeded = Signal(object)
    failed = Signal(object)

    def __init__(self, workflow: dict, client: ComfyClient, *, order: list[str] | None = None,
                 download_dir: str | Path | None = None, parent=None):
        super().__init__(parent)
        self.workflow, self.client = workflow, client
        self.order = order or list(workflow)
        self.download_dir = download_dir
        self.prompt_id: str | None = None
        self._stop = threading.Event()
        self._interrupted = False

    def request_stop(self) -> None:
        self._stop.set()

    def _class(self, node_id) -> str:
        return str((self.workflow.get(str(node_id)) or {}).get("class_type", node_id))

    def _fraction(self, done: set, node: str | None, value: float, total: float) -> int:
        current = value / total if total else 0.0
        return int(1000 * min(1.0, (len(done) + current) / max(1, len(self.order))))

    def run(self) -> None:  # the worker thread
        from websockets.sync.client import connect
        client_id = uuid.uuid4().hex
        try:
            with connect(self.client.ws_url(client_id), open_timeout=self.client.timeout,
                         max_size=None) as ws:
                self.prompt_id = self.client.queue_prompt(self.workflow, client_id)
                outputs = self._follow(ws)
            result = self._result(outputs)
        except Exception as e:  # shown in the panel, never a crash
            if isinstance(e, (ComfyError, Cancelled, LiveLayersError)):
                self.failed.emit(e)
            else:
                self.failed.emit(ComfyError(f"ComfyUI run failed: {type(e).__name__}: {e}"))
        else:
            self.succeeded.emit(result)

    def _follow(self, ws) -> dict:
        """Relay events until this prompt ends; returns {node_id: ui} from 'executed'."""
        done: set[str] = set()
        outputs: dict[str, dict] = {}
        node: str | None = None
        while True:
            if self._stop.is_set() and not self._interrupted:
                self._interrupted = True
                self.client.interrupt(self.prompt_id)
            try:
                message = ws.recv(timeout=POLL_S)
            except TimeoutError:
                continue
            if isinstance(message, bytes):
                _, image = parse_binary(message)
                if image:
                    q = QImage.fromData(image)
                    if not q.isNull():
                        self.preview.emit(q)
                continue
            event = json.loads(message)
            kind, data = event.get("type"), event.get("data") or {}
            if data.get("prompt_id") not in (None, self.prompt_id):
                continue  # another client's prompt
            if kind == "executing":
                if node is not None:
                    done.add(node)
                node = data.get("node")
                if node is None and data.get("prompt_id") == self.prompt_id:
                    return outputs  # older servers end with executing(None)
                self.progressed.emit(self._fraction(done, node, 0, 1), 1000,
                                     {"node": self._class(node)})
            elif kind == "progress":
                value, total = float(data.get("value", 0)), float(data.get("max", 0) or 1)
                self.progressed.emit(self._fraction(done, node, value, total), 1000,
                                     {"node": self._class(data.get("node", node))})
            elif kind == "executed":
                outputs[str(data.get("node"))] = data.get("output") or {}
            elif kind == "execution_success":
                return outputs
            elif kind == "execution_interrupted":
                raise Cancelled(f"ComfyUI interrupted the run at node {data.get('node_id')} "
                                f"({data.get('node_type', '?')})")
            elif kind == "execution_error":
                raise ComfyError(f"ComfyUI: node {data.get('node_id')} ({data.get('node_type', '?')}) "
                                 f"failed: {data.get('exception_type', '')}: "
                                 f"{data.get('exception_message', '')}".rstrip())

    def _result(self, outputs: dict):
        from ..engine.executor import RunResult
        # /history is the authority (it also holds outputs of cached nodes)
        for _ in range(20):
            entry = self.client.history(self.prompt_id)
            if entry.get("outputs") is not None:
                outputs = {**outputs, **entry["outputs"]}
                break
            time.sleep(0.05)
        into = self.download_dir or tempfile.mkdtemp(prefix="livelayers-comfy-")
        written = self.client.fetch_outputs(outputs, into)
        return RunResult(outputs=outputs, written=written, executed=list(outputs))
