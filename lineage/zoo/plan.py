"""What each zoo size contains: the models, their recipes and lineage, and token budgets.

A model is an `Entry`; entries are listed so that every parent (and a fine-tuned model's
base) comes before the models that need it. Names: teachers t1.., references r1..,
independent suspects i1.., students "<teacher>-<recipe>". Teachers are trained longest;
every suspect (student or independent) and every reference gets the same budget, so
independents and references are fair draws from the null.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MIX_SHARE", "SIZES", "STUDENT_RECIPES", "Entry", "Size"]

STUDENT_RECIPES = ("logit_kd", "seq_kd", "seq_kd_xtok", "mix50", "mix20", "mix05", "seq_kd_ft")
MIX_SHARE = {"mix50": 0.50, "mix20": 0.20, "mix05": 0.05}


@dataclass(frozen=True)
class Entry:
    name: str
    role: str  # teacher | reference | suspect
    recipe: str
    arch: str  # see arch.py
    tok: str  # see tok.py
    parent: str | None = None
    data: str = "stdlib"  # real text: stdlib | thirdparty
    tokens: int | None = None  # training tokens, when not the role's budget in `Size`


@dataclass(frozen=True)
class Size:
    teacher_tokens: int  # training tokens of a teacher
    ref_tokens: int  # training tokens of a reference
    suspect_tokens: int  # training tokens of a suspect (students and independents alike)
    kd_tokens: int  # training tokens of a logit-KD student (KD is far more sample-efficient)
    sample_tokens: int  # tokens each teacher generates for sequence-KD students
    ft_tokens: int  # fine-tuning tokens of seq_kd_ft on the thirdparty corpus
    eval_rows: int  # held-out teacher samples (rows of `ctx` tokens) for evaluation
    eval_docs: int  # held-out real docstrings for evaluation
    entries: tuple[Entry, ...] = field(default=())
    temperature: float = 1.0  # teachers sample their sequence-KD text at this temperature


def _students(t: str, arch: str, tok: str, xarch: str, xtok: str,
              recipes: tuple[str, ...] = STUDENT_RECIPES) -> list[Entry]:
    out = []
    for r in recipes:
        a, k = (xarch, xtok) if r == "seq_kd_xtok" else (arch, tok)
        out.append(Entry(f"{t}-{r}", "suspect", r, a, k, parent=t))
    return out


def _calibration_nulls() -> list[Entry]:
    """Cheap independent suspects (issue 4: >= 100 null suspect-teacher pairs from distinct
    models). Smaller and trained on fewer tokens than the other suspects, so they are easier
    nulls than i1-i6 and the other teachers' students; the benchmark reports their false
    positives separately. Every architecture family, tokenizer and corpus appears."""
    specs = [("llama-xs", "bpe2k-a", "stdlib"), ("neox-xs", "bpe3k-a", "stdlib"),
             ("gpt2-xs", "bpe2k-t", "thirdparty"), ("llama-xs", "bpe1k-a", "stdlib"),
             ("neox-xs", "bpe2k-a", "thirdparty"), ("gpt2-xs", "bpe3k-a", "stdlib"),
             ("llama-xs", "bpe2k-t", "thirdparty"), ("neox-xs", "bpe1k-a", "stdlib"),
             ("gpt2-xs", "bpe2k-a", "stdlib"), ("llama-s", "bpe3k-a", "thirdparty"),
             ("neox-s", "bpe2k-t", "stdlib"), ("gpt2-s", "bpe1k-a", "thirdparty"),
             ("llama-xs", "bpe3k-a", "stdlib"), ("neox-xs", "bpe2k-t", "stdlib")]
    return [Entry(f"i{7 + k}", "suspect", "independent_small", arch, tok, data=data,
                  tokens=200_000) for k, (arch, tok, data) in enumerate(specs)]


_MICRO = (
    Entry("t1", "teacher", "teacher", "llama-xs", "bpe1k-a"),
    Entry("r1", "reference", "independent_arch", "neox-xs", "bpe1k-a"),
    Entry("t1-seq_kd", "suspect", "seq_kd", "llama-xs", "bpe1k-a", parent="t1"),
)

_SMALL = (
    Entry("t1", "teacher", "teacher", "llama-s", "bpe2k-a"),
    Entry("t2", "teacher", "teacher", "neox-s", "bpe3k-a"),
    Entry("r1", "reference", "independent_seed", "llama-s", "bpe2k-a"),
    Entry("r2", "reference", "independent_arch", "neox-s", "bpe2k-a"),
    Entry("r3", "reference", "independent_arch", "gpt2-s", "bpe1k-a"),
    Entry("r4", "reference", "independent_seed", "neox-s", "bpe3k-a"),
    Entry("r5", "reference", "independent_arch", "llama-s", "bpe1k-a"),
    # two more architecture x tokenizer pairs (as the full zoo's r7): 7 references give the
    # t prediction test 6 degrees of freedom instead of 4
    Entry("r6", "reference", "independent_arch", "llama-s", "bpe3k-a"),
    Entry("r7", "reference", "independent_arch", "gpt2-s", "bpe2k-a"),
    Entry("i1", "suspect", "independent_seed", "llama-s", "bpe2k-a"),
    *_students("t1", "llama-s", "bpe2k-a", "neox-s", "bpe1k-a", ("logit_kd", "seq_kd")),
)

_FULL = (
    Entry("t1", "teacher", "teacher", "llama-m", "bpe2k-a"),
    Entry("t2", "teacher", "teacher", "neox-m", "bpe3k-a"),
    Entry("t3", "teacher", "teacher", "gpt2-m", "bpe2k-t"),
    # references: the teachers' own configs with other seeds, other archs, tokenizers, data
    Entry("r1", "reference", "independent_seed", "llama-m", "bpe2k-a"),
    Entry("r2", "reference", "independent_seed", "neox-m", "bpe3k-a"),
    Entry("r3", "reference", "independent_seed", "gpt2-m", "bpe2k-t"),
    Entry("r4", "reference", "independent_data", "llama-s", "bpe2k-t", data="thirdparty"),
    Entry("r5", "reference", "independent_arch", "neox-s", "bpe2k-a"),
    Entry("r6", "reference", "independent_arch", "gpt2-s", "bpe1k-a"),
    Entry("r7", "reference", "independent_arch", "llama-s", "bpe3k-a"),
    Entry("r8", "reference", "independent_arch", "neox-s", "bpe1k-a"),
    # independent suspects: the students' own configs (hardest nulls), other archs and data
    Entry("i1", "suspect", "independent_seed", "llama-s", "bpe2k-a"),
    Entry("i2", "suspect", "independent_seed", "neox-s", "bpe3k-a"),
    Entry("i3", "suspect", "independent_seed", "gpt2-s", "bpe2k-t"),
    Entry("i4", "suspect", "independent_data", "llama-s", "bpe2k-t", data="thirdparty"),
    Entry("i5", "suspect", "independent_arch", "neox-s", "bpe1k-a"),
    Entry("i6", "suspect", "independent_seed", "llama-m", "bpe2k-a"),
    *_students("t1", "llama-s", "bpe2k-a", "neox-s", "bpe1k-a"),
    *_students("t2", "neox-s", "bpe3k-a", "llama-s", "bpe2k-a"),
    *_students("t3", "gpt2-s", "bpe2k-t", "llama-s", "bpe3k-a"),
    *_calibration_nulls(),
)

# References get the same budget as suspects, so that they are fair draws from the null.
# Teachers sample their sequence-KD text at temperature 0.7, as API users typically do.
SIZES: dict[str, Size] = {
    "micro": Size(40_000, 30_000, 30_000, 30_000, 20_000, 2_000, 16, 40, _MICRO),
    "small": Size(800_000, 500_000, 500_000, 400_000, 500_000, 0, 64, 300, _SMALL,
                  temperature=0.7),
    "full": Size(1_200_000, 600_000, 600_000, 400_000, 900_000, 200_000, 128, 400, _FULL,
                 temperature=0.7),
}
