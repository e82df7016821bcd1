"""The value model read through the lean decoder and a prefix cache gives the HF forward's readings."""

import pytest
from transformers import GPT2Config, GPT2ForTokenClassification

from qstar.models import step_probabilities
from qstar.scorers.prm import PRMScorer
from qstar.scorers.value import ValueScorer
from qstar.scorers.value_reader import CachedValueReader
from qstar.tasks import get_task

TASK = get_task("game24")
FIRST = ["4 + 6 = 10 (left: 1 1 10)", "1 * 1 = 1 (left: 1 4 6)", "6 - 4 = 2 (left: 1 1 2)"]
SECOND = ["10 + 1 = 11 (left: 1 11)", "1 * 4 = 4 (left: 4 6)"]


@pytest.fixture(scope="module")
def scorer():
    return ValueScorer(TASK, ground_truth=False)  # the shipped tiny-value, a Llama token classifier


def reference(scorer, problems, paths):
    prompts = [TASK.render(p, []) for p in problems]
    readings = step_probabilities(scorer.model, scorer.tokenizer, prompts, paths, TASK.separator)
    return [steps[-1] for steps in readings]


def test_readings_equal_the_hf_forward_and_later_paths_reuse_earlier_ones(scorer):
    problems = TASK.problems("test", 4)
    reader = CachedValueReader(scorer.model, scorer.tokenizer, TASK.separator)
    first = [(p, [step]) for p in problems for step in FIRST] + [(problems[0], [])]
    second = [(p, [FIRST[i], step]) for p in problems for i in range(2) for step in SECOND]
    for batch in (first, second):
        problems_, paths = [p for p, _ in batch], [path for _, path in batch]
        asked, computed = reader.asked, reader.computed
        got = reader.read([TASK.render(p, []) for p in problems_], paths, batch_size=5)
        assert got == pytest.approx(reference(scorer, problems_, paths), abs=1e-5)
        new_tokens = reader.computed - computed
        assert new_tokens < reader.asked - asked  # a prompt runs once for its paths, a parent once for its children
    # a second step's path costs about its own step: its parent's keys and values were kept
    assert new_tokens <= len(second) * (max(map(len, SECOND)) + 2)


def test_the_scorer_reads_through_the_cache_and_agrees_with_the_model(scorer):
    problems = TASK.problems("test", 3)
    paths = [[FIRST[0]], [FIRST[1], SECOND[1]], []]
    assert scorer.reader is not None
    assert scorer.values(problems, paths) == pytest.approx(reference(scorer, problems, paths), abs=1e-5)


def test_a_llama_prm_reads_every_step_through_the_cache_as_the_hf_forward_does():
    problems = TASK.problems("test", 3)
    paths = [[FIRST[0], SECOND[0]], [FIRST[1], SECOND[1]], [FIRST[0]], []]
    problems = [problems[0], problems[1], problems[0], problems[2]]
    cached, whole = PRMScorer(TASK), PRMScorer(TASK, prefix_cache_mb=0)  # the shipped tiny-value as a PRM
    assert cached.reader is not None and whole.reader is None
    expected = whole.step_rewards(problems, paths)
    assert [len(r) for r in expected] == [2, 2, 1, 1]
    got = cached.step_rewards(problems, paths)
    assert [len(r) for r in got] == [2, 2, 1, 1]
    for rewards, reference_rewards in zip(got, expected, strict=True):
        assert rewards == pytest.approx(reference_rewards, abs=1e-5)
    # the first path's first step is the third path: read once, and each second step computes about its own tokens
    assert cached.reader.computed < cached.reader.asked
    assert cached.score(problems, paths).values == pytest.approx(whole.score(problems, paths).values, abs=1e-5)


def test_other_architectures_are_read_by_the_hf_forward():
    gpt2 = GPT2ForTokenClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, num_labels=2))
    assert not CachedValueReader.supports(gpt2)


def test_a_path_longer_than_the_scoring_model_s_context_fails_alone(scorer):
    """A path past the model's 256 positions was an IndexError deep in the forward pass, failing every search of
    the batch; now it fails its own search with the reason, and the other paths keep their scores."""
    from qstar.errors import BackendError

    problems = TASK.problems("test", 2)
    long = [FIRST[0], *SECOND * 10]  # about 280 tokens with the prompt
    for model, what in ((scorer, "value model"), (PRMScorer(TASK), "PRM")):
        with pytest.raises(BackendError) as caught:
            model.score(problems, [[FIRST[0]], long])
        assert list(caught.value.failed) == [1] and f"the {what}'s context of 256 tokens" in caught.value.failed[1]
        assert caught.value.results.values[0] == pytest.approx(model.score(problems[:1], [[FIRST[0]]]).values[0])
