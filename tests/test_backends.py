"""Access-mode views on a fake backend, and the local backend on a tiny random model."""

import math

import numpy as np
import pytest

from lineage.backends import AccessMode, Sample, Usage, view
from lineage.errors import AccessModeError, BudgetExceededError, InvalidArgumentError


class FakeBackend:
    """Returns fixed samples with logprobs; counts queries like a real backend."""

    identity = {"kind": "fake"}
    capabilities = frozenset(AccessMode)

    def __init__(self, max_queries=None):
        self.usage = Usage(max_queries=max_queries)

    def sample(self, prompts, *, n, max_new_tokens, temperature, seed, top_logprobs=0):
        self.usage.reserve(n * len(prompts))
        return [[Sample(" the end", 2, (-0.1, -0.2), ({" the": -0.1},) * 2)] * n for _ in prompts]

    def word_distribution(self, prompts, buckets):
        self.usage.reserve(len(prompts))
        return [[0.5] + [0.0] * (len(b) - 1) for b in buckets]

    def score(self, prompts, continuations):
        return [-1.0] * len(prompts)


def test_text_view_strips_logprobs_and_refuses_logits():
    v = view(FakeBackend(), "text")
    s = v.sample(["a"], n=2, max_new_tokens=4, top_logprobs=5)[0][0]
    assert s.text == " the end" and s.token_logprobs is None and s.top_logprobs is None
    with pytest.raises(AccessModeError):
        v.word_distribution(["a"], [["the"]])
    with pytest.raises(AccessModeError):
        v.score(["a"], ["b"])
    with pytest.raises(AccessModeError):
        v.score_tempered(["a"], ["b"], (0.5,))


def test_logprobs_view_caps_k_and_refuses_logits():
    v = view(FakeBackend(), "logprobs")
    with pytest.raises(InvalidArgumentError):
        v.sample(["a"], n=1, max_new_tokens=4, top_logprobs=21)
    assert v.sample(["a"], n=1, max_new_tokens=4, top_logprobs=20)[0][0].token_logprobs
    with pytest.raises(AccessModeError):
        v.word_distribution(["a"], [["the"]])


def test_view_refuses_mode_backend_lacks():
    b = FakeBackend()
    b.capabilities = frozenset({AccessMode.TEXT})
    with pytest.raises(AccessModeError):
        view(b, "full")
    with pytest.raises(InvalidArgumentError):
        view(b, "everything")


def test_budget_is_a_hard_cap():
    b = FakeBackend(max_queries=5)
    v = view(b, "text")
    v.sample(["a", "b"], n=2, max_new_tokens=1)
    assert b.usage.queries == 4
    with pytest.raises(BudgetExceededError):
        v.sample(["a", "b"], n=1, max_new_tokens=1)
    assert b.usage.queries == 4  # a refused request costs nothing


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tinymodels import make_tiny_model

    from lineage.backends.local_hf import LocalHFBackend

    return LocalHFBackend(make_tiny_model(tmp_path_factory.mktemp("tiny") / "m"))


def test_local_sampling_is_seeded_and_counted(tiny):
    before = tiny.usage.queries
    a = tiny.sample(["Return the", "Get"], n=3, max_new_tokens=6, temperature=1.0, seed=7)
    b = tiny.sample(["Return the", "Get"], n=3, max_new_tokens=6, temperature=1.0, seed=7)
    assert [[s.text for s in r] for r in a] == [[s.text for s in r] for r in b]
    assert tiny.usage.queries - before == 12
    assert all(1 <= s.n_tokens <= 6 for r in a for s in r)


def test_local_logprobs_agree_with_score(tiny):
    """The logprob of a sampled continuation equals what `score` computes for it."""
    out = tiny.sample(["Return the"], n=1, max_new_tokens=5, temperature=1.0, seed=3,
                      top_logprobs=4)[0][0]
    assert len(out.top_logprobs) == out.n_tokens
    assert all(len(t) <= 4 for t in out.top_logprobs)
    ids = tiny.tokenizer(out.text, add_special_tokens=False)["input_ids"]
    if len(ids) == out.n_tokens:  # re-tokenisation can differ from the sampled ids; skip then
        assert tiny.score(["Return the"], [out.text])[0] == pytest.approx(
            sum(out.token_logprobs), abs=1e-3)


def test_tempered_score_is_the_sharpened_models_likelihood(tiny):
    """score_tempered at tau equals the span's log-probability under logits / tau, computed
    here directly from one forward pass; tau 1 is `score`; bad temperatures are refused."""
    import torch

    prompts = ["Return the", "Get"]
    conts = [" value of the key", " lines"]
    got = np.asarray(tiny.score_tempered(prompts, conts, (1.0, 0.5)))
    assert got.shape == (2, 2)
    np.testing.assert_allclose(got[:, 0], tiny.score(prompts, conts), atol=1e-4)
    for i, (p, c) in enumerate(zip(prompts, conts)):
        pid = tiny._encode(p)
        cid = tiny._encode_cont(c)
        ids = torch.tensor([pid + cid])
        with torch.inference_mode():
            logits = tiny.model(input_ids=ids).logits.float()[0] / 0.5
        lp = torch.log_softmax(logits, -1)
        want = sum(float(lp[len(pid) - 1 + k, t]) for k, t in enumerate(cid))
        assert got[i, 1] == pytest.approx(want, abs=1e-3)
    assert (got[:, 1] < got[:, 0]).any() or (got[:, 1] > got[:, 0]).any()
    for bad in ((), (0.0,), (1.0,) * 9, (6.0,)):
        with pytest.raises(InvalidArgumentError):
            tiny.score_tempered(prompts, conts, bad)


def test_word_distribution_is_a_subprobability(tiny):
    d = tiny.word_distribution(["Return the", "Get"], [["value", "sum", "(", "the"]] * 2)
    assert all(0.0 <= x <= 1.0 for row in d for x in row)
    assert all(sum(row) <= 1.0 + 1e-9 for row in d)
    assert not any(math.isnan(x) for row in d for x in row)


def test_batched_score_equals_one_by_one(tiny):
    prompts = ["Return the", "This function computes", "Get"]
    conts = [" value of the key", " the sum", " lines and more lines"]
    batched = tiny.score(prompts, conts)
    single = [tiny.score([p], [c])[0] for p, c in zip(prompts, conts)]
    assert batched == pytest.approx(single, abs=1e-4)


def test_shared_prefix_word_distribution_equals_one_sequence_per_bucket(tiny):
    # multi-token buckets of different lengths, and a prompt long enough that it must be
    # truncated per bucket (that one takes the per-sequence path)
    words = ["value", "sum", "(", "the", "instance", "a", "bytes"]
    long = "Return the value " * (tiny.max_len // 3)
    prompts = ["Return the", "This function computes", "Get", long]
    shared = tiny.word_distribution(prompts, [words] * len(prompts))
    tiny._shared_ok = False
    try:
        single = tiny.word_distribution(prompts, [words] * len(prompts))
    finally:
        tiny._shared_ok = True
    assert [len(tiny._encode_cont(" " + w)) for w in words] != [1] * len(words)
    np.testing.assert_allclose(shared, single, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("arch", ["llama", "gpt_neox", "gpt2", "mistral", "qwen2"])
def test_tree_mask_pass_equals_cache_path_and_one_sequence_per_bucket(tmp_path, arch):
    """The one-pass tree layout (`_tree_logprobs`) against the KV-cache path and the plain
    per-sequence path, on each architecture it is enabled for."""
    from tinymodels import make_tiny_model

    from lineage.backends.local_hf import TREE_MODEL_TYPES, LocalHFBackend

    assert arch in TREE_MODEL_TYPES
    b = LocalHFBackend(make_tiny_model(tmp_path / arch, arch=arch, seed=3), device="cpu")
    assert b._tree
    words = ["value", "sum", "(", "the", "instance", "a", "bytes", "lines"]
    prompts = ["Return the", "This function computes the sum of", "Get", "Raise an error if"]
    got = {}
    for name, tree, shared in [("tree", True, True), ("cache", False, True),
                               ("single", False, False)]:
        b._tree, b._shared_ok = tree, shared
        got[name] = np.asarray(b.word_distribution(prompts, [words] * len(prompts)))
    from lineage.backends import local_hf

    b._tree, b._shared_ok = True, True
    small = local_hf.MAX_BATCH_TOKENS
    local_hf.MAX_BATCH_TOKENS = 60  # several groups, one prompt each at most
    try:
        got["tree_groups"] = np.asarray(b.word_distribution(prompts, [words] * len(prompts)))
    finally:
        local_hf.MAX_BATCH_TOKENS = small
    np.testing.assert_allclose(got["tree_groups"], got["tree"], rtol=1e-5, atol=1e-9)
    # the logits bound shrinks the groups with the vocabulary the same way
    cap = local_hf.MAX_LOGITS
    local_hf.MAX_LOGITS = 60 * b._boundary().shape[0]
    budgets = []
    b._batches = lambda lengths, budget=None: (budgets.append(budget),
                                               LocalHFBackend._batches(lengths, budget))[1]
    try:
        got["tree_capped"] = np.asarray(b.word_distribution(prompts, [words] * len(prompts)))
    finally:
        local_hf.MAX_LOGITS = cap
        del b._batches
    assert budgets == [60]
    np.testing.assert_allclose(got["tree_capped"], got["tree"], rtol=1e-5, atol=1e-9)
    assert got["tree"].min() > 0
    np.testing.assert_allclose(got["tree"], got["single"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got["cache"], got["single"], rtol=1e-4, atol=1e-7)


def test_sliding_window_model_keeps_its_window(tmp_path):
    """A Mistral whose window is shorter than prompt + continuation must not take the tree
    pass (its custom mask would let a continuation see past the window)."""
    from tinymodels import make_tiny_model

    from lineage.backends.local_hf import LocalHFBackend

    b = LocalHFBackend(make_tiny_model(tmp_path / "m", arch="mistral", seed=5,
                                       sliding_window=4), device="cpu")
    assert b._tree and b._window == 4
    words = ["value", "sum", "(", "the"]
    prompts = ["Return the value of the given key", "This function computes the sum of"]
    got = np.asarray(b.word_distribution(prompts, [words] * 2))
    b._shared_ok = False
    single = np.asarray(b.word_distribution(prompts, [words] * 2))
    np.testing.assert_allclose(got, single, rtol=1e-4, atol=1e-7)
    b._shared_ok, b._window = True, None  # forcing the tree pass shows what the guard prevents
    forced = np.asarray(b.word_distribution(prompts, [words] * 2))
    assert not np.allclose(forced, single, rtol=1e-4, atol=1e-7)


def test_reopening_a_local_model_reuses_the_loaded_weights(tmp_path, monkeypatch):
    """The loaded-model cache: the same directory and weights load once; new weights (another
    hash) load again; each open still gets its own query budget."""
    from tinymodels import make_tiny_model

    from lineage.backends import local_hf

    local_hf.LOADED.clear()
    loads = []
    orig = local_hf.LocalHFBackend._load

    def counting(self, *a):
        loads.append(self.path)
        return orig(self, *a)

    monkeypatch.setattr(local_hf.LocalHFBackend, "_load", counting)
    a_dir = make_tiny_model(tmp_path / "a", seed=1)
    a1 = local_hf.LocalHFBackend(a_dir, max_queries=3)
    a2 = local_hf.LocalHFBackend(a_dir, max_queries=5)
    assert len(loads) == 1 and a2.model is a1.model
    assert (a1.usage.max_queries, a2.usage.max_queries) == (3, 5)
    a2.sample(["x"], n=2, max_new_tokens=2, temperature=1.0, seed=0)
    assert (a1.usage.queries, a2.usage.queries) == (0, 2)
    make_tiny_model(tmp_path / "a", seed=2)  # other weights in the same directory
    a3 = local_hf.LocalHFBackend(a_dir)
    assert len(loads) == 2 and a3.model is not a1.model
    assert a3.identity["sha256"] != a1.identity["sha256"]


def test_model_cache_keeps_nothing_over_its_byte_budget(tmp_path, monkeypatch):
    from tinymodels import make_tiny_model

    from lineage.backends import local_hf

    local_hf.LOADED.clear()
    monkeypatch.setattr(local_hf, "MODEL_CACHE_BYTES", 1000)  # smaller than any model
    d = make_tiny_model(tmp_path / "m", seed=1)
    b1, b2 = local_hf.LocalHFBackend(d), local_hf.LocalHFBackend(d)
    assert b1.model is not b2.model


def test_first_opens_from_many_threads_do_not_race_on_import(tmp_path):
    """transformers' lazy module failed with ImportError when a fresh process (a server's
    first concurrent scans) opened local models from several threads at once."""
    import subprocess
    import sys

    from tinymodels import make_tiny_model

    d = make_tiny_model(tmp_path / "m", seed=3)
    code = (
        "import sys, threading\n"
        "from lineage.backends.local_hf import LocalHFBackend\n"
        "errs = []\n"
        "def go():\n"
        "    try: LocalHFBackend(sys.argv[1])\n"
        "    except Exception as e: errs.append(repr(e))\n"
        "ts = [threading.Thread(target=go) for _ in range(8)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "print(len(errs)); print(errs[:1])\n")
    out = subprocess.run([sys.executable, "-c", code, str(d)], capture_output=True, text=True,
                         timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[0] == "0", out.stdout


def test_reopening_a_model_reuses_its_word_boundary_mask(tmp_path):
    """The mask (one decode per vocabulary token) is built once per weights, not per open."""
    from tinymodels import make_tiny_model

    from lineage.backends.local_hf import LocalHFBackend

    d = make_tiny_model(tmp_path / "m", seed=7)
    a = LocalHFBackend(d, device="cpu")
    m = a._boundary()
    b = LocalHFBackend(d, device="cpu")
    assert b._boundary_mask is m and b._boundary() is m
