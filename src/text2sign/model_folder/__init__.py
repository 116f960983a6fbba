"""The model folder: what `text2sign train` writes and every other command reads; the shipped
models, config -> objects (build) and the pipeline that samples from a folder.

May import models/, diffusion/, data/ and core/; never training/, evaluation/ or above.
"""
