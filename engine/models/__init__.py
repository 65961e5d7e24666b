"""Models: the CLIP handle (clip.py), DINO (dino.py), diffusion loading
(diffusion.py, guided_diffusion.py), the one weight resolver (resolve.py),
plugin.json's catalogue read and checked in one place (manifest.py) and the
``models`` CLI (catalogue.py). See docs/models.md."""
