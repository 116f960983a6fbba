"""Pretrained parts from local files: a diffusers AutoencoderKL, an SD-style UNet2DConditionModel
inflated to video (``unet-motion``), a facebookresearch DiT checkpoint into ``dit3d``.

What a run does not train, its model folder references by path plus sha256 instead of copying:
an SD UNet is 3.4 GB and a run saves its model folder at every checkpoint, so copies would cost
minutes and gigabytes per save, while the user keeps the original anyway. What a run trains is
saved in the folder. Loading checks the hashes first, so a moved or changed file is named, never
silently used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from text2sign.core.files import sha256, verify_digests
from text2sign.core.hub import is_hub_id

UNET_ARCH = "unet-motion"
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
# Files a folder may carry that text2sign never reads (other frameworks' or pickled weights).
UNREAD_SUFFIXES = (".bin", ".msgpack", ".h5", ".ckpt", ".onnx", ".pb", ".ot", ".md")
# DiT's head counts by width (Peebles & Xie 2023, table 1); a state dict does not record them.
DIT_HEADS = {384: 6, 768: 12, 1024: 16, 1152: 16}


# ----------------------------------------------------------------------------- references


def _reference_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                  and not p.name.endswith(UNREAD_SUFFIXES))


def reference(path: str | Path) -> dict[str, Any]:
    """{"path": absolute path, "sha256": {file name: digest}} of a weights file or a folder's
    top-level files that text2sign reads (config, tokenizer, safetensors)."""
    path = Path(path).expanduser().resolve()
    return {"path": str(path), "sha256": {p.name: sha256(p) for p in _reference_files(path)}}


def check_reference(ref: dict[str, Any], what: str, where: str) -> Path:
    """The referenced path, after checking that every file is there with its recorded hash."""
    path = Path(ref["path"])
    fix = (f"{what}: restore it, or put a copy elsewhere and edit the path {str(path)!r} in "
           f"{where} (the hash is checked, so only the same file loads)")
    single = path.is_file() or path.suffix in WEIGHT_SUFFIXES
    verify_digests(path.parent if single else path, ref["sha256"], fix,
                   changed="has changed since training (its sha256 is not the recorded one)")
    return path


def fingerprint(ref: dict[str, Any]) -> str:
    """One digest for a reference (a cache key for what the referenced weights compute)."""
    joined = "".join(f"{k}:{v};" for k, v in sorted(ref["sha256"].items()))
    return hashlib.sha256(joined.encode()).hexdigest()


# ----------------------------------------------------------------------------- diffusers folders


def _diffusers_config(path: Path) -> dict[str, Any] | None:
    file = path / "config.json"
    if not file.is_file():
        return None
    data = json.loads(file.read_text())
    return data if "_class_name" in data else None


def diffusers_folder(path: str | Path, class_name: str, subfolder: str) -> Path | None:
    """``path`` itself, or ``path/subfolder`` of a pipeline folder, if it holds ``class_name``;
    a Hugging Face name ("org/model") resolves to its copy in the local cache, if there is one."""
    if is_hub_id(path):
        path = _hub_cache(str(path)) or Path(path)
    path = Path(path).expanduser()
    for candidate in (path, path / subfolder):
        config = _diffusers_config(candidate) if candidate.is_dir() else None
        if config is not None and config["_class_name"] == class_name:
            return candidate
    return None


def _hub_cache(name: str) -> Path | None:
    """The local snapshot of a hub repository, never downloading."""
    # huggingface_hub's download stack imports about as slowly as torch: only hub ids need it
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not cached (or not a valid name): the caller names the path it tried
        return None


def _from_pretrained(cls: type, folder: Path) -> nn.Module:
    """diffusers ``from_pretrained`` that reads safetensors only and never goes online."""
    try:
        return cls.from_pretrained(str(folder), use_safetensors=True, local_files_only=True)
    except OSError as err:
        raise FileNotFoundError(
            f"cannot load {cls.__name__} weights from {str(folder)!r} ({err}); text2sign reads "
            "safetensors only: convert the .bin with diffusers (from_pretrained then "
            "save_pretrained(safe_serialization=True)) or download the .safetensors files"
        ) from err


def vae_latent_shape(path: str | Path) -> tuple[int, int] | None:
    """(latent channels, spatial factor) of a diffusers AutoencoderKL folder, else None."""
    folder = diffusers_folder(path, "AutoencoderKL", "vae")
    if folder is None:
        return None
    config = _diffusers_config(folder)
    return int(config.get("latent_channels", 4)), 2 ** (len(config["block_out_channels"]) - 1)


class DiffusersAutoencoder(nn.Module):
    """A frozen diffusers ``AutoencoderKL`` behind FrameAutoencoder's interface: clips
    (B, 3, T, H, W) <-> latents (B, C, T, H/f, W/f), each frame alone, ``frames_per_batch`` frames
    per call (memory), scaled by the VAE's own ``scaling_factor`` (and ``shift_factor``) as its
    pipelines do (Rombach et al. 2022, sec. 4.3.2). Encoding takes the posterior mean.
    """

    frames_per_batch = 16

    def __init__(self, vae: nn.Module, ref: dict[str, Any]) -> None:
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        self.reference = ref
        self.fingerprint = fingerprint(ref)
        config = vae.config
        self.latent_channels = int(config.latent_channels)
        self.factor = 2 ** (len(config.block_out_channels) - 1)
        self.scale = float(config.scaling_factor)
        self.shift = float(getattr(config, "shift_factor", None) or 0.0)

    def check_input_size(self, height: int, width: int) -> None:
        if height % self.factor or width % self.factor:
            raise ValueError(
                f"frame size {height}x{width} is not divisible by {self.factor}, the spatial "
                f"factor of the autoencoder at {self.reference['path']!r}; use a data.size "
                f"that is a multiple of {self.factor}")

    def latent_size(self, size: int) -> int:
        self.check_input_size(size, size)
        return size // self.factor

    def _per_frame(self, fn, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        frames = rearrange(x, "b c t h w -> (b t) c h w")  # (B*T, C, H, W)
        out = torch.cat([fn(chunk) for chunk in frames.split(self.frames_per_batch)])
        return rearrange(out, "(b t) c h w -> b c t h w", b=b)  # (B, C', T, H', W')

    @torch.no_grad()
    def encode(self, videos: torch.Tensor) -> torch.Tensor:
        """Clips (B, 3, T, H, W) in [-1, 1] -> scaled latents (B, C, T, H/f, W/f)."""
        self.check_input_size(*videos.shape[-2:])
        dtype = next(self.vae.parameters()).dtype

        def enc(frames: torch.Tensor) -> torch.Tensor:
            mean = self.vae.encode(frames.to(dtype)).latent_dist.mean  # (n, C, h, w)
            return (mean.float() - self.shift) * self.scale

        return self._per_frame(enc, videos)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, C, T, h, w) -> clips (B, 3, T, h*f, w*f), roughly in [-1, 1]."""
        dtype = next(self.vae.parameters()).dtype

        def dec(z: torch.Tensor) -> torch.Tensor:
            return self.vae.decode((z / self.scale + self.shift).to(dtype)).sample.float()

        return self._per_frame(dec, latents)

    def write_reference(self, file: Path, meta: dict[str, Any] | None = None) -> None:
        """The model folder's autoencoder.json: where the VAE is and its hashes, no weights."""
        file.write_text(json.dumps({"diffusers": "AutoencoderKL", "reference": self.reference,
                                    **(meta or {})}, indent=2))


def load_diffusers_autoencoder(path: str | Path) -> DiffusersAutoencoder | None:
    """A DiffusersAutoencoder from a VAE folder, a pipeline folder holding ``vae/``, or a model
    folder whose autoencoder.json references one (hash-checked); None for anything else."""
    path = Path(path).expanduser()
    folder = diffusers_folder(path, "AutoencoderKL", "vae")
    if folder is None:
        for candidate in (path, path / "model"):
            info = candidate / "autoencoder.json"
            if info.is_file() and "reference" in (data := json.loads(info.read_text())):
                folder = check_reference(data["reference"], "the model's autoencoder", str(info))
                break
        else:
            return None
    # diffusers' models take seconds to import: only a diffusers VAE gets here, not the
    # latent models text2sign trains (every latent model's load asks this first)
    from diffusers import AutoencoderKL

    return DiffusersAutoencoder(_from_pretrained(AutoencoderKL, folder), reference(folder))


# ----------------------------------------------------------------------------- DiT checkpoints


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors``, or ``.pt``/``.pth`` read with weights_only (no code)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model.pretrained={str(path)!r} is not a file; pass a DiT "
                                "checkpoint (.safetensors, or .pt holding tensors only)")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix not in (".pt", ".pth"):
        raise ValueError(f"model.pretrained={str(path)!r}: expected a .safetensors, .pt or .pth "
                         "file in the facebookresearch DiT format")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises UnpicklingError or RuntimeError here
        raise ValueError(
            f"{str(path)!r} holds more than tensors, so it is not unpickled (weights_only=True: "
            f"{str(err).splitlines()[0]}); save its state dict alone, e.g. with "
            "safetensors.torch.save_file(state_dict, 'dit.safetensors')") from err
    for key in ("ema", "model", "state_dict"):  # DiT / TinyFusion training checkpoints
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{str(path)!r} is not a state dict of tensors")
    return state


def read_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a checkpoint without reading its data (safetensors header, or mmap)."""
    path = Path(path).expanduser()
    if path.suffix == ".safetensors" and path.is_file():
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    return {k: tuple(v.shape) for k, v in read_state_dict(path).items()}


def dit_params(shapes: dict[str, tuple[int, ...]], num_heads: int) -> dict[str, Any]:
    """dit3d parameters that hold a DiT checkpoint: twice its depth (spatial blocks from it,
    temporal blocks new), its width, patch and MLP ratio; DiT's positions; tubelet 1."""
    if "x_embedder.proj.weight" not in shapes:
        raise ValueError("not a facebookresearch DiT checkpoint: no x_embedder.proj.weight "
                         f"(its first keys: {sorted(shapes)[:5]})")
    hidden, _, patch, _ = shapes["x_embedder.proj.weight"]
    depth = len({k.split(".")[1] for k in shapes if k.startswith("blocks.")})
    mlp = shapes["blocks.0.mlp.fc1.weight"][0] / hidden
    heads = DIT_HEADS.get(hidden, num_heads)
    if hidden % heads:
        raise ValueError(f"the DiT checkpoint is {hidden} wide, not divisible by "
                         f"model.params.num_heads={heads}; set num_heads to the checkpoint's")
    return {"hidden_size": hidden, "depth": 2 * depth, "num_heads": heads, "patch_size": patch,
            "tubelet": 1, "mlp_ratio": mlp, "cross_attention": True, "positions": "dit"}


@dataclass
class LoadReport:
    """What a pretrained load did, by parameter name."""

    source: str
    loaded: list[str] = field(default_factory=list)  # ours, filled from the file
    new: list[str] = field(default_factory=list)  # ours, initialised here
    dropped: list[str] = field(default_factory=list)  # the file's, unused
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def names(keys: list[str]) -> str:
            roots = sorted({".".join(k.split(".")[:2]) for k in keys})
            return ", ".join(roots[:8]) + (f" (+{len(roots) - 8} more)" if len(roots) > 8 else "")

        lines = [f"pretrained {self.source}:",
                 f"  loaded  {len(self.loaded)} tensors: {names(self.loaded)}",
                 f"  new     {len(self.new)} tensors: {names(self.new)}",
                 f"  dropped {len(self.dropped)} tensors: {', '.join(self.dropped) or '-'}"]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def load_dit_checkpoint(model: nn.Module, state: dict[str, torch.Tensor], source: str
                        ) -> LoadReport:
    """Copy a DiT (Peebles & Xie 2023) state dict into a dit3d built by ``dit_params``.

    DiT block k becomes spatial block 2k; temporal blocks 2k+1, the cross-attention outputs and
    the text projection start at zero, so step 0 is the image DiT per frame with the null class
    (its unconditional model): the null-class row of the class table becomes the text
    projection's bias, the other rows are dropped. DiT's learned-variance outputs are dropped.
    """
    ours = model.state_dict()
    hidden, c_out = model.config["hidden_size"], model.in_channels
    patch = model.config["patch_size"]
    c_in = state["x_embedder.proj.weight"].shape[1]
    if c_in != c_out:
        raise ValueError(f"the DiT checkpoint takes {c_in} input channels, the run diffuses "
                         f"{c_out}; use the autoencoder it was trained with (e.g. "
                         "latent.autoencoder=sd-vae-ft-ema, 4 channels)")
    report = LoadReport(source)
    new: dict[str, torch.Tensor] = {}

    def take(src: str, dst: str, value: torch.Tensor | None = None) -> None:
        new[dst] = state[src] if value is None else value
        report.loaded.append(dst)
        used.add(src)

    used: set[str] = set()
    take("x_embedder.proj.weight", "x_embed.weight",
         state["x_embedder.proj.weight"][:, :, None])  # (D, C, 1, p, p): a one-frame tubelet
    take("x_embedder.proj.bias", "x_embed.bias")
    for i in (0, 2):
        for kind in ("weight", "bias"):
            take(f"t_embedder.mlp.{i}.{kind}", f"t_embed.mlp.{i}.{kind}")
    table = state.get("y_embedder.embedding_table.weight")
    null_class = torch.zeros(hidden)
    if table is not None:
        used.add("y_embedder.embedding_table.weight")
        report.dropped.append(f"y_embedder.embedding_table.weight[:{table.shape[0] - 1}]")
        null_class = table[-1].clone()  # DiT's last row is the CFG null class
        report.notes.append(f"the class table's null row (of {table.shape[0]}) became "
                            "y_embed.bias; texts enter through y_embed.weight (zero) and "
                            "cross-attention (zero output)")
    depth = model.config["depth"] // 2
    for k in range(depth):
        src, dst = f"blocks.{k}", f"blocks.{2 * k}"
        for kind in ("weight", "bias"):
            qkv = state[f"{src}.attn.qkv.{kind}"]  # rows [q | k | v], heads inside each
            take(f"{src}.attn.qkv.{kind}", f"{dst}.attn.to_q.{kind}", qkv[:hidden])
            new[f"{dst}.attn.to_kv.{kind}"] = qkv[hidden:]
            report.loaded.append(f"{dst}.attn.to_kv.{kind}")
            take(f"{src}.attn.proj.{kind}", f"{dst}.attn.to_out.{kind}")
            take(f"{src}.mlp.fc1.{kind}", f"{dst}.mlp.net.0.{kind}")
            take(f"{src}.mlp.fc2.{kind}", f"{dst}.mlp.net.2.{kind}")
            take(f"{src}.adaLN_modulation.1.{kind}", f"{dst}.ada.1.{kind}")
    for kind in ("weight", "bias"):
        take(f"final_layer.adaLN_modulation.1.{kind}", f"ada_out.1.{kind}")
        linear = state[f"final_layer.linear.{kind}"]  # rows (p, q, c) with c < 2C if learn_sigma
        c_file = linear.shape[0] // (patch * patch)
        rows = rearrange(linear, "(pq c) ... -> pq c ...", c=c_file)[:, :c_out]  # (p*p, C, ...)
        take(f"final_layer.linear.{kind}", f"proj_out.{kind}", rows.flatten(0, 1))
    if c_file == 2 * c_out:
        report.notes.append("final_layer.linear: the learned-variance half of the outputs "
                            "(DiT's learn_sigma) was dropped; the first half predicts epsilon")
    if "pos_embed" in state:
        used.add("pos_embed")
        report.notes.append("pos_embed is recomputed for any frame size (DiT's 2D sin-cos)")
    report.dropped += sorted(set(state) - used - {"y_embedder.embedding_table.weight"})
    # The new parts: zero where step 0 must equal the image model, initialised as built elsewhere.
    for name, value in ours.items():
        if name in new:
            if new[name].shape != value.shape:
                raise ValueError(f"DiT checkpoint tensor for {name} has shape "
                                 f"{tuple(new[name].shape)}, dit3d expects {tuple(value.shape)}")
            continue
        report.new.append(name)
        block = name.split(".")[1] if name.startswith("blocks.") else None
        temporal = block is not None and int(block) % 2 == 1
        if (temporal and ".ada." in name) or ".attn_x.to_out." in name or name == "y_embed.weight":
            new[name] = torch.zeros_like(value)
        elif name == "y_embed.bias":
            new[name] = null_class.to(value.dtype)
    model.load_state_dict({**ours, **new})
    return report


# ----------------------------------------------------------------------------- the whole model


def _unet_folder(path: str | Path) -> Path:
    folder = diffusers_folder(path, "UNet2DConditionModel", "unet")
    if folder is None:
        raise FileNotFoundError(
            f"model.pretrained={str(path)!r} is not a diffusers UNet2DConditionModel folder (a "
            "config.json with _class_name UNet2DConditionModel, in it or in its unet/ "
            "subfolder); pass e.g. the unet/ folder of a Stable Diffusion 1.x/2.x pipeline")
    return folder


def pretrained_params(arch: str, path: str | Path, num_heads: int) -> dict[str, Any]:
    """The denoiser parameters ``model.pretrained`` decides: an SD UNet's config (``unet``) for
    unet-motion, a DiT checkpoint's shape for dit3d. Reads configs and headers only."""
    if arch == UNET_ARCH:
        from diffusers import UNet2DConditionModel  # diffusers' models: seconds, unet-motion only

        config = UNet2DConditionModel.load_config(str(_unet_folder(path)))
        return {"unet": {k: list(v) if isinstance(v, tuple) else v
                         for k, v in config.items() if not k.startswith("_")}}
    if arch == "dit3d":
        return dit_params(read_shapes(path), num_heads)
    raise ValueError(f"model.pretrained works with model.arch=unet-motion (a diffusers "
                     f"UNet2DConditionModel folder) or dit3d (a DiT checkpoint), not {arch!r}")


def _load_weights(denoiser: nn.Module, arch: str, path: str | Path) -> LoadReport:
    if arch == UNET_ARCH:
        from diffusers import UNet2DConditionModel  # diffusers' models: seconds, unet-motion only

        unet = _from_pretrained(UNet2DConditionModel, _unet_folder(path))
        return denoiser.load_unet2d(unet.state_dict(), str(path))
    report = load_dit_checkpoint(denoiser, read_state_dict(path), str(path))
    heads, width = denoiser.config["num_heads"], denoiser.config["hidden_size"]
    known = "DiT's own width" if DIT_HEADS.get(width) == heads else "from model.params"
    report.notes.append(f"num_heads={heads} ({known}; a checkpoint does not record it, DiT-S/B/"
                        "L/XL use 6/12/16/16: set model.params.num_heads for other widths)")
    return report


def pretrained_path(arch: str, path: str | Path) -> Path:
    path = Path(path).expanduser()
    return _unet_folder(path) if arch == UNET_ARCH else path


def init_from_pretrained(denoiser: nn.Module, arch: str, path: str | Path,
                         train_only: str = "all", log=print) -> dict[str, Any]:
    """Load ``model.pretrained`` into a freshly built denoiser and freeze what
    ``model.train_only`` keeps; returns the reference (path + hashes) the model folder records."""
    path = pretrained_path(arch, path)
    report = _load_weights(denoiser, arch, path)
    if train_only == "temporal":
        loaded = set(report.loaded)
        for name, p in denoiser.named_parameters():
            p.requires_grad_(name not in loaded)
    if log is not None:
        trained = sum(p.numel() for p in denoiser.parameters() if p.requires_grad)
        total = sum(p.numel() for p in denoiser.parameters())
        log(report.summary() + f"\n  training {trained / 1e6:.2f} M of {total / 1e6:.2f} M "
            f"parameters (model.train_only={train_only})")
    return reference(path)


def restore_denoiser(denoiser: nn.Module, state: dict[str, torch.Tensor], arch: str,
                     ref: dict[str, Any] | None, where: str) -> None:
    """Load a model folder's denoiser weights; the frozen pretrained ones it does not hold come
    from ``ref``, the folder's reference to them, after its hashes are checked. (Names and
    shapes of ``state`` are checked before, by `checkpoint.check_fit`.)"""
    missing = set(denoiser.state_dict()) - set(state)
    if missing:
        if ref is None:
            raise ValueError(f"denoiser weights in {where!r} lack {sorted(missing)[:5]} and the "
                             "folder references no pretrained weights")
        path = check_reference(ref, "the model's frozen pretrained denoiser",
                               f"{where}/config.json")
        report = _load_weights(denoiser, arch, path)
        if missing - set(report.loaded):
            raise ValueError(f"denoiser weights lack {sorted(missing - set(report.loaded))[:5]}"
                             f", which the referenced {str(path)!r} does not provide either")
    denoiser.load_state_dict(state, strict=False)


def check_text_width(text_dim: int, cross_attention_dim: int) -> None:
    if text_dim != cross_attention_dim:
        raise ValueError(
            f"the text encoder (text.encoder) gives {text_dim}-wide tokens, the pretrained UNet "
            f"cross-attends to {cross_attention_dim}; use the pipeline's own text encoder "
            "(text.encoder=SD_FOLDER/text_encoder: CLIP ViT-L/14, 768, for SD 1.x; OpenCLIP "
            "ViT-H/14, 1024, for SD 2.x) or another encoder of that width")


def frames_fit(frames: int, limit: int) -> None:
    if frames > limit:
        raise ValueError(f"data.frames={frames} exceeds the motion modules' position table "
                         f"({limit}); raise model.params.motion_max_frames or use fewer frames")
