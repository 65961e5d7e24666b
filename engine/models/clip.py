"""The CLIP handle: one object that every method uses to talk to CLIP.

``load_clip(spec)`` accepts every open_clip spec form (see docs/models.md):

- ``"ViT-B-32/openai"`` or ``("ViT-B-32", "openai")``: a built-in open_clip
  name plus a pretrained tag;
- ``"hf-hub:org/repo"``: an open_clip model on the Hugging Face Hub;
- ``"local-dir:/path"`` or a plain folder path holding ``open_clip_config.json``
  and the weights;
- a catalogue id from plugin.json (``"toy-clip"``, ``"openai-vit-b-32"``).

Weights are found by ``resolve.resolve_clip`` (explicit path →
``$LIVELAYERS_MODELS`` → ComfyUI's models folder → Hugging Face cache →
download only when allowed) and loaded without executing code: open_clip's
loader reads safetensors, or ``torch.load(weights_only=True)`` for ``.bin``.

The handle keeps the model frozen; gradients flow only to the input image.
Everything image-side is differentiable: preprocessing (resize, crop,
normalise) runs on tensors, and ``image_forward`` is a manual pass through
open_clip's ``VisionTransformer`` that exposes per-block tokens and the
post-softmax attention maps (still in the autograd graph, for relevancy).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from ..device import autocast_dtype, pick_device
from . import resolve as _resolve

RESIZE_MODES = ("shortest", "squash")


@dataclass
class ImageForward:
    """What ``CLIPHandle.image_forward`` returns.

    embedding: (N, D) L2-normalised image embedding, float32.
    tokens:    {block: (N, L, C)} output of 0-based block ``block`` (CLS first).
    attention: {block: (N, heads, L, L)} post-softmax attention of that block.
    """
    embedding: torch.Tensor
    tokens: dict[int, torch.Tensor] = field(default_factory=dict)
    attention: dict[int, torch.Tensor] = field(default_factory=dict)


class CLIPHandle:
    """A frozen open_clip model with differentiable image-side helpers.

    Build it with ``load_clip``; the constructor takes an already-built
    open_clip ``CLIP`` model (useful in tests).
    """

    def __init__(self, model, tokenizer, device: torch.device, precision: str = "auto",
                 spec: str = "", source: str = ""):
        model = model.to(device=device, dtype=torch.float32).eval()
        model.requires_grad_(False)
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.precision = precision
        self.autocast = autocast_dtype(device, precision)
        self.spec = spec          # what the user asked for
        self.source = source      # where the weights came from (path or hub id)
        visual = model.visual
        if not hasattr(visual, "conv1") or not hasattr(visual, "transformer"):
            raise ValueError(f"CLIP model {spec!r}: only open_clip ViT image towers are supported "
                             f"(got {type(visual).__name__}); use a ViT-* model")
        if getattr(visual, "attn_pool", None) is not None:
            raise ValueError(f"CLIP model {spec!r}: attentional pooling (CoCa) is not supported")
        size = visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        patch = visual.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        self.grid = self.image_size // self.patch_size
        self.n_blocks = len(visual.transformer.resblocks)
        self.width = int(visual.transformer.width)
        self.heads = _num_heads(visual.transformer.resblocks[0].attn)
        self.embed_dim = int(visual.output_dim)
        cfg = getattr(visual, "preprocess_cfg", None) or {}
        mean = cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))
        std = cfg.get("std", (0.26862954, 0.26130258, 0.27577711))
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        interp = cfg.get("interpolation", "bicubic")
        self.interpolation = interp if interp in ("bicubic", "bilinear") else "bicubic"
        mode = cfg.get("resize_mode", "shortest")
        self.resize_mode = mode if mode in RESIZE_MODES else "shortest"
        self._text_cache: dict[tuple[str, str], torch.Tensor] = {}
        self.text_cache_hits = 0  # counted so tests (and curious users) can see the cache work

    # ------------------------------------------------------------------ basics
    @property
    def logit_scale(self) -> float:
        """exp(learned temperature), e.g. 100 for OpenAI CLIP."""
        return float(self.model.logit_scale.detach().exp().item())

    def __repr__(self) -> str:
        return (f"CLIPHandle({self.spec!r}, image_size={self.image_size}, patch={self.patch_size}, "
                f"blocks={self.n_blocks}, embed_dim={self.embed_dim}, device={self.device})")

    def _autocast(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    # ------------------------------------------------------------- preprocess
    def preprocess(self, x: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """(N, 3, H, W) [0,1] → (N, 3, S, S) normalised, S = ``image_size``.

        ``mode``: "shortest" (resize the shortest side to S, centre crop, as
        open_clip does) or "squash" (resize the whole frame to S×S, so every
        pixel is seen). Antialiased bicubic/bilinear resizing on tensors, so
        gradients reach ``x``. An S×S input is not resampled at all.
        """
        mode = mode or self.resize_mode
        if mode not in RESIZE_MODES:
            raise ValueError(f"preprocess mode {mode!r}; allowed: {RESIZE_MODES}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"CLIP input must be (N, 3, H, W); got {tuple(x.shape)}")
        x = x.to(self.device, torch.float32)
        s = self.image_size
        h, w = x.shape[-2:]
        if mode == "squash":
            x = self._resize(x, s, s)
        else:
            scale = s / min(h, w)
            nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
            x = self._resize(x, nh, nw)
            top, left = (nh - s) // 2, (nw - s) // 2
            x = x[:, :, top:top + s, left:left + s]
        return (x - self.mean) / self.std

    def _resize(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        if tuple(x.shape[-2:]) == (h, w):
            return x
        return F.interpolate(x, size=(h, w), mode=self.interpolation, align_corners=False,
                             antialias=True)

    # --------------------------------------------------------------- encoders
    def encode_image(self, x: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """(N, 3, H, W) [0,1] → (N, D) L2-normalised, differentiable wrt ``x``."""
        with self._autocast():
            feats = self.model.encode_image(self.preprocess(x, mode))
        return F.normalize(feats.float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: str | Sequence[str]) -> torch.Tensor:
        """List of N strings → (N, D) L2-normalised, no grad; cached per string."""
        if isinstance(texts, str):
            texts = [texts]
        dev = str(self.device)
        missing = [t for t in dict.fromkeys(texts) if (t, dev) not in self._text_cache]
        self.text_cache_hits += sum(1 for t in texts if (t, dev) in self._text_cache)
        if missing:
            tokens = self.tokenizer(missing).to(self.device)
            # never cache inference tensors: autograd code (relevancy, losses)
            # must be able to use cached embeddings later
            with torch.inference_mode(False), self._autocast():
                feats = self.model.encode_text(tokens)
            feats = F.normalize(feats.float(), dim=-1)
            for t, f in zip(missing, feats):
                self._text_cache[(t, dev)] = f
        return torch.stack([self._text_cache[(t, dev)] for t in texts])

    # ------------------------------------------------------- manual ViT pass
    def image_forward(self, x: torch.Tensor, tokens_from: Iterable[int] = (),
                      attention_from: Iterable[int] = (), mode: str | None = None,
                      preprocessed: bool = False) -> ImageForward:
        """A manual pass through the ViT that also returns block internals.

        x: (N, 3, H, W) in [0,1] (or already normalised (N, 3, S, S) when
        ``preprocessed``). ``tokens_from`` / ``attention_from``: 0-based block
        indices (negative counts from the end). Returns ``ImageForward`` with
        the same embedding as ``encode_image`` (to float rounding).
        """
        v = self.model.visual
        want_tok = {self._block_index(b) for b in tokens_from}
        want_att = {self._block_index(b) for b in attention_from}
        if not preprocessed:
            x = self.preprocess(x, mode)
        tokens, attention = {}, {}
        with self._autocast():
            h = self._embed_patches(v, x)
            for i, blk in enumerate(v.transformer.resblocks):
                h, attn = _block_forward(blk, h, need_attention=i in want_att)
                if i in want_att:
                    attention[i] = attn
                if i in want_tok:
                    tokens[i] = h
            pooled = self._pool(v, h)
        return ImageForward(F.normalize(pooled.float(), dim=-1), tokens, attention)

    def _block_index(self, b: int) -> int:
        i = int(b) + (self.n_blocks if int(b) < 0 else 0)
        if not 0 <= i < self.n_blocks:
            raise ValueError(f"block {b} is out of range; this model has {self.n_blocks} blocks "
                             f"(0..{self.n_blocks - 1}, or negative from the end)")
        return i

    @staticmethod
    def _embed_patches(v, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised → (N, 1 + g², C) tokens after ln_pre."""
        h = v.conv1(x.to(v.conv1.weight.dtype))           # (N, C, g, g)
        h = h.flatten(2).transpose(1, 2)                   # (N, g², C)
        cls = v.class_embedding.to(h.dtype).expand(h.shape[0], 1, -1)
        h = torch.cat([cls, h], dim=1) + v.positional_embedding.to(h.dtype)
        return v.ln_pre(h)  # patch dropout is the identity in eval mode

    @staticmethod
    def _pool(v, h: torch.Tensor) -> torch.Tensor:
        """open_clip's pooling + projection: (N, L, C) → (N, D)."""
        def take(t):
            return t[:, 1:].mean(dim=1) if v.pool_type == "avg" else t[:, 0]
        if v.final_ln_after_pool:
            pooled = v.ln_post(take(h))
        else:
            pooled = take(v.ln_post(h))
        return pooled @ v.proj if v.proj is not None else pooled


# ---------------------------------------------------------------- attention

def _num_heads(attn) -> int:
    return int(attn.num_heads)


def _block_forward(blk, x: torch.Tensor, need_attention: bool):
    """One residual block, (N, L, C) → (N, L, C), plus (N, heads, L, L) attention or None.

    open_clip has two block types: ``ResidualAttentionBlock`` (attention is an
    ``nn.MultiheadAttention``) and ``CustomResidualAttentionBlock`` (its own
    ``Attention`` with optional qk-norm, scaled cosine, head scale, inner norm
    and an extra ``ln_attn``). We recompute attention by hand for both, so the
    post-softmax map exists as a tensor in the graph.
    """
    a, attn = _attention(blk.attn, blk.ln_1(x), need_attention)
    if hasattr(blk, "ln_attn"):
        a = blk.ln_attn(a)
    x = x + blk.ls_1(a)
    x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
    return x, attn


def _attention(attn, x: torch.Tensor, need_attention: bool):
    """Self-attention of either open_clip attention class on (N, L, C)."""
    n, length, c = x.shape
    heads = attn.num_heads
    if isinstance(attn, torch.nn.MultiheadAttention):
        if not attn._qkv_same_embed_dim:
            raise ValueError("separate q/k/v projections are not supported")
        q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(n, length, heads, -1).transpose(1, 2) for t in (q, k, v))
        logits = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-1, -2)
        probs = logits.softmax(dim=-1)
        out = (probs @ v).transpose(1, 2).reshape(n, length, c)
        return attn.out_proj(out), (probs if need_attention else None)

    # open_clip.transformer.Attention
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(n, length, heads, -1).transpose(1, 2) for t in (q, k, v))
    if attn.logit_scale is not None:  # scaled cosine attention
        logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2)
        logits = logits * torch.clamp(attn.logit_scale, max=attn.logit_scale_max).exp()
    else:
        q, k = attn.ln_q(q), attn.ln_k(k)
        logits = (q * attn.scale) @ k.transpose(-1, -2)
    probs = logits.softmax(dim=-1)
    out = probs @ v
    if attn.head_scale is not None:
        out = out * attn.head_scale
    out = attn.ln_inner(out.transpose(1, 2).reshape(n, length, c))
    return attn.out_proj(out), (probs if need_attention else None)


# ------------------------------------------------------------------- loading

def load_clip(spec, device: str | torch.device = "auto", precision: str = "auto",
              offline: bool | None = None, search_dirs: Sequence[str] = (),
              hf_cache_dir: str | None = None) -> CLIPHandle:
    """Load a CLIP model as a frozen ``CLIPHandle``.

    spec: ``"ViT-B-32/openai"``, ``("ViT-B-32", "openai")``, ``"hf-hub:org/repo"``,
    ``"local-dir:/path"``, a folder path, or a catalogue id (``"toy-clip"``).
    device: "auto" | "cpu" | "cuda" | "cuda:N" | "mps" (engine/device.py).
    precision: "auto" (bf16/fp16 autocast on GPU, fp32 on CPU) | "fp32" | "fp16" | "bf16".
    Weights are kept in fp32 (the toy model's fp16 file is upcast); mixed
    precision happens through autocast.
    offline: None = follow ``HF_HUB_OFFLINE``; True forbids downloads.
    search_dirs: extra model folders (ComfyUI's) searched after ``$LIVELAYERS_MODELS``.
    hf_cache_dir: the Hugging Face cache to search (default: huggingface_hub's).
    """
    import open_clip

    dev = device if isinstance(device, torch.device) else pick_device(device)
    autocast_dtype(dev, precision)  # validates the precision name early
    found = _resolve.resolve_clip(spec, offline=offline, search_dirs=search_dirs,
                                  hf_cache_dir=hf_cache_dir)
    if found.local_dir is not None:
        name = f"local-dir:{found.local_dir}"
        model = open_clip.create_model(name, device="cpu", precision="fp32", weights_only=True)
        tokenizer = open_clip.get_tokenizer(name)
    else:
        # OpenAI's tags were trained with QuickGELU; open_clip only warns when
        # the plain config (GELU) is used with them, we build the right one.
        model = open_clip.create_model(found.name, pretrained=found.pretrained, device="cpu",
                                       precision="fp32", weights_only=True,
                                       require_pretrained=True, force_quick_gelu=found.quick_gelu)
        tokenizer = open_clip.get_tokenizer(found.name)
    return CLIPHandle(model, tokenizer, dev, precision, spec=_spec_str(spec),
                      source=found.path or found.hub or _spec_str(spec))


def _spec_str(spec) -> str:
    return "/".join(spec) if isinstance(spec, (tuple, list)) else str(spec)


def handle_from_model(model, tokenizer=None, device: str = "cpu", spec: str = "in-memory") -> CLIPHandle:
    """Wrap an already-built open_clip model (tests, training scripts)."""
    import open_clip
    ctx = getattr(model, "context_length", None) or model.text.context_length
    tokenizer = tokenizer or open_clip.SimpleTokenizer(context_length=ctx)
    return CLIPHandle(model, tokenizer, pick_device(device), "fp32", spec=spec, source=spec)


__all__ = ["CLIPHandle", "ImageForward", "load_clip", "handle_from_model", "RESIZE_MODES"]
