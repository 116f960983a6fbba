"""Report formatting shared by `evaluate`, `info` and model cards: plain data in, text out."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def json_safe(value: Any) -> Any:
    """NaN -> None so report.json is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def fmt_number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline numbers as (name, value) pairs, for report.md and the command line."""
    return [
        ("texts", str(report["texts"])),
        ("clips", str(report["clips"])),
        ("top-1", fmt_number(report["top1"])),
        ("top-5", fmt_number(report["top5"])),
        ("ceiling top-1 (real)", fmt_number(report["ceiling_top1"])),
        ("ceiling top-5 (real)", fmt_number(report["ceiling_top5"])),
        *([("ceiling top-1 (autoencoded)", fmt_number(report["ceiling_top1_autoencoded"]))]
          if "ceiling_top1_autoencoded" in report else []),
        ("chance top-1", fmt_number(report["chance_top1"])),
        ("FD", fmt_number(report["fd"], 2)),
        ("FD floor (real vs real)", fmt_number(report["fd_floor"], 2)),
        ("s/clip", fmt_number(report["seconds_per_clip"], 3)),
        ("device", report["device"]),
    ]


# Below this top-1 on held-out real clips, the classifier cannot tell the corpus's texts apart
# (a corpus of thousands of texts: 0.001 on data/multi), and its top-1 and FD say little.
WEAK_CLASSIFIER = 0.2


def classifier_note(report: dict[str, Any]) -> str | None:
    """One line saying the classifier's numbers say little, when its real-clip ceiling is below
    `WEAK_CLASSIFIER`; None when it reads real clips well enough, or has no ceiling."""
    ceiling = report.get("ceiling_top1")
    if not isinstance(ceiling, (int, float)) or math.isnan(ceiling) or ceiling >= WEAK_CLASSIFIER:
        return None
    measure = ("the back-translation tables measure the clips" if report.get("back_translation")
               else "back-translation measures them (leave out --no-back-translation)")
    return (f"note: the classifier reads held-out real clips at top-1 {fmt_number(ceiling)} "
            f"(chance {fmt_number(report.get('chance_top1'))}): it cannot tell this corpus's "
            f"texts apart, so its top-1, top-5 and FD say little here; {measure}")


MET_SHARE = 0.7  # a group is read well when every reader reads >= 70% of its ceiling exact

GROUP_NAMES = {"letters": "letters", "seen": "seen texts", "unseen": "unseen texts",
               "unseen-long": "unseen long words", "unseen-phrases": "unseen phrases"}


def group_top1_rows(report: dict[str, Any]) -> list[list[str]]:
    """Header + one row per group: the classifier's top-1 on the generated clips of the group's
    texts, and on the held-out real clips of the same texts (the ceiling). Reports written
    before it existed have none: []."""
    groups = report.get("group_top1")
    if not groups:
        return []
    rows = [["classifier", "texts", "clips", "top-1", "ceiling top-1", "ceiling clips"]]
    for group, g in groups.items():
        rows.append([GROUP_NAMES.get(group, group), str(g["texts"]), str(g["clips"]),
                     fmt_number(g["top1"]), fmt_number(g["ceiling_top1"]),
                     str(g["ceiling_clips"])])
    return rows


def back_translation_rows(report: dict[str, Any]) -> list[list[str]]:
    """Header + one row per group (and reader, when several read): the back-translation
    table, each reader beside its own ceiling."""
    bt = report.get("back_translation")
    if not bt:
        return []
    unit = "CER" if bt["units"] == "chars" else "gloss ER"
    readers = bt.get("readers") or {bt.get("reader", "reader"): {"groups": bt["groups"]}}
    several = len(readers) > 1
    decoded = _has_decoded(g for r in readers.values() for g in r["groups"].values())
    rows = [["back-translation", *(["reader"] if several else []), "texts", "clips", unit,
             f"ceiling {unit}", *([f"decoded {unit}"] if decoded else []), "exact",
             "ceiling exact", *(["decoded exact"] if decoded else []), "ceiling clips"]]
    for group in bt["groups"]:
        for name, r in readers.items():
            g = r["groups"].get(group)
            if g is None:
                continue
            rows.append([GROUP_NAMES.get(group, group), *([name] if several else []),
                         str(g["texts"]), str(g["clips"]), *_scores(g, decoded),
                         str(g["ceiling_clips"])])
    return rows


def _has_decoded(scores: Iterable[dict[str, Any] | None]) -> bool:
    """Whether back-translation scores carry the decoded ceiling (a latent model's)."""
    return any(g is not None and "ceiling_decoded_exact" in g for g in scores)


def _scores(g: dict[str, Any], decoded: bool) -> list[str]:
    """CER, its ceiling(s), exact, its ceiling(s): a back-translation row's numbers; the
    decoded ceiling's cells are blank where a row has none."""
    cer = [fmt_number(g["cer"]), fmt_number(g["ceiling_cer"])]
    exact = [fmt_number(g["exact"]), fmt_number(g["ceiling_exact"])]
    if decoded:
        cer.append(fmt_number(g["ceiling_decoded_cer"]) if "ceiling_decoded_cer" in g else "")
        exact.append(fmt_number(g["ceiling_decoded_exact"]) if "ceiling_decoded_exact" in g
                     else "")
    return cer + exact


def agreement_rows(report: dict[str, Any]) -> list[list[str]]:
    """Header + one row per group: how often the readers read a generated clip the same, the
    same and right, and whether every reader puts the group at >= MET_SHARE of its ceiling's
    exact accuracy. Reports with one reader have none: []."""
    bt = report.get("back_translation") or {}
    agreement = bt.get("agreement")
    if not agreement:
        return []
    rows = [["readers agree", "clips", "same reading", "same and right",
             f"met (every reader >= {MET_SHARE:.0%} of its ceiling)"]]
    for group, a in agreement.items():
        met = bt.get("met", {}).get(group)
        rows.append([GROUP_NAMES.get(group, group), str(a["clips"]), fmt_number(a["same"]),
                     fmt_number(a["same_right"]),
                     "n/a" if met is None else ("yes" if met else "no")])
    return rows


def duration_rows(report: dict[str, Any]) -> list[list[str]]:
    """Header + one row per group: generated / real duration and the mean absolute frame
    error, for a model whose clips' length follows the text. Others have none: []."""
    duration = report.get("duration")
    if not duration:
        return []
    rows = [["duration", "texts", "generated / real", "mean abs frame error", "real frames"]]
    for group, g in duration["groups"].items():
        rows.append([GROUP_NAMES.get(group, group), str(g["texts"]), fmt_number(g["ratio"]),
                     fmt_number(g["frame_error"], 2), fmt_number(g["real_frames"], 1)])
    return rows


def language_rows(report: dict[str, Any]) -> list[list[str]]:
    """Header + one row per sign language (and reader, when several read) of a corpus of
    several: its held-out texts read back beside the ceiling, and their duration ratio. A
    report of one language has none: []."""
    bt = report.get("back_translation") or {}
    duration = (report.get("duration") or {}).get("languages") or {}
    readers = {name: r.get("languages") or {} for name, r in (bt.get("readers") or {}).items()}
    if not readers and bt.get("languages"):
        readers = {bt.get("reader", "reader"): bt["languages"]}
    codes = sorted({c for r in readers.values() for c in r} | set(duration))
    if not codes:
        return []
    unit = "CER" if bt.get("units", "chars") == "chars" else "gloss ER"
    several = len(readers) > 1
    decoded = _has_decoded(g for r in readers.values() for g in r.values())
    rows = [["held-out texts by language", *(["reader"] if several else []), "texts", unit,
             f"ceiling {unit}", *([f"decoded {unit}"] if decoded else []), "exact",
             "ceiling exact", *(["decoded exact"] if decoded else []), "duration ratio"]]
    for code in codes:
        d = duration.get(code)
        ratio = fmt_number(d["ratio"]) if d else ""
        named = [(name, r[code]) for name, r in readers.items() if code in r] or [("", None)]
        for k, (name, g) in enumerate(named):
            texts = g["texts"] if g else (d["texts"] if d else 0)
            scores = [""] * (6 if decoded else 4) if g is None else _scores(g, decoded)
            rows.append([code, *([name] if several else []), str(texts), *scores,
                         ratio if k == 0 else ""])
    return rows


def markdown_table(rows: list[list[str]]) -> list[str]:
    """Header + rows as Markdown table lines; a "|" inside a cell (a text) is escaped."""
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return [lines[0], "|" + "---|" * len(rows[0]), *lines[1:]]


def format_table(rows: list[list[str]]) -> str:
    """Aligned columns for a terminal."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)
