"""Searches: they find known solutions, keep to their budgets and widths, batch problems, save their trees."""

import json

import pytest

from qstar.errors import BackendError, QstarError
from qstar.io import load_trees, save_trees
from qstar.pipelines.evaluate import check_no_leak, evaluate
from qstar.scorers import CheckerScorer, RolloutScorer, VerifierScorer
from qstar.search import SEARCHES, get_search, run_search
from qstar.tasks import get_task
from qstar.tasks.countdown import Countdown, make_problem, solve
from tests.scripted import ScriptedPolicy

TASK = Countdown()
# small problems with few solutions among many legal plays; greedy (first legal move) fails on each
SMALL = [
    make_problem(f"s{i}", nums, t) for i, (nums, t) in enumerate([([1, 2, 3], 9), ([2, 5, 6], 17), ([3, 5, 7], 8)])
]
SEARCHING = sorted(set(SEARCHES) - {"greedy", "self-consistency"})  # a majority vote need not find it


def test_small_problems_are_hard_for_greedy_but_solvable():
    for p in SMALL:
        assert solve(p.meta["numbers"], p.meta["target"])
    trees = run_search(get_search("greedy"), SMALL, TASK, ScriptedPolicy())
    assert not any(t.solved for t in trees)


@pytest.mark.parametrize("name", SEARCHING)
def test_every_search_finds_the_known_solution(name):
    """The verifier scorer prunes nothing legal and accepts only a real solution, so a wide enough search finds it."""
    policy = ScriptedPolicy(seed=1)
    scorer = VerifierScorer(TASK)
    wide = {
        "beam": {"k": 16, "width": 16},
        "sample": {"n": 300},
        "best-of-n": {"n": 300},
        "dvts": {"subtrees": 16, "k": 16},
    }
    search = get_search(name, **wide.get(name, {"k": 16}))
    trees = run_search(search, SMALL, TASK, policy, scorer, budget=50_000)
    assert all(t.solved for t in trees), [t.best_path() for t in trees]
    for t in trees:
        assert TASK.verify(t.problem, [s.text for s in t.answer.path()])


def test_self_consistency_votes_for_the_most_common_answer():
    policy = ScriptedPolicy(seed=0)
    problem = make_problem("p", [2, 3], 5)  # moves: 3+2=5, 3*2=6, 3-2=1: each answer about a third
    (tree,) = run_search(get_search("self-consistency", n=30), [problem], TASK, policy)
    finals = [n for n in tree.nodes() if n.terminal]
    assert len(finals) == 3
    votes = {n.texts()[0]: 0 for n in finals}
    # the tree merges repeated steps, so count proposals by re-drawing with the same seed
    policy.seed(0)
    for (step,) in policy.propose(["Input: 2 3 Target: 5\n"] * 30, n=1, temperature=1.0):
        votes[step.text] = votes.get(step.text, 0) + 1
    assert tree.answer.texts()[0] == max(votes, key=votes.get)


def test_rollout_values():
    policy = ScriptedPolicy(seed=5)
    problem = make_problem("p", [1, 2, 3], 9)
    scores = RolloutScorer(TASK, policy, k=20).score(
        [problem] * 4,
        [
            ["2 + 1 = 3 (left: 3 3)"],
            ["3 - 1 = 2 (left: 2 2)"],
            ["bad"],
            ["2 + 1 = 3 (left: 3 3)", "3 * 3 = 9 (left: 9)"],
        ],
    )
    good, hopeless, illegal, done = scores.values
    assert 0 < good < 1 and hopeless == 0 and illegal == 0 and done == 1
    assert scores.tokens[0] > 0 and scores.tokens[2] == scores.tokens[3] == 0
    assert RolloutScorer(TASK, policy, k=20).max_tokens(problem, ["2 + 1 = 3 (left: 3 3)"]) == 20 * 1 * 40


@pytest.mark.parametrize("name", sorted(SEARCHES))
@pytest.mark.parametrize("budget", [30, 150, 700])
def test_budgets_are_never_exceeded(name, budget):
    policy = ScriptedPolicy(seed=2, junk=0.2)
    problems = [make_problem("p", [4, 9, 10, 13], 24), *SMALL]
    trees = run_search(get_search(name), problems, TASK, policy, RolloutScorer(TASK, policy, k=3), budget=budget)
    for tree in trees:
        assert tree.tokens <= budget
        assert tree.tokens >= sum(n.step.tokens for n in tree.nodes() if n.step)  # repeated steps merge


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_a_search_the_budget_cut_short_says_so(name):
    """A budget that pays for one step of each path at most leaves a three-step problem's answer partial, and the
    tree says the budget ran out; with room to spare, or no budget, the tree does not say so."""
    problem = make_problem("p", [4, 9, 10, 13], 24)  # three steps to an answer
    policy, scorer = ScriptedPolicy(seed=2), VerifierScorer(TASK)  # prunes nothing legal
    search = get_search(name)
    cap = policy.max_step_tokens
    (first,) = run_search(search, [problem], TASK, policy, scorer)  # the search's own limits only
    assert not first.out_of_budget and not first.unfinished
    width = getattr(search, "root_k", None) or getattr(search, "subtrees", None) or getattr(search, "k", 1)  # first
    (short,) = run_search(search, [problem], TASK, policy, scorer, budget=cap * width + cap - 1)
    assert short.calls > 0 and short.out_of_budget
    assert short.unfinished == (short.answer is None or not short.answer.terminal)
    assert short.unfinished or short.answer.terminal
    if name in ("greedy", "beam", "dvts", "dfs", "astar"):  # a second round of proposals costs more than is left
        assert short.unfinished


def test_a_search_that_stops_by_its_own_count_was_not_cut_short():
    """best-of-n with `n` trajectories and budget to spare ends by its count: nothing was refused."""
    problem = make_problem("p", [4, 9, 10, 13], 24)
    policy = ScriptedPolicy(seed=2)
    (tree,) = run_search(get_search("best-of-n", n=3), [problem], TASK, policy, VerifierScorer(TASK), budget=50_000)
    assert tree.calls > 0 and not tree.out_of_budget


def test_mcts_visit_counts_add_up_to_its_simulations():
    search = get_search("mcts", simulations=40, stop_on_solution=False)
    (tree,) = run_search(search, [make_problem("p", [4, 9, 10, 13], 24)], TASK, ScriptedPolicy(), CheckerScorer(TASK))
    assert tree.root.visits == 40
    for node in tree.nodes():
        if node.children and not node.terminal:
            assert node.visits == 1 + sum(c.visits for c in node.children)
        assert node.visits == 0 or node.score is not None
    priors = [c.prior for c in tree.root.children]
    assert abs(sum(priors) - 1) < 1e-9


@pytest.mark.parametrize("name, cap", [("mcts", "simulations"), ("astar", "max_expansions")])
def test_mcts_and_astar_search_until_the_budget_is_spent_unless_capped(name, cap):
    """With a budget and no cap they go on while the budget affords another expansion (a big tree here: scripted
    proposals are distinct legal moves); without a budget, or with a cap, they stop at the cap (64 by default)."""
    problem = make_problem("p", [2, 3, 5, 7, 11, 13], 10**6)  # unsolvable, and too big to explore whole
    policy, scorer = ScriptedPolicy(seed=5), VerifierScorer(TASK)
    (spent,) = run_search(get_search(name), [problem], TASK, policy, scorer, budget=8000)
    (capped,) = run_search(get_search(name, **{cap: 8}), [problem], TASK, policy, scorer, budget=8000)
    (unbudgeted,) = run_search(get_search(name), [problem], TASK, policy, scorer)
    assert 8000 - 4 * policy.max_step_tokens < spent.tokens <= 8000
    assert capped.tokens < spent.tokens and unbudgeted.tokens < spent.tokens


def test_beam_never_keeps_more_than_its_width():
    search = get_search("beam", width=2, k=6)
    policy = ScriptedPolicy(seed=3)
    (tree,) = run_search(search, [make_problem("p", [4, 9, 10, 13], 24)], TASK, policy, RolloutScorer(TASK, policy, 2))
    by_depth: dict[int, int] = {}
    for node in tree.nodes():
        if node.children and node.step is not None:
            by_depth[len(node.path())] = by_depth.get(len(node.path()), 0) + 1
    assert by_depth and max(by_depth.values()) <= 2


def test_dfs_wide_root_and_widening():
    """`root_k` proposals at the root, `k` below; `widen` asks the root again once every open step is explored,
    so an unsolvable problem spends the budget on more first steps instead of stopping early."""
    problem = make_problem("p", [2, 3, 5, 7], 1000)  # unsolvable: every path is explored and fails
    policy = ScriptedPolicy(seed=4)
    scorer = VerifierScorer(TASK)
    narrow = get_search("dfs", root_k=3, k=1, threshold=0.0)
    (tree,) = run_search(narrow, [problem], TASK, policy, scorer, budget=3000)
    assert len(tree.root.children) == 3
    assert all(len(c.children) <= 1 for c in tree.root.children)
    (wide,) = run_search(
        get_search("dfs", root_k=3, k=1, threshold=0.0, widen=True), [problem], TASK, policy, scorer, 3000
    )
    assert len(wide.root.children) > 3 and tree.tokens < wide.tokens <= 3000
    # a budget below `root_k` first steps buys as many as it affords (here 500 // 40 = 12 of 16), not none
    (small,) = run_search(get_search("dfs-wide"), [problem], TASK, policy, scorer, budget=500)
    assert 0 < small.tokens <= 500 and 1 <= len(small.root.children) <= 12
    wide = get_search("dfs-wide")
    assert wide.widen and wide.distinct and wide.root_k > wide.k


def test_distinct_proposals_give_the_root_k_different_children_where_the_policy_can(shipped_policy):
    """`distinct`: the tiny policy samples a node's proposals without replacement, so 16 proposals are 16
    children where ordinary samples repeat; a policy that cannot (no `distinct` in its `propose`) samples as
    before and the search runs."""
    task = get_task("game24")
    problems = task.problems("test")[:4]
    scorer = VerifierScorer(task)
    children = {}
    for distinct in (False, True):
        search = get_search("dfs", root_k=16, threshold=0.0, max_expansions=1, distinct=distinct)
        trees = run_search(search, problems, task, shipped_policy, scorer, seed=0)
        children[distinct] = [len(t.root.children) for t in trees]
    assert children[True] == [16] * 4 and max(children[False]) < 16
    search = get_search("dfs", root_k=3, k=1, threshold=0.0, distinct=True)
    (tree,) = run_search(search, SMALL[:1], TASK, ScriptedPolicy(seed=4), VerifierScorer(TASK), budget=3000)
    assert len(tree.root.children) == 3 and tree.solved


def test_astar_rejects_unknown_aggregation():
    with pytest.raises(QstarError, match="aggregation"):
        get_search("astar", aggregation="mean")


def test_batching_across_problems_changes_nothing_for_a_deterministic_search(shipped_policy):
    task = get_task("game24")
    problems = task.problems("test")[:12]
    one = run_search(get_search("greedy"), problems, task, shipped_policy, batch_size=1)
    many = run_search(get_search("greedy"), problems, task, shipped_policy, batch_size=64)
    assert [t.answer.texts() for t in one] == [t.answer.texts() for t in many]
    assert [t.tokens for t in one] == [t.tokens for t in many]


def test_trees_round_trip_through_the_saved_file(tmp_path):
    policy = ScriptedPolicy(seed=4, junk=0.1)
    trees = run_search(get_search("mcts", simulations=10), SMALL, TASK, policy, RolloutScorer(TASK, policy, 2))
    path = tmp_path / "trees.jsonl.gz"
    save_trees(path, trees, search="mcts")
    again = load_trees(path)
    assert [t.to_dict() for t in again] == [t.to_dict() for t in trees]
    assert [t.solved for t in again] == [t.solved for t in trees]
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed into place


def test_seeds_give_a_spread_and_evaluation_refuses_a_leaking_verifier():
    policy = ScriptedPolicy()
    result, runs = evaluate(TASK, SMALL, policy, get_search("sample", n=1), seeds=4, show_progress=False)
    assert len(runs) == 4 and result.seeds == 4 and 0 <= result.accuracy_std <= 0.5
    leaky = Countdown()
    leaky.verifier_needs_reference = True
    with pytest.raises(QstarError, match="reference answer"):
        check_no_leak(leaky, VerifierScorer(leaky))
    check_no_leak(leaky, CheckerScorer(leaky))


@pytest.mark.slow
def test_compare_end_to_end_with_the_real_policy(qstar, tmp_path):
    args = ["compare", "--task", "game24", "--split", "test", "--limit", "4", "--seeds", "2", "--out", str(tmp_path)]
    args += ["--searches", "greedy,beam,mcts", "--budgets", "300,900", "--scorer", "rollouts"]
    args += ["--scorer-args", '{"k": 2}', "--search-args", '{"mcts": {"simulations": 2}}']
    out = qstar(*args, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = json.loads((tmp_path / "compare.json").read_text())
    assert [(r["search"], r["budget"]) for r in rows] == [
        (s, b) for s in ("greedy", "beam", "mcts") for b in (300, 900)
    ]
    for r in rows:
        assert r["n"] == 4 and r["seeds"] == 2 and r["tokens_per_problem"] <= r["budget"]
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "compare.md").read_text()
    assert "| beam | 900 |" in md and md.startswith("qstar compare, game24/test, 4 problems, scorer rollouts:")
    assert "| legal steps | cut short |" in md  # beam at 300 was cut short
    assert {(r["task"], r["problems"], r["policy"], r["scorer"]) for r in rows} == {
        ("game24", "game24/test", "tiny", "rollouts")
    }
    assert "mcts" in out.stdout
    beam = {r["budget"]: r["unfinished"] for r in rows if r["search"] == "beam"}
    assert beam[300] > 0 and "short" in out.stdout  # the budget pays for a step or two; the table's `cut short`
    assert [r["search_args"] for r in rows if r["search"] == "mcts"] == [{"simulations": 2}] * 2


class FlakyPolicy(ScriptedPolicy):
    """Fails for good on every prefix of one problem (as a backend whose retries ran out), answers the rest.
    The real OpenAI backend's faults are tested against a real HTTP server in tests/test_openai_policy.py."""

    def __init__(self, broken: str):
        super().__init__()
        self.broken = broken

    def propose(self, prefixes, n=1, temperature=0.0):
        steps = super().propose(prefixes, n, temperature)
        failed = {i: "server error 500" for i, p in enumerate(prefixes) if p.startswith(f"Input: {self.broken} ")}
        if failed:
            raise BackendError(failed, [None if i in failed else s for i, s in enumerate(steps)])
        return steps


@pytest.mark.parametrize("name", ["best-of-n", "beam", "mcts"])
def test_a_problem_whose_backend_fails_is_recorded_and_the_others_go_on(name):
    task = Countdown()
    problems = [make_problem(str(i), numbers, 24) for i, numbers in enumerate([[4, 6, 1, 1], [3, 8, 1, 1], [2, 12]])]
    search = get_search(name)
    trees = run_search(search, problems, task, FlakyPolicy(broken="3 8 1 1"), VerifierScorer(task), budget=800)
    assert [t.error for t in trees] == [None, "server error 500", None]
    assert trees[0].tokens > 0 and trees[2].tokens > 0 and not trees[1].solved
    result, _ = evaluate(task, problems, FlakyPolicy(broken="3 8 1 1"), search, CheckerScorer(task), 800)
    assert result.failed == 1 and result.n == 3


def test_the_rollout_scorer_reports_the_paths_whose_rollouts_failed():
    """A backend failing some items under the rollout scorer: those paths fail with the reason, the others are
    valued, and in a search only the problem whose rollouts failed ends, with its error recorded."""
    task = Countdown()
    problems = [make_problem(str(i), numbers, 24) for i, numbers in enumerate([[4, 6, 1, 1], [3, 8, 1, 1], [2, 12]])]
    scorer = RolloutScorer(task, FlakyPolicy(broken="3 8 1 1"), k=2)
    with pytest.raises(BackendError) as caught:
        scorer.score(problems, [["4 * 6 = 24 (left: 1 1 24)"], ["3 * 8 = 24 (left: 1 1 24)"], []])
    assert caught.value.failed == {1: "server error 500"}
    scores = caught.value.results
    assert len(scores) == 3 and all(0 <= v <= 1 for v in scores.values) and scores.tokens[0] > 0 < scores.tokens[2]
    trees = run_search(get_search("beam", width=2, k=2), problems, task, ScriptedPolicy(), scorer, budget=2000)
    assert [t.error for t in trees] == [None, "server error 500", None]
    assert trees[0].tokens > 0 and trees[2].tokens > 0


def test_evaluate_seeds_start_at_the_seed_given():
    """`qstar eval --seed 1` searches as the second run of `--seeds 2` does, not as seed 0 again."""
    search = get_search("sample", n=2)
    _, two = evaluate(TASK, SMALL, ScriptedPolicy(), search, seeds=2, show_progress=False)
    _, (one,) = evaluate(TASK, SMALL, ScriptedPolicy(), search, seed=1, show_progress=False)
    trees = lambda run: [t.to_dict() for t in run]  # noqa: E731
    assert trees(one) == trees(two[1]) != trees(two[0])
