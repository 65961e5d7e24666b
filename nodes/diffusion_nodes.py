"""Blended diffusion nodes: load a diffusion model, edit a masked region.

Outputs follow the LiveLayers edit-layer convention: ``layer`` IMAGE (straight
colour) + ``layer_mask`` MASK (alpha, 1 = edit present), ready for
LL_SaveEXR; ``composite`` is what the layer over the input gives.
"""
from __future__ import annotations

from ..engine.device import DEVICES, PRECISIONS
from ..engine.diffusion import blended_diffusion_pixel, blended_latent_diffusion
from ..engine.diffusion.latent import BACKGROUND_FIXES
from ..engine.errors import InputError
from ..engine.models.diffusion import KINDS, load_diffusion
from ._convert import image_to_nchw, mask_to_n1hw, n1hw_to_mask, nchw_to_image
from ._runtime import comfy_models_dir, node_function, progress_for

CATEGORY = "LiveLayers/diffusion"
MAX_SEED = 2**31 - 1


def _single(node: str, image, mask):
    """IMAGE + MASK → (1,3,H,W), (1,1,H,W); one image only, mask of the same size."""
    x = image_to_nchw(image, node)
    if x.shape[0] != 1:
        raise InputError(node, "image", f"is a batch of {x.shape[0]} images",
                         "a single image (split the batch, e.g. with a frame loop)")
    m = mask_to_n1hw(mask, node, size=tuple(x.shape[-2:]))
    if m.shape[0] != 1:
        raise InputError(node, "mask", f"is a batch of {m.shape[0]} masks", "a single mask")
    return x, m


def _outputs(result, image):
    """EditResult → (samples IMAGE, layer IMAGE, layer MASK, composite IMAGE, scores STRING)."""
    alpha = result.layer_alpha
    composite = result.layer_rgb * alpha + image.cpu() * (1 - alpha)
    lines = []
    for i, (seed, score) in enumerate(zip(result.seeds, result.scores.tolist())):
        s = "unranked (no CLIP)" if score != score else f"CLIP similarity {score:.4f}"
        lines.append(f"{i + 1}: seed {seed}, {s}")
    return (nchw_to_image(result.images), nchw_to_image(result.layer_rgb), n1hw_to_mask(alpha),
            nchw_to_image(composite), "\n".join(lines))


class LL_LoadDiffusion:
    DESCRIPTION = ("Load a diffusion model for blended diffusion: a pixel DDPM (UNet2DModel + "
                   "scheduler, e.g. toy-ddpm or guided-diffusion converted to diffusers) or a "
                   "Stable Diffusion / SD-inpainting pipeline (toy-sd, a folder or a repo id). "
                   "Safetensors only; offline it never downloads.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("LL_DIFFUSION",)
    RETURN_NAMES = ("diffusion",)
    OUTPUT_TOOLTIPS = ("The loaded diffusion model",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "spec": ("STRING", {"default": "toy-ddpm", "tooltip":
                     "Catalogue id (toy-ddpm, toy-sd), diffusers folder path or hub repo id"}),
            "kind": (list(KINDS), {"default": "auto", "tooltip":
                     "pixel = DDPM UNet2DModel; latent = Stable Diffusion; latent-inpaint = "
                     "SD inpainting (9-channel UNet); auto = read the folder's configs"}),
            "device": (list(DEVICES), {"default": "auto", "tooltip": "auto = CUDA, else MPS, else CPU"}),
            "precision": (list(PRECISIONS), {"default": "auto", "tooltip":
                          "fp16/bf16 weights on a GPU; the CPU always uses fp32"}),
        }}

    @node_function
    def load(self, spec, kind, device, precision):
        return (load_diffusion(spec, kind, device, precision,
                               search_dirs=comfy_models_dir("diffusers")),)


def _common_inputs(steps: int, guidance_name: str, guidance: float, guidance_tip: str) -> dict:
    return {
        "image": ("IMAGE", {"tooltip": "The image to edit (one image, sRGB)"}),
        "mask": ("MASK", {"tooltip": "Region to edit, 1 = edit (same size as the image)"}),
        "prompt": ("STRING", {"default": "a red circle", "multiline": True,
                              "tooltip": "What the masked region should show"}),
        "steps": ("INT", {"default": steps, "min": 1, "max": 1000,
                          "tooltip": "Length of the (respaced) diffusion schedule"}),
        "start": ("FLOAT", {"default": 0.25, "min": 0.0, "max": 0.99, "step": 0.01, "tooltip":
                            "Fraction of the schedule skipped: the image is noised to this point "
                            "(0.25 = run the last 75 %)"}),
        "samples": ("INT", {"default": 4, "min": 1, "max": 64,
                            "tooltip": "Samples made (seed, seed+1, ...) and ranked"}),
        guidance_name: ("FLOAT", {"default": guidance, "min": 0.0, "max": 100000.0, "step": 0.5,
                                  "tooltip": guidance_tip}),
        "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED,
                         "tooltip": "Seed of the first sample; sample i uses seed + i"}),
        "feather": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 64.0, "step": 0.5, "tooltip":
                              "Feather radius (px) of the layer alpha, inside the mask only: "
                              "pixels outside the mask stay exactly the input"}),
    }


class _BlendedEdit:
    """What the two blended-diffusion edit nodes declare alike (their outputs);
    each subclass adds its DESCRIPTION, INPUT_TYPES and ``edit``."""
    CATEGORY = CATEGORY
    FUNCTION = "edit"
    RETURN_TYPES = ("IMAGE", "IMAGE", "MASK", "IMAGE", "STRING")
    RETURN_NAMES = ("samples", "layer", "layer_mask", "composite", "scores")
    OUTPUT_TOOLTIPS = ("All samples, best first", "Edit layer colour (straight) of the best sample",
                       "Edit layer alpha: 1 = edit present (the feathered mask)",
                       "Best sample: layer over the input", "Rank, seed and CLIP score of each sample")


class LL_BlendedDiffusion(_BlendedEdit):
    DESCRIPTION = ("Blended Diffusion (Avrahami et al. 2022): CLIP-guided pixel DDPM edit of the "
                   "masked region; the background stays exactly the input. Makes several seeded "
                   "samples in one batch and ranks them by masked CLIP similarity.")

    @classmethod
    def INPUT_TYPES(cls):
        req = {"diffusion": ("LL_DIFFUSION", {"tooltip": "A pixel diffusion model (LL_LoadDiffusion, kind pixel)"}),
               "clip": ("LL_CLIP", {"tooltip": "CLIP model that guides and ranks"})}
        req.update(_common_inputs(100, "guidance", 1000.0,
                                  "Weight of the CLIP loss (the reference's 1000); 0 = unguided"))
        req["views"] = ("INT", {"default": 8, "min": 1, "max": 64, "tooltip":
                                "CLIP views per step: 1 clean + augmented (affine, perspective)"})
        return {"required": req}

    @node_function
    def edit(self, diffusion, clip, image, mask, prompt, steps, start, samples, guidance, seed,
             feather, views):
        node = type(self).__name__
        if getattr(diffusion, "kind", None) != "pixel":
            raise InputError(node, "diffusion", f"is a {getattr(diffusion, 'kind', '?')} model",
                             "a pixel model (use LL_BlendedLatentDiffusion for Stable Diffusion)")
        x, m = _single(node, image, mask)
        result = blended_diffusion_pixel(diffusion, clip, x, m, prompt, steps=steps, start=start,
                                         samples=samples, views=views, seed=seed,
                                         guidance=guidance, feather=feather,
                                         progress=progress_for(node))
        return _outputs(result, x)


class LL_BlendedLatentDiffusion(_BlendedEdit):
    DESCRIPTION = ("Blended Latent Diffusion: Stable Diffusion (or SD inpainting) edit of the "
                   "masked region, blended with the noised source latent at every step; the "
                   "background is fixed by pixel paste (exact) or a per-image decoder fine-tune. "
                   "Ranked by masked CLIP similarity when a CLIP model is given.")

    @classmethod
    def INPUT_TYPES(cls):
        req = {"diffusion": ("LL_DIFFUSION", {"tooltip": "A latent model (LL_LoadDiffusion, kind latent or latent-inpaint)"})}
        req.update(_common_inputs(50, "cfg", 7.5, "Classifier-free guidance scale (1 = off)"))
        req["negative_prompt"] = ("STRING", {"default": "", "multiline": True,
                                             "tooltip": "Text to steer away from (CFG's unconditional text)"})
        req["background_fix"] = (list(BACKGROUND_FIXES), {"default": "paste", "tooltip":
                                 "paste = original pixels outside the mask (exact); decoder = "
                                 "per-image decoder fine-tune (close, not exact); none = raw decode"})
        req["decoder_steps"] = ("INT", {"default": 75, "min": 1, "max": 1000,
                                        "tooltip": "Adam steps of the decoder fine-tune"})
        return {"required": req,
                "optional": {"clip": ("LL_CLIP", {"tooltip": "CLIP model to rank the samples (optional)"})}}

    @node_function
    def edit(self, diffusion, image, mask, prompt, steps, start, samples, cfg, seed, feather,
             negative_prompt, background_fix, decoder_steps, clip=None):
        node = type(self).__name__
        if getattr(diffusion, "kind", None) not in ("latent", "latent-inpaint"):
            raise InputError(node, "diffusion", f"is a {getattr(diffusion, 'kind', '?')} model",
                             "a latent model (use LL_BlendedDiffusion for pixel DDPMs)")
        x, m = _single(node, image, mask)
        result = blended_latent_diffusion(diffusion, clip, x, m, prompt, steps=steps, start=start,
                                          samples=samples, seed=seed, cfg=cfg,
                                          negative_prompt=negative_prompt,
                                          background_fix=background_fix, feather=feather,
                                          decoder_steps=decoder_steps, progress=progress_for(node))
        return _outputs(result, x)


NODE_CLASS_MAPPINGS = {
    "LL_LoadDiffusion": LL_LoadDiffusion,
    "LL_BlendedDiffusion": LL_BlendedDiffusion,
    "LL_BlendedLatentDiffusion": LL_BlendedLatentDiffusion,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "LL_LoadDiffusion": "Load Diffusion Model (LiveLayers)",
    "LL_BlendedDiffusion": "Blended Diffusion (LiveLayers)",
    "LL_BlendedLatentDiffusion": "Blended Latent Diffusion (LiveLayers)",
}
