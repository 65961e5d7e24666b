"""guided-diffusion checkpoint -> diffusers UNet2DModel (engine/models/guided_diffusion.py).

The reference below is guided-diffusion's UNet forward written from its
architecture (key names, block order, legacy qkv packing, scale-shift norm),
run directly on the state dict; the converted UNet2DModel must match it on a
tiny random model of the same layout."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from livelayers.engine.errors import CorruptFileError
from livelayers.engine.models import guided_diffusion as gd

TINY = dict(mc=32, mult=(1, 2, 2), n_res=2, attention=(False, True, True), head_channels=16)


def guided_state(mc, mult, n_res, attention, updown=True, scale_shift=True, in_ch=3, out_ch=6,
                 seed=0, head_channels=16) -> dict[str, torch.Tensor]:
    """A random state dict with guided-diffusion UNetModel's key names and shapes."""
    g = torch.Generator().manual_seed(seed)
    s: dict[str, torch.Tensor] = {}
    emb = 4 * mc

    def rand(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    def norm(p, c):
        s[f"{p}.weight"], s[f"{p}.bias"] = 1 + rand(c), rand(c)

    def conv(p, cin, cout, k, dims=2):
        shape = (cout, cin) + (k,) * dims
        s[f"{p}.weight"], s[f"{p}.bias"] = rand(*shape, scale=1 / math.sqrt(cin * k ** dims)), rand(cout)

    def lin(p, cin, cout):
        s[f"{p}.weight"], s[f"{p}.bias"] = rand(cout, cin, scale=1 / math.sqrt(cin)), rand(cout)

    def res(p, cin, cout):
        norm(f"{p}.in_layers.0", cin)
        conv(f"{p}.in_layers.2", cin, cout, 3)
        lin(f"{p}.emb_layers.1", emb, 2 * cout if scale_shift else cout)
        norm(f"{p}.out_layers.0", cout)
        conv(f"{p}.out_layers.3", cout, cout, 3)
        if cin != cout:
            conv(f"{p}.skip_connection", cin, cout, 1)

    def attn(p, c):
        norm(f"{p}.norm", c)
        conv(f"{p}.qkv", c, 3 * c, 1, dims=1)
        conv(f"{p}.proj_out", c, c, 1, dims=1)

    lin("time_embed.0", mc, emb)
    lin("time_embed.2", emb, emb)
    conv("input_blocks.0.0", in_ch, mc, 3)
    chans, ch, b = [mc], mc, 1
    for level, m in enumerate(mult):
        for _ in range(n_res):
            res(f"input_blocks.{b}.0", ch, m * mc)
            ch = m * mc
            if attention[level]:
                attn(f"input_blocks.{b}.1", ch)
            chans.append(ch)
            b += 1
        if level < len(mult) - 1:
            res(f"input_blocks.{b}.0", ch, ch) if updown else conv(f"input_blocks.{b}.0.op", ch, ch, 3)
            chans.append(ch)
            b += 1
    res("middle_block.0", ch, ch)
    attn("middle_block.1", ch)
    res("middle_block.2", ch, ch)
    b = 0
    for level in reversed(range(len(mult))):
        for i in range(n_res + 1):
            res(f"output_blocks.{b}.0", ch + chans.pop(), mult[level] * mc)
            ch, sub = mult[level] * mc, 1
            if attention[level]:
                attn(f"output_blocks.{b}.1", ch)
                sub = 2
            if level and i == n_res:
                p = f"output_blocks.{b}.{sub}"
                res(p, ch, ch) if updown else conv(f"{p}.conv", ch, ch, 3)
            b += 1
    norm("out.0", ch)
    conv("out.2", ch, out_ch, 3)
    return s


def reference_forward(s, x, t, mc, mult, n_res, attention, head_channels, updown=True,
                      scale_shift=True, new_order=False):
    """guided-diffusion's UNetModel.forward, functionally, on its own state dict."""
    def gn(p, h):
        return F.group_norm(h, 32, s[f"{p}.weight"], s[f"{p}.bias"], eps=1e-5)

    def lin(p, h):
        return F.linear(h, s[f"{p}.weight"], s[f"{p}.bias"])

    def conv(p, h):
        w = s[f"{p}.weight"]
        return F.conv2d(h, w, s[f"{p}.bias"], padding=w.shape[-1] // 2)

    half = mc // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    emb = lin("time_embed.2", F.silu(lin("time_embed.0", torch.cat([torch.cos(args), torch.sin(args)], -1))))

    def res(p, h, resample=None):
        a = F.silu(gn(f"{p}.in_layers.0", h))
        if resample == "down":
            a, h = F.avg_pool2d(a, 2), F.avg_pool2d(h, 2)
        elif resample == "up":
            a, h = F.interpolate(a, scale_factor=2, mode="nearest"), F.interpolate(h, scale_factor=2, mode="nearest")
        a = conv(f"{p}.in_layers.2", a)
        e = lin(f"{p}.emb_layers.1", F.silu(emb))[..., None, None]
        if scale_shift:
            scale, shift = e.chunk(2, dim=1)
            a = F.silu(gn(f"{p}.out_layers.0", a) * (1 + scale) + shift)
        else:
            a = F.silu(gn(f"{p}.out_layers.0", a + e))
        a = conv(f"{p}.out_layers.3", a)
        skip = conv(f"{p}.skip_connection", h) if f"{p}.skip_connection.weight" in s else h
        return skip + a

    def attn(p, h):
        b, c, hh, ww = h.shape
        heads, ch = c // head_channels, head_channels
        flat = h.reshape(b, c, -1)
        qkv = F.conv1d(gn(f"{p}.norm", flat), s[f"{p}.qkv.weight"], s[f"{p}.qkv.bias"])
        if new_order:
            q, k, v = (z.reshape(b * heads, ch, -1) for z in qkv.chunk(3, dim=1))
        else:  # legacy: per head [q, k, v]
            q, k, v = qkv.reshape(b * heads, 3 * ch, -1).split(ch, dim=1)
        scale = 1 / math.sqrt(math.sqrt(ch))
        w = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
        a = torch.einsum("bts,bcs->bct", w, v).reshape(b, c, -1)
        out = F.conv1d(a, s[f"{p}.proj_out.weight"], s[f"{p}.proj_out.bias"])
        return (flat + out).reshape(b, c, hh, ww)

    h = conv("input_blocks.0.0", x)
    hs, blk = [h], 1
    for level in range(len(mult)):
        for _ in range(n_res):
            h = res(f"input_blocks.{blk}.0", h)
            if attention[level]:
                h = attn(f"input_blocks.{blk}.1", h)
            hs.append(h)
            blk += 1
        if level < len(mult) - 1:
            p = f"input_blocks.{blk}.0"
            h = res(p, h, "down") if updown else F.conv2d(h, s[f"{p}.op.weight"], s[f"{p}.op.bias"],
                                                          stride=2, padding=1)
            hs.append(h)
            blk += 1
    h = res("middle_block.2", attn("middle_block.1", res("middle_block.0", h)))
    blk = 0
    for level in reversed(range(len(mult))):
        for i in range(n_res + 1):
            h = res(f"output_blocks.{blk}.0", torch.cat([h, hs.pop()], dim=1))
            sub = 1
            if attention[level]:
                h = attn(f"output_blocks.{blk}.1", h)
                sub = 2
            if level and i == n_res:
                p = f"output_blocks.{blk}.{sub}"
                h = res(p, h, "up") if updown else conv(f"{p}.conv", F.interpolate(h, scale_factor=2,
                                                                                    mode="nearest"))
            blk += 1
    return conv("out.2", F.silu(gn("out.0", h)))


VARIANTS = {"resblock-updown+scale-shift (the 256 model's layout)": dict(updown=True, scale_shift=True),
            "conv-resample+additive-time": dict(updown=False, scale_shift=False),
            "new attention order": dict(updown=True, scale_shift=True, new_order=True)}


@pytest.mark.parametrize("variant", list(VARIANTS), ids=["256-layout", "conv-resample", "new-order"])
def test_converted_unet_matches_the_guided_forward(tmp_path, variant, one_thread):
    opts = VARIANTS[variant]
    new_order = opts.get("new_order", False)
    layout_opts = {k: v for k, v in opts.items() if k != "new_order"}
    state = guided_state(**TINY, **layout_opts)
    torch.save(state, tmp_path / "16x16_tiny.pt")
    layout = gd.infer_layout(state)
    assert layout == gd.GuidedLayout(3, 32, 6, (1, 2, 2), 2, (False, True, True),
                                     opts["updown"], opts["scale_shift"])
    unet = gd.load_unet(tmp_path / "16x16_tiny.pt", head_channels=16, new_attention_order=new_order)
    assert unet.config.sample_size == 16  # from the file name
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([3, 700])
    with torch.no_grad():
        got = unet(x, t).sample
        want = reference_forward(state, x, t, head_channels=16, new_order=new_order,
                                 **{k: TINY[k] for k in ("mc", "mult", "n_res", "attention")}, **layout_opts)
    assert got.shape == (2, 6, 16, 16)
    assert want.abs().mean() > 0.1  # a non-trivial output to compare
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()
    # every converted tensor is used and every UNet parameter is set
    converted = gd.convert_state(state, layout, 16, new_order)
    assert set(converted) == set(unet.state_dict())
    n_params = sum(v.numel() for v in state.values())
    assert n_params == sum(v.numel() for v in unet.state_dict().values())


def test_load_diffusion_and_the_catalogue_id_load_a_fetched_checkpoint(tmp_path, monkeypatch, one_thread):
    """``models fetch guided-diffusion-256-uncond`` leaves
    $LIVELAYERS_MODELS/diffusion-pixel/guided-diffusion-256-uncond/256x256_diffusion_uncond.pt;
    the catalogue id and LL_LoadDiffusion load it as a pixel model."""
    from livelayers.engine.models.diffusion import load_diffusion
    from livelayers.nodes.diffusion_nodes import NODE_CLASS_MAPPINGS
    monkeypatch.setenv("LIVELAYERS_MODELS", str(tmp_path / "models"))
    folder = tmp_path / "models" / "diffusion-pixel" / "guided-diffusion-256-uncond"
    folder.mkdir(parents=True)
    state = guided_state(**TINY)
    torch.save(state, folder / "256x256_diffusion_uncond.pt")
    h = load_diffusion("guided-diffusion-256-uncond", device="cpu", offline=True)
    assert (h.kind, h.sample_size, h.in_channels, h.out_channels) == ("pixel", 256, 3, 6)
    assert h.prediction_type == "epsilon" and h.scheduler.config.num_train_timesteps == 1000
    assert abs(h.scheduler.betas[0].item() - 1e-4) < 1e-9 and abs(h.scheduler.betas[-1].item() - 0.02) < 1e-7
    assert not any(p.requires_grad for p in h.unet.parameters())
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        want = reference_forward(state, x, torch.tensor([5]), head_channels=64,
                                 **{k: TINY[k] for k in ("mc", "mult", "n_res", "attention")})
    # the 256 model's head width (64) is the default: on this tiny model 64-wide heads
    with torch.no_grad():
        assert torch.allclose(h.unet(x, torch.tensor([5])).sample, want, atol=1e-4)
    node = NODE_CLASS_MAPPINGS["LL_LoadDiffusion"]()
    fn = getattr(node, node.FUNCTION)
    (handle,) = fn("guided-diffusion-256-uncond", "pixel", "cpu", "fp32")
    assert handle.out_channels == 6 and handle.kind == "pixel"


def test_convert_command_writes_a_diffusers_folder(tmp_path, one_thread):
    from livelayers.engine.models.diffusion import load_diffusion
    state = guided_state(**TINY)
    torch.save(state, tmp_path / "32x32_tiny.pt")
    out = tmp_path / "converted"
    assert gd.main([str(tmp_path / "32x32_tiny.pt"), "--out", str(out), "--head-channels", "16"]) == 0
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(tmp_path.glob(".converted*"))  # the staging folder is gone
    h = load_diffusion(str(out), device="cpu", offline=True)
    assert (h.kind, h.sample_size, h.out_channels) == ("pixel", 32, 6)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        want = reference_forward(state, x, torch.tensor([9]), head_channels=16,
                                 **{k: TINY[k] for k in ("mc", "mult", "n_res", "attention")})
        assert torch.allclose(h.unet(x, torch.tensor([9])).sample, want, atol=1e-4)


def test_bad_checkpoints_are_clear_errors(tmp_path):
    (tmp_path / "256x256_junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptFileError, match="not a readable guided-diffusion checkpoint"):
        gd.load_unet(tmp_path / "256x256_junk.pt")
    state = guided_state(**TINY)
    torch.save(state, tmp_path / "no_size.pt")
    with pytest.raises(CorruptFileError, match="image size is not in the file name"):
        gd.load_unet(tmp_path / "no_size.pt")
    state["label_emb.weight"] = torch.zeros(10, 128)
    with pytest.raises(CorruptFileError, match="class-conditional"):
        gd.infer_layout(state)
    with pytest.raises(CorruptFileError, match="not a guided-diffusion UNet"):
        gd.infer_layout({"conv.weight": torch.zeros(1)})


def test_blended_diffusion_runs_on_a_converted_guided_model(tmp_path, one_thread):
    """The pixel edit drives the 6-channel guided UNet (ε = its first 3 channels)
    and keeps every pixel outside the mask."""
    from livelayers.engine.diffusion.pixel import blended_diffusion_pixel
    from livelayers.engine.models.diffusion import load_diffusion
    torch.save(guided_state(**TINY), tmp_path / "32x32_tiny.pt")
    gd.convert_checkpoint(tmp_path / "32x32_tiny.pt", tmp_path / "m", head_channels=16)
    h = load_diffusion(str(tmp_path / "m"), device="cpu", offline=True)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    r = blended_diffusion_pixel(h, None, image, mask, "anything", steps=8, samples=2, guidance=0.0)
    assert r.images.shape == (2, 3, 32, 32) and torch.isfinite(r.images).all()
    outside = (mask == 0).expand_as(r.images)
    assert torch.equal(r.images[outside], image.expand_as(r.images)[outside])
    assert (r.images - image).abs()[..., 8:24, 8:24].mean() > 0.01  # the region was generated
