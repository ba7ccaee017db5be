"""Best-of-N reranking (`run_task(..., candidates=N)`) and the key fit it ranks compose candidates by.

Run: `.venv/bin/python -m pytest tests/generate/test_rerank.py -q`.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import acemusic.cli.compose  # noqa: F401  registers the command
from acemusic.api import load
from acemusic.cli.app import app
from acemusic.data.analysis import key_fit, note_arrays
from acemusic.errors import InputError
from acemusic.generate.prompt import parse_prompt
from acemusic.generate.sampling import SamplingConfig
from acemusic.generate.tasks.base import run_task
from acemusic.generate.tasks.compose import ComposeTask

C_MAJOR = np.array([60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60])
DURS = np.array([4, 2, 2, 2, 4, 2, 2, 4, 2, 2, 6])


def test_key_fit_prefers_the_asked_key():
    assert key_fit(C_MAJOR, DURS, 0, "major") > 0  # both key finders say C major
    assert key_fit(C_MAJOR, DURS, 6, "major") < 0  # F# major is far away
    assert key_fit(C_MAJOR, DURS, None, "major") > 0  # mode only: some major key wins
    assert key_fit(C_MAJOR + 3, DURS, 3, None) > key_fit(C_MAJOR + 3, DURS, 0, None)  # tonic only
    assert key_fit(C_MAJOR, DURS, None, None) == 0.0  # nothing asked: every candidate ties
    assert key_fit(np.zeros(0, int), np.zeros(0, int), 0, "major") == -1.0  # no notes: worst


def test_key_fit_minor_vs_relative_major():
    a_minor = np.array([57, 59, 60, 62, 64, 65, 68, 69, 64, 57])  # harmonic minor, tonic weighted
    d = np.array([6, 1, 2, 1, 3, 1, 2, 6, 2, 6])
    assert key_fit(a_minor, d, 9, "minor") > 0
    assert key_fit(a_minor, d, 0, "major") < 0


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint):
    return load(tiny_checkpoint, text=False)


def test_best_of_n_returns_the_best_candidate(bundle):
    """With N candidates the result is the candidate of highest key fit, and it is one of the N rows decoded."""
    task = ComposeTask(parse_prompt("folk tune in A minor"), bars=4)
    rows = []
    best = run_task(task, bundle.ctx, SamplingConfig(), seed=5, candidates=4,
                    on_step=lambda s: rows.append(len(s.tokens)))
    assert set(rows) == {4}  # one batch of four rows (no guidance: tiny model without text)
    # Decode the same four rows again by hand and score them.
    from acemusic.generate.engine import Request

    req = task.build(bundle.ctx)
    outs = bundle.engine.generate([req] + [Request(req.prompt, req.controls, req.text_emb, req.uncond_prompt)
                                           for _ in range(3)], SamplingConfig(), seed=5,
                                  max_new_tokens=task.max_new_tokens())
    cands = [task.finish(bundle.ctx, np.asarray(req.prompt), o) for o in outs]
    fits = [task.candidate_score(bundle.ctx, c) for c in cands]
    assert best == cands[int(np.argmax(fits))]
    a = note_arrays(best)
    assert task.candidate_score(bundle.ctx, best) == pytest.approx(key_fit(a["pitch"], a["duration"], 9, "minor"))


def test_no_criterion_decodes_one_row(bundle):
    task = ComposeTask(parse_prompt("a piece for flute"), bars=2)  # no key, no mode, no mood word
    assert not task.ranks_candidates()
    rows = []
    run_task(task, bundle.ctx, SamplingConfig(), seed=0, candidates=8, on_step=lambda s: rows.append(len(s.tokens)))
    assert set(rows) == {1}


def test_candidates_deterministic_and_validated(bundle):
    a = bundle.compose("calm oboe in D major", bars=3, seed=2, candidates=3)
    b = bundle.compose("calm oboe in D major", bars=3, seed=2, candidates=3)
    assert a == b
    for bad in (0, 17):
        with pytest.raises(InputError, match="--candidates"):
            bundle.compose("calm oboe in D major", bars=3, candidates=bad)


def test_cli_candidates_error(tiny_checkpoint, tmp_path):
    out = tmp_path / "x.mid"
    r = CliRunner().invoke(app, ["compose", "piano in C major", "-o", str(out), "--candidates", "0",
                                 "--checkpoint", str(tiny_checkpoint)])
    assert r.exit_code == 1 and "--candidates" in r.output and not out.exists()


class _Never(ComposeTask):
    def candidate_meets(self, fit: float) -> bool:
        return False


class _Always(ComposeTask):
    def candidate_meets(self, fit: float) -> bool:
        return True


@pytest.mark.parametrize("cls,batches", [(_Never, [4, 4, 2]), (_Always, [4])])
def test_further_batches_only_while_no_candidate_meets_the_ask(bundle, cls, batches):
    """candidates=10: batches of 4, 4, 2 rows when nothing meets the ask; one batch when the first does."""
    task = cls(parse_prompt("folk tune in A minor"), bars=2)
    rows: list[int] = []
    run_task(task, bundle.ctx, SamplingConfig(), seed=1, candidates=10,
             on_step=lambda s: rows.append(len(s.tokens)) if s.index == 0 else None)
    assert rows == batches


def test_compose_meets_when_both_key_finders_agree():
    task = ComposeTask(parse_prompt("folk tune in A minor"), bars=2)
    assert task.candidate_meets(0.01) and not task.candidate_meets(0.0) and not task.candidate_meets(-0.2)
