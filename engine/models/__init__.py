"""Models: the CLIP handle (clip.py), weight resolution (resolve.py) and the
plugin.json model catalogue (catalogue.py). See docs/models.md."""
