"""Text2SignPipeline: load a model folder, generate uint8 videos from texts."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from text2sign.core import units
from text2sign.core.config import Config, check_clip, validate_sample, validate_student
from text2sign.core.device import pick_device
from text2sign.data.dataset import to_uint8
from text2sign.diffusion.process import sample
from text2sign.model_folder.autoencoder_io import load_autoencoder
from text2sign.model_folder.build import build_conditioner, build_denoiser, diffusion_space
from text2sign.model_folder.card import SAMPLE_FILE
from text2sign.model_folder.folder_io import check_fit, save_model_folder
from text2sign.model_folder.model_info import ModelInfo
from text2sign.model_folder.resolve import ModelFolder, resolve_model
from text2sign.models.duration import DurationModel
from text2sign.models.pretrained import check_reference, restore_denoiser


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters that training changes (a frozen pretrained text encoder is referenced by name)."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def videos_to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, C, T, H, W) in [-1, 1] -> uint8 (B, T, H, W, C)."""
    return to_uint8(x).permute(0, 2, 3, 4, 1).cpu().numpy()  # (B, T, H, W, C)


OUTPUT_TYPES = ("np", "pt", "pil")


class Text2SignPipeline:
    """Generate sign-language clips from text with a trained text2sign model."""

    def __init__(self, denoiser: nn.Module, conditioner: nn.Module, config: Config,
                 device: torch.device | str | None = None, info: ModelInfo | None = None,
                 autoencoder: nn.Module | None = None):
        self.device = pick_device(device)
        self.denoiser = denoiser.to(self.device).eval()
        self.conditioner = conditioner.to(self.device).eval()
        if config.latent.enabled and autoencoder is None:
            raise ValueError("this model diffuses in latent space (latent.enabled) but no "
                             "autoencoder was given; load the model folder with "
                             "Text2SignPipeline.from_pretrained")
        self.autoencoder = autoencoder.to(self.device).eval() if autoencoder is not None else None
        self.config = config
        self.info = info if info is not None else ModelInfo(config)  # facts of its folder
        self.training_texts: list[str] | None = None  # the model folder's texts.txt
        # how many frames a text lasts (duration.json of a model trained at a frame rate)
        self.duration: DurationModel | None = None
        self.folder: Path | None = None  # the model folder it was loaded from, if any
        self.name: str | None = None  # what names that folder: shipped:NAME, a Hub id, its name
        self._saved_keys: set[str] | None = None  # denoiser weights that folder holds

    def to(self, device: str | torch.device) -> Text2SignPipeline:
        """Move every part to ``device`` (as diffusers pipelines do); returns the pipeline."""
        self.device = pick_device(device) if not isinstance(device, torch.device) else device
        for part in (self.denoiser, self.conditioner, self.autoencoder):
            if part is not None:
                part.to(self.device)
        return self

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write a model folder `from_pretrained` loads back: config.json, safetensors, the
        autoencoder, texts.txt, the model card and the sample GIF of the folder it came from.
        Frozen pretrained weights stay referenced, as training left them."""
        state = self.denoiser.state_dict()
        if self._saved_keys is not None:
            state = {k: v for k, v in state.items() if k in self._saved_keys}
        sample = self.folder / SAMPLE_FILE if self.folder is not None else None
        info = replace(self.info, config=self.config)  # its checksums are written anew
        return save_model_folder(folder, info, state, trainable_state(self.conditioner),
                                 autoencoder=self.autoencoder, texts=self.training_texts,
                                 sample=sample if sample is not None and sample.is_file()
                                 else None, duration=self.duration)

    def _letters(self, text: str) -> list[str]:
        """What a text is checked by: its text units when the model folds case (fingerspelling
        has none), else its characters as typed."""
        return units.split(text, "chars") if self.config.text.lowercase else list(text)

    @property
    def languages(self) -> list[str]:
        """The sign languages the model signs (codes); a model of one language: ASL or its own."""
        return self.conditioner.languages or [self.default_language]

    @property
    def default_language(self) -> str:
        return getattr(self.conditioner, "default_language", units.DEFAULT_LANGUAGE)

    def check_languages(self, texts: list[str], language: str | list[str] | None
                        ) -> list[str]:
        """One language per text (None: the model's default, ASL), each one the model signs;
        with several languages, each text spelled by its language's alphabet. Refusals name
        what is allowed."""
        if isinstance(language, str) or language is None:
            language = [language or self.default_language] * len(texts)
        if len(language) != len(texts):
            raise ValueError(f"{len(language)} languages for {len(texts)} texts; give one "
                             "language, or one per text")
        unknown = sorted(set(language) - set(units.SIGN_LANGUAGES))
        if "fsl" in unknown:
            raise ValueError("fsl: the recordings text2sign has for it are the ASL ones "
                             "relabelled, not French Sign Language; use ase")
        if unknown:
            raise ValueError(f"unknown sign language {', '.join(map(repr, unknown))}; codes are "
                             f"{', '.join(units.SIGN_LANGUAGES)} (`text2sign data fingerspelling "
                             "--list-languages`)")
        untrained = sorted(set(language) - set(self.languages))
        if untrained:
            raise ValueError(f"this model was not trained on {', '.join(untrained)}; it signs "
                             f"{', '.join(self.languages)}")
        if self.conditioner.languages:  # a model of the fingerspelled alphabets
            from text2sign.data.fingerspelling import alphabet  # reads the recordings' index

            for text, code in zip(texts, language, strict=True):
                letters = alphabet(code)
                lacking = units.missing(text, set(letters), code)
                if lacking:
                    raise ValueError(
                        f"text {text!r} has letters the {code} alphabet lacks: "
                        f"{' '.join(lacking)}; {code} spells {' '.join(letters.values())}")
        return list(language)

    def check_texts(self, texts: list[str], unseen: bool = True) -> None:
        """Refuse, in one line, a text the model cannot sign: empty, with control characters,
        or (``unseen``) with characters it never saw in training. A library caller (evaluation
        of any corpus) may pass ``unseen=False`` and get a clip anyway."""
        known = ({c for t in self.training_texts for c in self._letters(t)}
                 if unseen and self.training_texts else None)
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"text {text!r} is empty; give at least one character to sign")
            control = sorted({c for c in text if not c.isprintable()})
            if control:
                raise ValueError(f"text {text!r} has control characters "
                                 f"{' '.join(map(repr, control))}; remove them")
            if known is not None:
                new = sorted({c for c in self._letters(text) if c not in known})
                if new:
                    allowed = "".join(sorted(known))
                    raise ValueError(
                        f"text {text!r} has characters the model never saw in training: "
                        f"{' '.join(map(repr, new))}; use only {allowed!r}")

    def text_warnings(self, texts: list[str]) -> list[str]:
        """One line per text the model is unlikely to sign well: longer than any training
        text."""
        if not self.training_texts:
            return []
        longest = max(len(t) for t in self.training_texts)
        out = []
        for text in dict.fromkeys(texts):
            if len(text) > longest:
                out.append(f"{text!r} has {len(text)} characters, more than any training text "
                           f"({longest}); expect it to be signed less well")
        return out

    @property
    def fps(self) -> float | None:
        """The frame rate of a model trained on clips of their own lengths, else None."""
        dc = self.config.data
        return dc.fps if dc.time_mode == "fps" else None

    @property
    def gif_fps(self) -> float:
        """The rate its clips play at: the data rate, or 8 fps for a fixed frame count."""
        return self.fps or 8.0

    def lengths(self, texts: list[str], num_frames: int | None = None,
                seconds: float | None = None, languages: list[str] | None = None) -> list[int]:
        """Each text's frame count: ``num_frames``, else ``seconds`` at the data rate, else the
        duration model's, else the trained frame count. A count over the model's limit
        (``data.max_frames``) is refused naming the text and what to do."""
        if num_frames is not None and seconds is not None:
            raise ValueError("give num_frames or seconds, not both")
        if num_frames is not None:
            return [int(num_frames)] * len(texts)
        if seconds is not None:
            if not seconds > 0:
                raise ValueError(f"seconds={seconds!r}: must be positive")
            return [max(1, round(seconds * (self.fps or self.gif_fps)))] * len(texts)
        if self.duration is None:
            return [self.frames] * len(texts)
        limit = self.config.data.max_frames
        out = []
        languages = languages or [self.default_language] * len(texts)
        for text, code in zip(texts, languages, strict=True):
            # it folds the text as it was fitted; a model of one language times it as its own
            frames = self.duration.frames(text, code if self.duration.languages else
                                          units.DEFAULT_LANGUAGE)
            if frames > limit:
                raise ValueError(
                    f"text {text!r} would last {frames} frames ({frames / self.duration.fps:.1f}"
                    f" s), over this model's limit of {limit} (data.max_frames); split it into "
                    "shorter texts, or pass num_frames / --frames to choose its length")
            out.append(frames)
        return out

    @property
    def frames(self) -> int:
        """The trained frame count (of a fixed-count model; a rate model's ``lengths``)."""
        return self.config.data.frames

    @property
    def size(self) -> int:
        return self.config.data.size

    @classmethod
    def from_pretrained(cls, model: str | Path | ModelFolder | None,
                        device: str | torch.device | None = None) -> Text2SignPipeline:
        """Load a model folder, a run folder holding ``model/``, a Hugging Face Hub id
        ('owner/name': downloaded unless ``HF_HUB_OFFLINE`` is set), a shipped model
        (``shipped:NAME``; None: the default one) or a `ModelFolder` already resolved (see
        `resolve_model`); reads no pickle."""
        model = model if isinstance(model, ModelFolder) else resolve_model(model)
        folder, cfg, info = model.path, model.config, model.info
        denoiser_state, text_state = model.weights()
        where = str(folder)
        text_ref = info.pretrained.get("text_encoder")
        if text_ref is not None:  # checked where the config says the encoder is
            text_path = str(Path(cfg.text.encoder).expanduser().resolve())
            check_reference({**text_ref, "path": text_path}, "the model's text encoder",
                            f"{where}/config.json")
        autoencoder = None
        if cfg.latent.enabled:
            autoencoder = load_autoencoder(folder, cfg.latent)
        fix = "the folder is damaged or was edited: copy it again or retrain it"

        def what(file: str) -> str:
            return f"weights in {str(Path(where) / file)!r} do not fit the model its config.json " \
                   "describes"

        # Checked against models on the meta device first: an absurd config allocates nothing.
        # (A pretrained text encoder is built for real: its frozen weights are its own.)
        with torch.device("meta") if cfg.text.encoder == "bytes" else contextlib.nullcontext():
            probe = build_conditioner(cfg)
        check_fit(trainable_state(probe), text_state, what("text.safetensors"), fix)
        conditioner = probe if cfg.text.encoder != "bytes" else build_conditioner(cfg)
        with torch.device("meta"):
            probe = build_denoiser(cfg, conditioner.dim)
        referenced = "denoiser" in info.pretrained  # frozen weights come from there
        check_fit(probe.state_dict(), denoiser_state, what("denoiser.safetensors"), fix,
                  may_lack=set(probe.state_dict()) if referenced else set())
        denoiser = build_denoiser(cfg, conditioner.dim)
        if referenced:
            restore_denoiser(denoiser, denoiser_state, cfg.model.arch,
                             info.pretrained.get("denoiser"), where)
        else:
            denoiser.load_state_dict(denoiser_state)
        conditioner.load_state_dict(text_state, strict=False)
        pipe = cls(denoiser, conditioner, cfg, device, info, autoencoder)
        pipe.training_texts, pipe.duration = model.training_texts, model.duration
        pipe.folder, pipe.name, pipe._saved_keys = folder, model.name, set(denoiser_state)
        return pipe

    @torch.no_grad()
    def __call__(self, texts: list[str] | str, *, num_frames: int | None = None,
                 steps: int | None = None, sampler: str | None = None,
                 guidance: float | None = None, seed: int = 0, eta: float | None = None,
                 batch_size: int = 16, progress: bool = False,
                 generator: torch.Generator | None = None, output_type: str = "np",
                 seconds: float | None = None, language: str | list[str] | None = None):
        """One video per text; deterministic for (seed, batch_size), or drawn from
        ``generator`` (a CPU ``torch.Generator``, used across batches) when one is given.

        A model trained at a frame rate gives each text the length its duration model
        predicts (`lengths`); ``num_frames`` or ``seconds`` set one length for all. Texts of
        one length are generated together, in batches of up to ``batch_size`` in the order
        given (a batch's seed is ``seed`` + the index of its first text); when the lengths
        differ, the result is a list with one entry per text instead of one array.

        ``output_type``: "np" uint8 array (N, T, H, W, 3), "pt" float tensor (N, T, 3, H, W)
        in [0, 1] (diffusers' video layout), or "pil" a list of lists of PIL images.

        ``language``: the sign language (a code the model signs, `languages`; one for all texts
        or one per text); None signs the model's default, ASL.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise ValueError("no texts given; pass at least one, e.g. pipe(['hello'])")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type={output_type!r}; use one of {', '.join(OUTPUT_TYPES)}")
        self.check_texts(texts, unseen=False)
        languages = self.check_languages(texts, language)
        chosen = {"sampler": sampler, "steps": steps, "guidance": guidance, "eta": eta}
        sc = replace(self.config.sample, **{k: v for k, v in chosen.items() if v is not None})
        if sampler is not None and sampler != "ddim" and eta is None:
            sc = replace(sc, eta=0.0)  # the model's DDIM eta does not carry over to another sampler
        validate_sample(sc)
        validate_student(sc, self.config.distill)
        sampler, steps, guidance, eta = sc.sampler, sc.steps, sc.guidance, sc.eta
        lengths = self.lengths(texts, num_frames, seconds, languages)
        channels, side = diffusion_space(self.config)
        for frames in sorted(set(lengths)):
            check_clip(frames, self.size, "frames")
            self.denoiser.check_input_size(frames, side, side)
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be at least 1")
        videos: list[np.ndarray | None] = [None] * len(texts)
        for frames in dict.fromkeys(lengths):  # lengths in order of first appearance
            where = [i for i, n in enumerate(lengths) if n == frames]
            for start in range(0, len(where), batch_size):
                chunk_at = where[start:start + batch_size]
                chunk = [texts[i] for i in chunk_at]
                chunk_languages = [languages[i] for i in chunk_at]
                chunk_generator = generator or torch.Generator().manual_seed(seed + chunk_at[0])
                cond = self.conditioner(chunk, languages=chunk_languages)
                unguided = guidance == 1.0 or sampler == "lcm"  # lcm: guidance is an input
                uncond = None if unguided else self.conditioner.null(len(chunk), chunk_languages)
                shape = (len(chunk), channels, frames, side, side)
                x = sample(self.denoiser, cond, shape, self.config.diffusion, uncond=uncond,
                           sampler=sampler, steps=steps, guidance=guidance, eta=eta,
                           generator=chunk_generator, device=self.device, progress=progress,
                           grid=self.config.distill.grid)
                if self.autoencoder is not None:
                    x = self.autoencoder.decode(x)  # (B, 3, T, H, W)
                for i, video in zip(chunk_at, videos_to_uint8(x), strict=True):
                    videos[i] = video  # (T, H, W, 3) uint8
        if len(set(lengths)) == 1:
            out = np.stack(videos)  # (N, T, H, W, 3) uint8
            if output_type == "pt":
                return torch.from_numpy(out).permute(0, 1, 4, 2, 3).float() / 255  # (N,T,3,H,W)
            if output_type == "pil":
                return [[Image.fromarray(frame) for frame in video] for video in out]
            return out
        if output_type == "pt":
            return [torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255 for v in videos]
        if output_type == "pil":
            return [[Image.fromarray(frame) for frame in video] for video in videos]
        return videos
