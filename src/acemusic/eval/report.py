"""`acemusic eval report`: the model and every baseline on the same prompts, every metric against held-out music,
written as a Markdown report with tables and PNG figures.

Steps (each cached under `--out`, so a rerun only does what is missing):

1. prompts from `n` test pieces (`suite.make_prompts`) -> `prompts.jsonl`;
2. every system generates for every prompt -> `gen/<system>/<i>.mid` (`suite.Generator`), plus the reference
   `gen/real-test/<i>.mid` (the test piece's own first bars);
3. held-out NLL per token and per note on the whole test split (`heldout.heldout_nll`) -> `nll.json`;
4. behavioural tests (`behaviour.py`) -> `behaviour.json` when `behaviour_n > 0`;
5. metrics with bootstrap intervals (`compare.compare_system`) -> `results.json`, figures, `report.md`.

`settings.json` records what the cached generations depend on (data, checkpoint, bars, seed, sampling); a rerun
with different settings in the same folder is refused (use a new `--out`, or `--force` to regenerate).

Tests: `.venv/bin/python -m pytest tests/eval/test_report.py -q`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from acemusic.errors import InputError
from acemusic.eval.suite import REFERENCE, SYSTEMS, EvalPrompt, Generator, Resources, make_prompts

MAIN_METRICS = (
    ("pch_overlap", "PCH overlap (paired) ↑"),
    ("transition_distance", "PC transition dist. ↓"),
    ("pch_kl", "PCH KL (set) ↓"),
    ("bleu4_pitch", "BLEU-4 pitch ↑"),
    ("bleu4_interval", "BLEU-4 interval ↑"),
    ("structure", "structure score"),
    ("stats_oa", "stats OA (mean) ↑"),
)


@dataclass
class ReportConfig:
    data: Path
    out: Path
    n: int = 200
    bars: int = 8
    seed: int = 0
    systems: tuple[str, ...] = SYSTEMS
    checkpoint: Path | None = None
    lstm: Path | None = None
    cache_dir: Path = Path("runs/eval")
    cfg: float = 1.5
    top_p: float = 0.95
    quantize: str | None = "int8"
    text: bool = True  # load the MiniLM text embedder with the checkpoint
    n_resamples: int = 1000
    oa_resamples: int = 100
    nll: bool = True
    nll_limit: int | None = None  # score only the first N test pieces (tests)
    behaviour_n: int = 40
    force: bool = False
    command: str = ""
    extra: dict = field(default_factory=dict)

    def generation_settings(self) -> dict:
        """What cached generations depend on."""
        from acemusic.api import default_checkpoint

        ckpt = Path(self.checkpoint) if self.checkpoint is not None else default_checkpoint()
        return {"data": str(Path(self.data).resolve()), "checkpoint": str(ckpt.resolve()),
                "lstm": str(self.lstm), "bars": self.bars, "seed": self.seed, "cfg": self.cfg, "top_p": self.top_p,
                "quantize": self.quantize, "text": self.text}


Progress = Callable[[str, int | None], None]  # (stage description, total or None) -> starts a stage
Advance = Callable[[int], None]


def _check_settings(cfg: ReportConfig) -> None:
    path = cfg.out / "settings.json"
    now = cfg.generation_settings()
    if path.is_file():
        before = json.loads(path.read_text())
        if before != now:
            if not cfg.force:
                diff = sorted(k for k in now if before.get(k) != now[k])
                raise InputError(cfg.out, f"holds generations made with other settings ({', '.join(diff)}); "
                                          "use another --out or pass --force to regenerate")
            for sub in ("gen", "behaviour"):
                shutil.rmtree(cfg.out / sub, ignore_errors=True)
            for f in ("nll.json", "behaviour.json"):
                (cfg.out / f).unlink(missing_ok=True)
    cfg.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(now, indent=1) + "\n")


def run_report(cfg: ReportConfig, stage: Progress | None = None, advance: Advance | None = None) -> dict:
    """Run every step (see the module docstring) and return the results dict (also in results.json)."""
    from acemusic.eval.compare import analyze, compare_system

    stage = stage or (lambda name, total: None)
    advance = advance or (lambda k: None)
    unknown = [s for s in cfg.systems if s not in SYSTEMS]
    if unknown:
        raise InputError("--systems", f"unknown {', '.join(unknown)}; known: {', '.join(SYSTEMS)}")
    _check_settings(cfg)
    t_start = time.perf_counter()
    res = Resources(Path(cfg.data), cfg.checkpoint, cfg.lstm, Path(cfg.cache_dir), quantize=cfg.quantize,
                    cfg=cfg.cfg, top_p=cfg.top_p, text=cfg.text)
    prompts = make_prompts(cfg.data, cfg.n, cfg.bars, cfg.seed)
    (cfg.out / "prompts.jsonl").write_text("".join(json.dumps(p.to_dict()) + "\n" for p in prompts))

    gen = Generator(res, cfg.out)
    paths: dict[str, list[Path]] = {}
    for system in (REFERENCE, *cfg.systems):
        stage(f"generate {system}", len(prompts))
        paths[system] = gen.run(system, prompts, on_piece=lambda k: advance(1))

    nll: dict = {}
    if cfg.nll:
        nll_path = cfg.out / "nll.json"
        nll = json.loads(nll_path.read_text()) if nll_path.is_file() else {}
        todo = [s for s in cfg.systems if s not in nll and s in ("acemusic", "lstm", "kneser-ney", "unigram")]
        if todo:
            from acemusic.eval.heldout import heldout_nll

            stage("held-out NLL", len(todo))
            nll.update(heldout_nll(res, todo, limit=cfg.nll_limit, on_system=lambda s: advance(1)))
            nll_path.write_text(json.dumps(nll, indent=1) + "\n")

    behaviour: dict = {}
    if cfg.behaviour_n > 0:
        from acemusic.eval.behaviour import BEHAVIOUR_SYSTEMS, run_behaviour

        b_path = cfg.out / "behaviour.json"
        behaviour = json.loads(b_path.read_text()) if b_path.is_file() else {}
        wanted = [s for s in cfg.systems if s in BEHAVIOUR_SYSTEMS]
        if behaviour.get("n") != cfg.behaviour_n or any(s not in behaviour.get("systems", {}) for s in wanted):
            behaviour = run_behaviour(res, cfg.out / "behaviour", cfg.behaviour_n, cfg.systems, cfg.seed,
                                      stage=stage, advance=advance)
            b_path.write_text(json.dumps(behaviour, indent=1) + "\n")

    stage("metrics", len(paths))
    analyses = {}
    for system, ps in paths.items():
        analyses[system] = [analyze(p) for p in ps]
        advance(1)
    tonics = [p.spec.key for p in prompts]
    rows = {s: compare_system(analyses[s], analyses[REFERENCE], tonics, cfg.n_resamples, cfg.oa_resamples, cfg.seed)
            for s in cfg.systems}
    ref_row = compare_system(analyses[REFERENCE], analyses[REFERENCE], tonics, cfg.n_resamples, 0, cfg.seed)
    seconds = {}
    for s in (REFERENCE, *cfg.systems):
        f = cfg.out / "gen" / s / "seconds.json"
        t = json.loads(f.read_text()) if f.is_file() else {}
        vals = [t[str(k)] for k in range(len(prompts)) if str(k) in t]
        seconds[s] = sum(vals) / len(vals) if vals else math.nan
    results = {
        "command": cfg.command, "settings": cfg.generation_settings(), "n": len(prompts), "bars": cfg.bars,
        "n_resamples": cfg.n_resamples, "oa_resamples": cfg.oa_resamples,
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "python": platform.python_version()},
        "systems": {s: {k: v for k, v in r.items() if k != "per_piece"} for s, r in rows.items()},
        "reference": {k: v for k, v in ref_row.items() if k not in ("per_piece", "features")},
        "per_piece": {s: r["per_piece"] for s, r in rows.items()},
        "nll": nll, "behaviour": {k: v for k, v in behaviour.items() if k != "items"},
        "seconds_per_piece": seconds, "report_seconds": round(time.perf_counter() - t_start, 1), **cfg.extra,
    }
    (cfg.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    stage("figures", 3)
    write_figures(cfg.out, rows, ref_row, paths, prompts)
    advance(3)
    (cfg.out / "report.md").write_text(render_markdown(results, prompts))
    return results


def write_figures(out: Path, rows: dict, ref_row: dict, paths: dict[str, list[Path]],
                  prompts: Sequence[EvalPrompt], n_rolls: int = 3) -> None:
    from acemusic.eval.metrics import load
    from acemusic.eval.plots import metric_bars, piano_rolls, pitch_class_plot

    hists = {REFERENCE: ref_row["pch_tonic_relative"], **{s: r["pch_tonic_relative"] for s, r in rows.items()}}
    pitch_class_plot(hists, out / "pitch_classes.png",
                     f"pitch classes relative to the asked tonic ({len(prompts)} prompts)")
    metric_bars(rows, MAIN_METRICS, out / "metrics.png")
    k = min(n_rolls, len(prompts))
    titles = [f"prompt {i}: {prompts[i].spec.text[:48]}" for i in range(k)]
    piano_rolls({s: [load(p) for p in ps[:k]] for s, ps in paths.items()}, out / "piano_rolls.png", titles)


# ---- Markdown --------------------------------------------------------------------------------------------------


def _ci(x: dict | None, digits: int = 3) -> str:
    if not isinstance(x, dict) or x.get("value") is None or math.isnan(x["value"]):
        return "-"
    if math.isnan(x.get("lo", math.nan)):
        return f"{x['value']:.{digits}f}"
    return f"{x['value']:.{digits}f} [{x['lo']:.{digits}f}, {x['hi']:.{digits}f}]"


def main_table(results: dict) -> str:
    head = ["system", "NLL/token", "NLL/note", *(label for _, label in MAIN_METRICS), "notes/piece", "s/piece"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    nll = results.get("nll", {})
    for s, r in results["systems"].items():
        n = nll.get(s, {})
        cells = [s, f"{n['nll_per_token']:.3f}" if n else "-", f"{n['nll_per_note']:.3f}" if n else "-"]
        cells += [_ci(r.get(k)) for k, _ in MAIN_METRICS]
        cells += [f"{r['notes']['value']:.1f}", f"{results['seconds_per_piece'].get(s, math.nan):.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    ref = results["reference"]
    cells = [f"{REFERENCE} (reference)", "-", "-"] + [
        _ci(ref.get(k)) if k in ("structure", "bleu4_pitch", "bleu4_interval") else "-" for k, _ in MAIN_METRICS]
    cells += [f"{ref['notes']['value']:.1f}", "-"]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def feature_table(results: dict) -> str:
    from acemusic.eval.compare import SCALAR_FEATURES

    systems = list(results["systems"])
    lines = ["| feature | real-test mean | " + " | ".join(f"{s} mean (OA)" for s in systems) + " |",
             "|" + " --- |" * (len(systems) + 2)]
    for f in SCALAR_FEATURES:
        first = results["systems"][systems[0]]["features"][f]
        cells = [f, f"{first['reference_mean']:.3f}"]
        for s in systems:
            row = results["systems"][s]["features"][f]
            cells.append(f"{row['generated_mean']:.3f} ({row['oa']:.2f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def behaviour_table(behaviour: dict) -> str:
    tests = behaviour.get("tests", {})
    if not tests:
        return ""
    systems = list(behaviour.get("systems", {}))
    cols = [*systems, *(c for c in ("real", "chance") if any(c in t for t in tests.values()))]
    lines = ["| test | items | " + " | ".join(cols) + " |", "|" + " --- |" * (len(cols) + 2)]
    for name, t in tests.items():
        cells = [f"{name}: {t['question']}", str(t["items"])]
        for c in cols:
            v = t.get(c) if c in ("real", "chance") else t.get("systems", {}).get(c)
            cells.append("-" if v is None else f"{v:.0%}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(results: dict, prompts: Sequence[EvalPrompt]) -> str:
    s = results["settings"]
    nll = results.get("nll", {})
    parts = [
        "# acemusic evaluation report",
        "",
        f"Command: `{results['command']}`" if results.get("command") else "",
        "",
        f"{results['n']} prompts read from held-out test pieces (caption, key, mode, meter, tempo, instruments, "
        f"style, density), {results['bars']} bars each (fewer when the piece is shorter), seeds {s['seed']}.."
        f"{s['seed'] + results['n'] - 1}; every system answers the same prompts under the same grammar and "
        f"controls and is compared with the test pieces' own first bars (`real-test`). acemusic samples with "
        f"top-p {s['top_p']}, guidance {s['cfg']}, {s['quantize'] or 'fp32'} decoding; the token baselines sample "
        f"their full distribution (temperature 1). 95% bootstrap intervals over pieces ({results['n_resamples']} "
        f"resamples; {results['oa_resamples']} for stats OA). Load average during the run: "
        f"{', '.join(f'{x:.1f}' for x in results['machine']['load_avg'])}.",
        "",
        "## Main table",
        "",
        main_table(results),
        "",
        "NLL in nats on the whole test split "
        + (f"({next(iter(nll.values()))['tokens']:,} tokens, {next(iter(nll.values()))['notes']:,} notes)"
           if nll else "(not computed)")
        + "; PCH = duration-weighted pitch-class histogram; OA = overlapping area of the per-piece feature "
          "distributions (MusPy/mgeval features). `copy-train` and `real-val` are real pieces, so their NLL is "
          "undefined and their statistics are those of real music.",
        "",
        "![metrics](metrics.png)",
        "",
        "## Pitch classes",
        "",
        "![pitch classes](pitch_classes.png)",
        "",
        "## Descriptive statistics (mean, and overlapping area with real-test)",
        "",
        feature_table(results),
        "",
    ]
    b = results.get("behaviour", {})
    if b.get("tests"):
        parts += ["## Behavioural tests (pass rates)", "", b.get("note", ""), "", behaviour_table(b), ""]
    parts += ["## Samples", "", "![piano rolls](piano_rolls.png)", "",
              "Prompts of the first samples:", ""]
    parts += [f"{i}. `{p.spec.text}` ({p.bars} bars, seed {p.seed})" for i, p in enumerate(prompts[:3])]
    return "\n".join(parts) + "\n"


__all__ = ["ReportConfig", "render_markdown", "run_report"]
