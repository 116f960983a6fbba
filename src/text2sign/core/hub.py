"""The Hugging Face Hub, as every layer asks it: what a Hub id is, and whether to go online.

One rule each, so a model folder, a text encoder and a diffusers folder agree on both.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

OFFLINE_VALUES = ("1", "true", "yes", "on")  # huggingface_hub's own reading of HF_HUB_OFFLINE


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids the network: only local folders and the cache."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in OFFLINE_VALUES


def is_hub_id(name: str | Path) -> bool:
    """'owner/name' with no path syntax, and no folder ``owner`` here: what the Hub calls a
    repository id. ("runs/mnie" is a typo of a local path when runs/ exists here, not a Hub id.)"""
    text = str(name)
    return (re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text) is not None and ".." not in text
            and not Path(text.split("/")[0]).exists())
