"""Denoisers (registered by name with presets) and text encoders.

Models take plain arguments: they import models/ and core.files only, never config (one
function, model_folder.build, turns a config into models).
"""
