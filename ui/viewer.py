"""The panel's viewer: plate, edit layer, alpha, composite, relevancy, live
matte and run previews, with an A/B wipe, zoom, pan and pixel readout.

``Viewer`` = a row of view buttons + wipe/fit + a frame slider, the
``ImageCanvas`` and a readout line. Keys (canvas focused): V / Shift+V next /
previous view, W wipe, F fit, 1 one image pixel per screen pixel, + / -
zoom. Mouse: wheel zooms about the cursor, drag pans, dragging the wipe
line moves it. Pictures are ``ui.layers.Picture`` (arrays); the canvas only
draws them.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import (QButtonGroup, QHBoxLayout, QLabel, QSizePolicy, QSlider,
                               QToolButton, QVBoxLayout, QWidget)

from .layers import Picture

#: View names in button order, with their labels.
VIEWS = (("plate", "Plate"), ("matte", "Matte"), ("preview", "Preview"), ("layer", "Layer"),
         ("alpha", "Alpha"), ("composite", "Comp"), ("relevancy", "Relevancy"))
WIPE_A, WIPE_B = "plate", "composite"
_GRAB_PX = 6  # how close (screen px) a press must be to grab the wipe line
_ZOOM_STEP = 1.25


def picture_to_qimage(picture: Picture) -> QImage:
    """(H, W, 3) sRGB-encoded float -> an 8-bit QImage that owns its pixels (display only)."""
    rgb = np.clip(picture.display, 0, 1)
    arr = np.ascontiguousarray((rgb * 255 + 0.5).astype(np.uint8))
    h, w, _ = arr.shape
    return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class ImageCanvas(QWidget):
    """Draws one picture (or two, wiped) under a zoom/pan transform.

    Signals: ``hovered(str)`` the readout under the cursor; ``view_changed(str)``.
    """

    hovered = Signal(str)
    view_changed = Signal(str)
    wipe_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.pictures: dict[str, Picture] = {}
        self._images: dict[str, QImage] = {}
        self.view = ""
        self.wipe: float | None = None  # fraction of the image width, or None (off)
        self.scale = 1.0
        self.offset = QPointF(0, 0)
        self._fit = True
        self._drag: tuple[str, QPointF, QPointF] | None = None  # (what, press pos, offset then)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    # ------------------------------------------------------------ content

    def set_picture(self, name: str, picture: Picture | None) -> None:
        """Add, replace (None: remove) the picture of view ``name``."""
        old_size = self.pictures[name].size if name in self.pictures else None
        if picture is None:
            self.pictures.pop(name, None)
            self._images.pop(name, None)
        else:
            self.pictures[name] = picture
            self._images[name] = picture_to_qimage(picture)
        if name == self.view and picture is None:
            self.set_view(next(iter(self.pictures), ""))
        elif not self.view and picture is not None:
            self.set_view(name)
        if picture is not None and old_size != picture.size and self._fit:
            self.fit()
        self.update()

    def set_view(self, name: str) -> None:
        if name == self.view:
            return
        first = not self.view
        self.view = name
        if first:
            self.fit()
        self.view_changed.emit(name)
        self.update()

    def available(self) -> list[str]:
        return [n for n, _ in VIEWS if n in self.pictures] + \
            [n for n in self.pictures if n not in dict(VIEWS)]

    def step_view(self, delta: int) -> str:
        """Flip to the next (``delta`` = 1) or previous available view."""
        names = self.available()
        if not names:
            return ""
        i = names.index(self.view) if self.view in names else -1
        self.set_view(names[(i + delta) % len(names)])
        return self.view

    def set_wipe(self, on: bool, position: float = 0.5) -> None:
        """A/B wipe: plate left of the line, composite right of it."""
        self.wipe = position if on else None
        self.wipe_changed.emit(on)
        self.update()

    # ------------------------------------------------------------ transform

    def _image_size(self) -> tuple[int, int]:
        pic = self.pictures.get(self.view) or next(iter(self.pictures.values()), None)
        return pic.size if pic is not None else (0, 0)

    def fit(self) -> None:
        """Whole image in the widget, centred."""
        h, w = self._image_size()
        self._fit = True
        if not h or not w:
            return
        self.scale = max(1e-3, min(self.width() / w, self.height() / h))
        self.offset = QPointF((self.width() - w * self.scale) / 2, (self.height() - h * self.scale) / 2)
        self.update()

    def zoom(self, factor: float, about: QPointF | None = None) -> None:
        """Zoom by ``factor`` keeping the image point under ``about`` (default: centre) fixed."""
        about = about if about is not None else QPointF(self.width() / 2, self.height() / 2)
        new = min(64.0, max(1 / 64, self.scale * factor))
        image_pt = (about - self.offset) / self.scale
        self.scale = new
        self.offset = about - image_pt * new
        self._fit = False
        self.update()

    def actual_pixels(self) -> None:
        """One image pixel per screen pixel, about the centre."""
        self.zoom(1.0 / self.scale)

    def widget_to_image(self, pos: QPointF) -> tuple[float, float]:
        p = (pos - self.offset) / self.scale
        return p.x(), p.y()

    def image_to_widget(self, x: float, y: float) -> QPointF:
        """Screen position of image point (x, y) (pixel centres are at +0.5)."""
        return self.offset + QPointF(x, y) * self.scale

    def _wipe_x(self) -> float:
        return self.image_to_widget(self.wipe * self._image_size()[1], 0).x()

    # ------------------------------------------------------------ painting

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(38, 38, 38))
        if self.view not in self._images:
            p.setPen(QColor(150, 150, 150))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no image")
            return
        # Nearest neighbour when magnified: each pixel must read as a pixel.
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.scale < 1)
        if self.wipe is not None and WIPE_A in self._images:
            b = WIPE_B if WIPE_B in self._images else self.view
            self._draw(p, b)
            x = self._wipe_x()
            p.save()
            p.setClipRect(QRectF(0, 0, max(0.0, x), self.height()))
            self._draw(p, WIPE_A)
            p.restore()
            p.setPen(QPen(QColor(255, 255, 255), 1))
            p.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        else:
            self._draw(p, self.view)

    def _draw(self, p: QPainter, name: str) -> None:
        img = self._images[name]
        target = QRectF(self.offset.x(), self.offset.y(), img.width() * self.scale,
                        img.height() * self.scale)
        p.drawImage(target, img)

    def resizeEvent(self, event) -> None:  # noqa: N802
        if self._fit:
            self.fit()
        super().resizeEvent(event)

    # ------------------------------------------------------------ mouse, keys

    def picture_at(self, pos: QPointF) -> Picture | None:
        """The picture drawn at a widget position (either side of the wipe)."""
        if self.wipe is not None and WIPE_A in self.pictures:
            if pos.x() < self._wipe_x():
                return self.pictures[WIPE_A]
            return self.pictures.get(WIPE_B, self.pictures.get(self.view))
        return self.pictures.get(self.view)

    def readout_at(self, pos: QPointF) -> str:
        pic = self.picture_at(pos)
        if pic is None:
            return ""
        x, y = self.widget_to_image(pos)
        return pic.readout(int(np.floor(x)), int(np.floor(y)))

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        pos = event.position()
        if self._drag is not None:
            what, start, offset = self._drag
            if what == "wipe":
                w = self._image_size()[1] or 1
                self.wipe = min(1.0, max(0.0, self.widget_to_image(pos)[0] / w))
            else:
                self.offset = offset + (pos - start)
                self._fit = False
            self.update()
        self.hovered.emit(self.readout_at(pos))

    def mousePressEvent(self, event) -> None:  # noqa: N802
        pos = event.position()
        near_wipe = self.wipe is not None and abs(pos.x() - self._wipe_x()) <= _GRAB_PX
        self._drag = ("wipe" if near_wipe and event.button() == Qt.MouseButton.LeftButton else "pan",
                      pos, QPointF(self.offset))
        self.setFocus()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        self._drag = None

    def wheelEvent(self, event) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom(_ZOOM_STEP ** steps, event.position())

    def leaveEvent(self, event) -> None:  # noqa: N802
        self.hovered.emit("")

    def keyPressEvent(self, event) -> None:  # noqa: N802
        key, shift = event.key(), bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if key == Qt.Key.Key_V:
            self.step_view(-1 if shift else 1)
        elif key == Qt.Key.Key_W:
            self.set_wipe(self.wipe is None)
        elif key == Qt.Key.Key_F:
            self.fit()
        elif key == Qt.Key.Key_1:
            self.actual_pixels()
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom(_ZOOM_STEP)
        elif key == Qt.Key.Key_Minus:
            self.zoom(1 / _ZOOM_STEP)
        else:
            super().keyPressEvent(event)
            return
        self.hovered.emit("")


class Viewer(QWidget):
    """View buttons, wipe and fit, the canvas, a frame slider and the readout.

    ``frame_changed(int)`` when the slider picks another frame of a sequence.
    """

    frame_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.canvas = ImageCanvas()
        self.buttons: dict[str, QToolButton] = {}
        self._group = QButtonGroup(self, exclusive=True)
        bar = QHBoxLayout()
        bar.setSpacing(2)
        for name, label in VIEWS:
            b = QToolButton(text=label, checkable=True, enabled=False,
                            toolTip=f"Show the {label.lower()} (V / Shift+V flip between views)")
            b.clicked.connect(lambda _=False, n=name: self.canvas.set_view(n))
            self._group.addButton(b)
            self.buttons[name] = b
            bar.addWidget(b)
        bar.addStretch(1)
        self.wipe_button = QToolButton(text="A|B wipe", checkable=True,
                                       toolTip="Wipe the plate (left) against the composite "
                                               "(right); drag the line (W)")
        self.fit_button = QToolButton(text="Fit", toolTip="Fit the image (F); 1 = actual pixels")
        bar.addWidget(self.wipe_button)
        bar.addWidget(self.fit_button)

        self.frame_slider = QSlider(Qt.Orientation.Horizontal, visible=False,
                                    toolTip="Frame of the plate sequence")
        self.frame_label = QLabel("", visible=False)
        frames_row = QHBoxLayout()
        frames_row.addWidget(self.frame_label)
        frames_row.addWidget(self.frame_slider, 1)
        self.readout = QLabel(" ", textInteractionFlags=Qt.TextInteractionFlag.TextSelectableByMouse)
        self.readout.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.readout.setStyleSheet("QLabel { font-family: monospace; }")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(frames_row)
        layout.addWidget(self.readout)

        self.frames: list[int] = []
        self.canvas.hovered.connect(lambda t: self.readout.setText(t or " "))
        self.canvas.view_changed.connect(self._on_view)
        self.wipe_button.toggled.connect(self._on_wipe_button)
        self.canvas.wipe_changed.connect(self._on_view_wipe)
        self.fit_button.clicked.connect(self.canvas.fit)
        self.frame_slider.valueChanged.connect(self._on_slider)

    # ------------------------------------------------------------ pictures

    def set_picture(self, name: str, picture: Picture | None) -> None:
        self.canvas.set_picture(name, picture)
        if name in self.buttons:
            self.buttons[name].setEnabled(picture is not None)
        self._on_view(self.canvas.view)

    def clear_results(self) -> None:
        """Drop what a run produced (layer, alpha, composite, relevancy)."""
        for name in ("layer", "alpha", "composite", "relevancy", "source"):
            self.set_picture(name, None)

    def show_view(self, name: str) -> None:
        if name in self.canvas.pictures:
            self.canvas.set_view(name)

    @property
    def view(self) -> str:
        return self.canvas.view

    def _on_view(self, name: str) -> None:
        for n, b in self.buttons.items():
            b.setChecked(n == name)

    def _on_wipe_button(self, on: bool) -> None:
        if on != (self.canvas.wipe is not None):
            self.canvas.set_wipe(on)

    def _on_view_wipe(self, on: bool) -> None:
        # the wipe key (W) and the button stay in step
        if self.wipe_button.isChecked() != on:
            self.wipe_button.setChecked(on)

    # ------------------------------------------------------------ frames

    def set_frames(self, frames: list[int] | None) -> None:
        """Frame numbers of the plate (None / one frame: no slider)."""
        self.frames = list(frames or [])
        many = len(self.frames) > 1
        self.frame_slider.blockSignals(True)
        self.frame_slider.setRange(0, max(0, len(self.frames) - 1))
        self.frame_slider.setValue(0)
        self.frame_slider.blockSignals(False)
        self.frame_slider.setVisible(many)
        self.frame_label.setVisible(many)
        self._label()

    @property
    def frame(self) -> int | None:
        return self.frames[self.frame_slider.value()] if self.frames else None

    def set_frame(self, frame: int) -> None:
        if frame in self.frames:
            self.frame_slider.setValue(self.frames.index(frame))

    def _label(self) -> None:
        if self.frames:
            self.frame_label.setText(f"frame {self.frame}")

    def _on_slider(self, _index: int) -> None:
        self._label()
        if self.frame is not None:
            self.frame_changed.emit(self.frame)
