"""The diffusion process over diffusers schedulers: noise, training losses and the sampling loop.

Stands beside models/ and data/, on core/; takes a denoiser as a plain callable, so it imports
no model of models/ (only the text embedding it passes through) and nothing above.
"""
