"""Reading, validating, shaping, caching and writing sign-language clips.

Stands beside models/ and diffusion/, on core/; may import models/ (a latent cache encodes with
the frame autoencoder), never model_folder/ or above.
"""
