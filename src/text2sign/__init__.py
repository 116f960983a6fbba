"""text2sign: text-to-sign-language video with diffusion models."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Text2SignPipeline", "__version__"]


def __getattr__(name: str):
    # Lazy (the pipeline imports torch) so that `import text2sign` and the CLI's --help stay fast.
    if name == "Text2SignPipeline":
        from text2sign.model_folder.pipeline import Text2SignPipeline

        return Text2SignPipeline
    raise AttributeError(name)
