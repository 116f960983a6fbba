"""Denoisers (registered by name with presets) and text encoders."""
