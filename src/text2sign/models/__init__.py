"""Denoisers (registered by name with presets) and text encoders.

Models take plain arguments: they import models/, core.files and core.hub only, never config (one
function, model_folder.build, turns a config into models).
"""
