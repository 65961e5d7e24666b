"""Images, EXR and colour: the file boundary of LiveLayers.

Reading: :func:`load_image` (single images and frame sequences, EXR layers,
colour management into network space). Writing: :func:`write_layered_exr` /
:func:`write_exr_sequence` (single-part multi-layer EXR, atomic). Colour:
:func:`to_linear` / :func:`from_linear`, and :func:`linear_premultiplied_layer`
(the linear-light edit layer that makes a compositor's Over exact).
OpenImageIO does every file and colour operation. See docs/exr.md.
"""
from .colour import (INPUT_SPACES, LINEAR_SPACES, NETWORK_SPACE, available_colourspaces,
                     from_linear, is_linear, resolve_colourspace, to_linear)
from .exr import (COLOUR_LAYERS, COMPRESSIONS, DATA_LAYERS, LayerSpec, exr_is_complete,
                  identity_stmap, output_paths, read_exr_header, read_exr_layers, write_exr_sequence,
                  write_layered_exr)
from .layer import linear_premultiplied_layer, over
from .read import MissingFramesError, Plate, PlateInfo, list_layers, load_image, resolve_files
from .sequence import FramePattern, parse_pattern

__all__ = [
    "COLOUR_LAYERS", "COMPRESSIONS", "DATA_LAYERS", "INPUT_SPACES", "LINEAR_SPACES", "NETWORK_SPACE",
    "FramePattern", "LayerSpec", "MissingFramesError", "Plate", "PlateInfo",
    "available_colourspaces", "exr_is_complete", "identity_stmap", "from_linear", "is_linear", "linear_premultiplied_layer",
    "list_layers", "load_image", "output_paths", "over", "parse_pattern", "read_exr_header",
    "read_exr_layers", "resolve_colourspace", "resolve_files", "to_linear", "write_exr_sequence",
    "write_layered_exr",
]
