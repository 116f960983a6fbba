"""Model cards: the README.md of every model folder, in the Hugging Face Hub's format (YAML front
matter, then what the model is, how it was trained, how it scores, a sample and its limits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from text2sign.core.config import Config, ModelConfig
from text2sign.core.report import (
    agreement_rows,
    back_translation_rows,
    duration_rows,
    group_top1_rows,
    language_rows,
    markdown_table,
    summary_rows,
)
from text2sign.model_folder.model_info import ModelInfo
from text2sign.models.registry import preset_params

CARD_FILE = "README.md"
SAMPLE_FILE = "sample.gif"  # real clips beside generated ones, written by `evaluate --card`
LICENSE = "apache-2.0"  # text2sign's; a card may name another through info.license
TAGS = ["sign-language", "text-to-video", "video-diffusion", "text2sign"]


def preset_label(model: ModelConfig) -> str:
    """'preset small', or 'custom (preset small with stem=1)' when the parameters differ."""
    base = preset_params(model.arch, model.preset)
    changed = [f"{k}={v}" for k, v in model.params.items() if base.get(k) != v]
    if not changed:
        return f"preset {model.preset}"
    return f"custom (preset {model.preset} with {', '.join(changed)})"


def front_matter(info: ModelInfo) -> dict[str, Any]:
    """The Hub's metadata: license, library, pipeline tag, tags and the base model if any."""
    cfg = info.config
    tags = list(TAGS)
    if cfg.latent.enabled:
        tags.append("latent-diffusion")
    if info.data.get("fingerspelling"):
        tags.append("fingerspelling")
    meta: dict[str, Any] = {"license": info.license or LICENSE, "library_name": "text2sign",
                            "pipeline_tag": "text-to-video", "tags": tags}
    base = [cfg.model.pretrained, cfg.latent.autoencoder if "autoencoder" in info.pretrained
            else None, cfg.text.encoder if cfg.text.encoder != "bytes" else None]
    base = [b for b in base if b]
    if base:
        meta["base_model"] = base[0] if len(base) == 1 else base
    return meta


def clip_length(dc: Any) -> str:
    """How long its clips are: a frame count, or a rate and a limit."""
    if dc.time_mode == "fps":
        return (f"clips as long as the text at {dc.fps:g} frames a second (at most "
                f"{dc.max_frames} frames)")
    return f"{dc.frames} frames"


def _evaluation(info: ModelInfo, folder: str) -> list[str]:
    report = info.evaluation
    if not report:
        return ["Not evaluated yet. `text2sign evaluate --model " + folder + " --data CORPUS "
                "--card` adds the scores and an animated sample here."]
    lines = [f"`{report['command']}`" if report.get("command") else ""]
    if "top1" in report:  # a full `evaluate`; a back-translation alone has no classifier
        lines += ["", *markdown_table([["measure", "value"], *map(list, summary_rows(report))])]
    for rows in (group_top1_rows(report), back_translation_rows(report),
                 agreement_rows(report), duration_rows(report), language_rows(report)):
        if rows:
            lines += ["", *markdown_table(rows)]
    lines += ["", "top-1 / top-5: a 3D-CNN recognizer trained on the corpus's real clips names "
              "the generated clip's text; ceiling: the same recognizer on held-out real clips. "
              "FD: Frechet distance in its feature space, floor: real vs real. Back-translation: "
              "each reader reads each clip back into text (CER, exact match), beside its own "
              "ceiling on real clips; readers agree: the share of clips every reader reads the "
              "same (and right)."]
    return lines


def _limitations(info: ModelInfo, texts: list[str] | None) -> list[str]:
    cfg, data = info.config, info.data
    out = [f"- It makes {clip_length(cfg.data)} at {cfg.data.size}x{cfg.data.size} only, "
           "and only signs like those of its corpus."]
    if texts:
        chars = sorted({c for t in texts for c in t})
        longest = max(len(t) for t in texts)
        out.append(f"- It has seen {len(texts)} distinct texts (the longest {longest} "
                   f"character{'s' if longest > 1 else ''}) "
                   f"made of {len(chars)} characters: `{''.join(chars)}`. `text2sign sample` "
                   "refuses other characters and warns about longer texts; words it never "
                   "saw may come out wrong.")
    if data.get("held_out_texts"):
        out.append(f"- {data['held_out_texts']} texts of its corpus were held out, never "
                   "trained on: the evaluation reports them apart as unseen.")
    if data.get("fingerspelling"):
        out.append("- Its corpus is coloured pose skeletons (MediaPipe Holistic landmarks) "
                   "rendered from recordings of real signers, not camera video: it draws "
                   "skeletons, not people.")
    out.append("- The scores come from recognizers trained on the same corpus, not from "
               "signers; a high score means the clip resembles the corpus's clip of that text.")
    return out


def model_card(info: ModelInfo, folder: str | Path, texts: list[str] | None = None,
               sample: bool = False) -> str:
    """README.md of a model folder from its config.json facts (``info``), its texts.txt and
    whether it holds sample.gif."""
    cfg, data = info.config, info.data
    folder = shown_path(folder)
    params = info.parameters.get("denoiser")
    space = (f"on {cfg.latent.channels}-channel latents of a per-frame autoencoder "
             f"({cfg.latent.factor}x smaller per side)" if cfg.latent.enabled
             else "in pixel space")
    lines = ["---", yaml.safe_dump(front_matter(info), sort_keys=False).strip(), "---", "",
             f"# {Path(folder).name}: a text2sign model", "",
             f"Text in, sign-language clip out: a {cfg.model.arch} denoiser, "
             f"{preset_label(cfg.model)}"
             + (f", {params / 1e6:.2f} M parameters," if params else ",")
             + f" {space}, conditioned on the `{cfg.text.encoder}` text encoder, making "
             f"{clip_length(cfg.data)} at {cfg.data.size}x{cfg.data.size}.",
             "", "## Use", "", "```python", "from text2sign import Text2SignPipeline", "",
             f'pipe = Text2SignPipeline.from_pretrained("{folder}")',
             'videos = pipe(["A"], seed=0)  # uint8 (1, T, H, W, 3)', "```", "",
             f'or `text2sign sample --model {folder} "A"`, with text2sign installed.', "",
             "## Training", ""]
    command = info.command
    lines.append(f"- command: `{command}`" if command else "- command: not recorded")
    lines.append(f"- {or_unknown(info.step)} steps in {or_unknown(info.minutes)} minutes on "
                 f"{info.device or 'an unrecorded device'}")
    lines.append(f"- data: {data.get('clips', '?')} clips of {data.get('texts', '?')} distinct "
                 f"texts from `{data.get('path', '?')}`")
    ae = info.autoencoder
    if ae and "l1" in ae:
        lines.append(f"- autoencoder: {ae.get('steps')} steps first, L1 {ae['l1']:.4f}")
    refit = (ae or {}).get("decoder_refit")
    if refit:
        how = (f"taken from {refit['taken_from']}, which refitted it" if "taken_from" in refit
               else "refitted")
        l1 = refit.get("l1", float("nan"))
        lines.append(f"- decoder: {how} on `{refit.get('data', '?')}` ({refit.get('steps')} "
                     f"steps of {refit.get('batch_size')} frames, L1 {l1:.4f}; encoder and "
                     "latent space unchanged)")
    diff, sampling = cfg.diffusion, cfg.sample
    lines.append(f"- diffusion: {diff.prediction_type}, {diff.beta_schedule} betas; "
                 f"sampling {sampling.sampler} {sampling.steps} steps, guidance "
                 f"{sampling.guidance}")
    if cfg.distill.steps is not None:
        lines.append(f"- {student_line(cfg)}")
    lines += ["", "## Evaluation", "", *_evaluation(info, folder), ""]
    if sample:
        lines += ["## Sample", "", f"![real and generated clips]({SAMPLE_FILE})", "",
                  "Each row: a real clip (green frame), then clips generated from its text.", ""]
    lines += ["## Limitations", "", *_limitations(info, texts), ""]
    return "\n".join(lines)


def student_line(cfg: Config) -> str:
    """What a distilled student is: its teacher, method and steps."""
    dc = cfg.distill
    return (f"distilled from teacher `{dc.teacher}` by {dc.method} (latent consistency "
            f"distillation, guidance {dc.guidance_min:g}-{dc.guidance_max:g} folded in) for "
            f"{dc.steps} step(s), one denoiser evaluation each")


def or_unknown(value: Any) -> Any:
    """An unrecorded fact (a folder older than the key) shown as '?'."""
    return "?" if value is None else value


def shown_path(folder: str | Path) -> str:
    """The folder as a card names it: relative to the working directory when inside it (an
    absolute path of the machine that wrote the card means nothing to its readers)."""
    path = Path(folder)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(folder)


def read_front_matter(card: str) -> dict[str, Any]:
    """The YAML between the card's two leading ``---`` lines."""
    if not card.startswith("---\n"):
        raise ValueError("a model card starts with YAML front matter between '---' lines")
    return yaml.safe_load(card[4:card.index("\n---", 3)])

