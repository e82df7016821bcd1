"""`qstar view`: records land on the nodes that made them, the page is self-contained and safe from its step texts, and
in a real headless Chromium it opens without errors, expands on click, highlights the chosen path and opens a tree
of 5,000 nodes in under 2 s."""

import contextlib
import io
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from qstar.errors import QstarError
from qstar.io import load_trees, save_trees, write_jsonl
from qstar.pipelines.view import match_records, view
from qstar.pipelines.view import page as html_page
from qstar.records import preference_records, search_target_records, sft_records, value_records
from qstar.tasks import get_task
from qstar.tasks.countdown import make_problem
from qstar.types import Problem, Step, Tree

TASK = get_task("game24")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EVIL = "</script><script>alert(1)</script><!-- <script>"


def hand_tree(pid: str = "p1", numbers: tuple[int, ...] = (4, 9, 10, 13)) -> tuple[Tree, dict]:
    """root -> a -> a1 -> win (verified) | a -> a2 -> lose | root -> b -> b1 -> b2; the answer is `win`."""
    tree = Tree(make_problem(pid, list(numbers), 24), tokens=120, calls=9)
    n = {"root": tree.root}
    for name, parent, text, end in [
        ("a", "root", "13 - 9 = 4 (left: 4 10 4)", None),
        ("a1", "a", "10 - 4 = 6 (left: 4 6)", None),
        ("win", "a1", "4 * 6 = 24 (left: 24)", 1.0),
        ("a2", "a", "4 + 4 = 8 (left: 10 8)", None),
        ("lose", "a2", "10 + 8 = 18 (left: 18)", 0.0),
        ("b", "root", "13 + 9 = 22 (left: 4 10 22)", None),
        ("b1", "b", "22 - 10 = 12 (left: 4 12)", None),
        ("b2", "b1", "12 + 4 = 16 (left: 16)", 0.0),
    ]:
        n[name] = n[parent].add_child(Step(text, -0.7, tokens=9), prior=0.5, terminal=end is not None, reward=end)
    tree.answer = n["win"]
    return tree, n


def iteration_records(trees: list[Tree]) -> dict[str, list[dict]]:
    """The records an improve iteration writes from `trees` (hindsight and search targets on)."""
    sft = sft_records(trees, TASK, hindsight=True) + search_target_records(trees, TASK, "hard")
    return {"sft": sft, "value": value_records(trees, TASK, "mc"), "preferences": preference_records(trees, TASK)}


def embedded(html: str) -> dict:
    """The data a page embeds."""
    return json.loads(re.search(r'<script id="qstar-data" type="application/json">(.*?)</script>', html, re.S)[1])


def test_records_land_on_the_nodes_that_made_them():
    tree, n = hand_tree()
    other, _ = hand_tree("p2", (3, 3, 8, 8))  # records of a tree not shown match nothing
    records = iteration_records([tree, other])
    marks = match_records([tree], TASK, **records)
    assert marks[n["win"]] == {"sft": 1, "labels": [1.0]}  # the verified solution, and its value label
    assert marks[n["lose"]] == {"hindsight": 1, "labels": [0.0]}  # the play relabelled with the 18 it reached
    labels = {k: marks[n[k]]["labels"] for k in ("a", "a1", "a2", "b", "b1", "b2")}  # a label per path through
    assert labels == {"a": [0.5, 0.5], "a1": [1.0], "a2": [0.0], "b": [0.0], "b1": [0.0], "b2": [0.0]}
    assert marks[n["root"]]["pairs"] == [(n["a"], n["b"])]  # the pair marks the parent, its steps the children
    assert marks[n["a"]]["pairs"] == [(n["a1"], n["a2"])]
    assert (marks[n["a"]]["chosen"], marks[n["b"]]["rejected"], marks[n["a1"]]["chosen"]) == (1, 1, 1)
    assert marks[n["a"]]["target"] == marks[n["a1"]]["target"] == 1  # search targets on the child they chose
    assert set(marks) == {n[k] for k in ("root", "a", "a1", "win", "a2", "lose", "b", "b1", "b2")}


def write_run(folder: Path, trees: list[Tree]) -> None:
    """An improve run folder of one iteration, as `Improve` lays it out."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"task": "game24"}))
    save_trees(folder / "iter-1" / "trees.jsonl.gz", trees)
    for kind, rows in iteration_records(trees).items():
        write_jsonl(folder / "iter-1" / f"{kind}.jsonl", rows)


def test_view_of_a_run_folder_writes_one_page_with_each_node_records(tmp_path):
    tree, _ = hand_tree()
    write_run(tmp_path / "run", [tree, hand_tree("p2", (3, 3, 8, 8))[0]])
    out = tmp_path / "out" / "tree.html"
    summary = view(tmp_path / "run", problem="p1", output=out)
    assert summary == {
        "output": str(out),
        "iterations": ["iter-1"],
        "problems": 2,
        "nodes": 18,
        "problem": "p1",
        "with_records": 18,
    }
    data = embedded(out.read_text())
    (first, _) = data["trees"]
    assert (first["id"], first["solved"], first["answer"], data["selected"]) == ("p1", True, 3, 0)
    assert first["recs"]["3"]["sft"] == 1 and first["recs"]["0"]["pairs"] == [[1, 6]]  # depth-first node order
    for source in (tmp_path / "run" / "iter-1", tmp_path / "run" / "iter-1" / "trees.jsonl.gz"):
        assert view(source, output=out)["with_records"] == 18
        assert view(source, output=out)["iterations"] == ["iter-1"]
    save_trees(tmp_path / "trees.jsonl.gz", [tree])  # an evaluation's file, in no iteration: named by itself
    assert view(tmp_path / "trees.jsonl.gz", output=out)["iterations"] == ["trees.jsonl.gz"]
    seeded = [{"seed": 3}, {"seed": 4}]  # what `qstar eval --seeds 2 --seed 3 --save-trees` writes
    save_trees(tmp_path / "trees.jsonl.gz", [tree, hand_tree()[0]], seeded, search="beam")
    assert view(tmp_path / "trees.jsonl.gz", output=out)["iterations"] == [
        "trees.jsonl.gz seed 3",
        "trees.jsonl.gz seed 4",
    ]


def test_bad_input_is_a_one_line_error(tmp_path):
    tree, _ = hand_tree()
    save_trees(tmp_path / "trees.jsonl.gz", [tree])
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.jsonl").write_text('{"not": "a tree"}\n')
    for source, problem, message in [
        (tmp_path / "missing", None, "no such file or folder"),
        (tmp_path / "empty", None, "no trees in"),
        (tmp_path / "junk.jsonl", None, "is not a trees file"),
        (tmp_path / "trees.jsonl.gz", "p9", "no problem 'p9' among the trees; they hold p1"),
    ]:
        with pytest.raises(QstarError, match=message) as e:
            view(source, problem, tmp_path / "out.html")
        assert "\n" not in str(e.value)
    assert not (tmp_path / "out.html").exists()


def test_the_page_is_self_contained_and_no_step_text_can_break_it():
    tree, n = hand_tree()
    n["b"].step.text = EVIL
    html = html_page([tree], title="a <title>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert "<script src" not in html and "@import" not in html and "url(" not in html
    assert html.count("</script>") == 2 and "<title>a &lt;title&gt;</title>" in html  # the template's two scripts
    assert embedded(html)["trees"][0]["nodes"][6][1] == EVIL


# ---- in a real headless Chromium --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip(
            "Chromium not found: install it (Debian/Ubuntu: sudo apt-get install chromium) to run qstar view's "
            "browser tests"
        )
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser):
    """Open a page at 1280x800; returns it and the console errors and page errors it logs."""
    pages = []

    def go(path: Path):
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.resolve().as_uri())
        page.wait_for_selector("body[data-drawn]")
        pages.append(page)
        return page, errors

    yield go
    for page in pages:
        page.close()


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """An improve run of two iterations whose trees are real MCTS searches of the rules-only policy (Monte-Carlo
    rollouts as the scorer, as improve's first iteration), with the records `Improve` itself extracts."""
    from qstar.pipelines.improve import Improve
    from qstar.pipelines.improve_config import ImproveConfig
    from qstar.policy import load_policy
    from qstar.scorers import RolloutScorer
    from qstar.search import get_search, run_search

    policy = load_policy("tiny-rules")
    problems = TASK.problems("train")[100:700:100]
    search = get_search("mcts", simulations=32, stop_on_solution=False)
    trees = run_search(search, problems, TASK, policy, RolloutScorer(TASK, policy, 2), budget=4000, seed=0)
    assert 0 < sum(t.solved for t in trees) < len(trees)
    folder = tmp_path_factory.mktemp("runs") / "demo"
    run = Improve(ImproveConfig(search_targets=True), folder)
    for k, part in ((1, trees[:3]), (2, trees)):
        save_trees(run.it(k) / "trees.jsonl.gz", part)
        run.records(k)
    return folder


@pytest.fixture(scope="module")
def run_page(run_folder) -> tuple[Path, dict]:
    """The page of the run, opened on a solved problem of its last iteration, written where `qstar view` writes it
    by default (tree.html in the current folder); its summary."""
    solved = next(t.problem.id for t in load_trees(run_folder / "iter-2" / "trees.jsonl.gz") if t.solved)
    with contextlib.chdir(run_folder.parent):
        summary = view(run_folder.name, problem=solved)
    assert summary["output"] == "tree.html"
    return run_folder.parent / "tree.html", summary


def chosen_path(shown: dict) -> list[int]:
    """The rows of a page's tree from its answer up to the root."""
    path, i = [], shown["answer"]
    while i >= 0:
        path.append(i)
        i = shown["nodes"][i][0]
    return path


@pytest.mark.slow
def test_the_page_opens_with_the_chosen_path_highlighted_and_a_screenshot_that_is_not_blank(open_page, run_page):
    image_module = pytest.importorskip("PIL.Image")
    out, summary = run_page
    page, errors = open_page(out)
    data = embedded(out.read_text())
    shown = data["trees"][data["selected"]]
    assert summary["problem"] == shown["id"] and shown["solved"]
    highlighted = page.eval_on_selector_all("#tree .row.chosen", "rows => rows.map(r => +r.dataset.i)")
    assert sorted(highlighted) == sorted(chosen_path(shown))
    answer = page.locator(f"#tree .row[data-i='{shown['answer']}']")
    assert {"verified", "answer", "sel"} <= set(answer.get_attribute("class").split())
    assert "\u2713" in answer.inner_text() and "SFT" in answer.inner_text()  # verified, and its SFT record drawn
    assert "node" in page.locator("#details").inner_text()
    shot = page.screenshot()
    image = image_module.open(io.BytesIO(shot)).convert("RGB")
    assert image.size == (1280, 800) and len(image.getcolors(1 << 24)) > 20  # not one colour: drawn
    if os.environ.get("QSTAR_VIEW_SCREENSHOT"):  # how the README's screenshot is made
        Path(os.environ["QSTAR_VIEW_SCREENSHOT"]).write_bytes(shot)
    assert errors == []


@pytest.mark.slow
def test_clicking_a_node_expands_it_and_the_keys_move_through_the_tree(open_page, run_page):
    out, _ = run_page
    page, errors = open_page(out)
    i = int(page.locator("#tree li:not(.open):not(.leaf) > .row").first.get_attribute("data-i"))
    closed = page.locator(f"#tree .row[data-i='{i}']")
    shown = embedded(out.read_text())
    shown = shown["trees"][shown["selected"]]
    children = [k for k, row in enumerate(shown["nodes"]) if row[0] == i]
    assert page.locator(f"#tree .row[data-i='{children[0]}']").count() == 0  # not built until opened
    closed.click()
    assert (
        page.eval_on_selector_all(f"#tree .row[data-i='{i}'] + ul > li > .row", "rows => rows.map(r => +r.dataset.i)")
        == children
    )
    assert "sel" in closed.get_attribute("class")
    page.keyboard.press("ArrowDown")
    assert "sel" in page.locator(f"#tree .row[data-i='{children[0]}']").get_attribute("class")
    page.keyboard.press("ArrowLeft")  # to the parent, then closed
    page.keyboard.press("ArrowLeft")
    assert page.locator(f"#tree .row[data-i='{children[0]}']").is_hidden()
    assert errors == []


@pytest.mark.slow
def test_selecting_another_problem_or_iteration_draws_its_tree(open_page, run_page):
    out, _ = run_page
    page, errors = open_page(out)
    data = embedded(out.read_text())
    other = next(
        t for t in data["trees"] if t["group"] == 1 and t["id"] != page.evaluate("document.body.dataset.drawn")
    )
    page.fill("#filter", other["id"])
    assert page.locator("#problems li:not([hidden])").count() == 1
    page.click("#problems li:not([hidden])")
    page.wait_for_selector(f"body[data-drawn='{other['id']}']")
    assert other["prompt"] in page.locator("#tree .row[data-i='0']").inner_text()
    assert page.locator("#tree > li > ul > li").count() == sum(1 for row in other["nodes"] if row[0] == 0)
    page.fill("#filter", "")
    page.select_option("#group", "iter-1")
    assert page.locator("#problems li").count() == 3
    assert errors == []


def big_tree(n: int = 5000) -> Tree:
    """A synthetic tree of `n` nodes, five children under each inner one, its last node the verified answer."""
    tree = Tree(Problem("big", "a synthetic tree"), tokens=9 * n, calls=n)
    nodes = [tree.root]
    for i in range(1, n):
        leaf = 5 * i + 1 >= n
        text = EVIL if i == 1 else f"{i} + 1 = {i + 1} (left: {i + 1})"
        reward = (1.0 if i % 7 == 0 or i == n - 1 else 0.0) if leaf else None
        child = nodes[(i - 1) // 5].add_child(
            Step(text, -0.1 * (i % 9), tokens=9),
            prior=0.2,
            visits=i % 5,
            value_sum=0.1 * (i % 3),
            score=0.5,
            terminal=leaf,
            reward=reward,
            legal=i % 11 != 0,
        )
        nodes.append(child)
    tree.answer = nodes[-1]
    return tree


def test_a_tree_of_5000_nodes_opens_in_under_2_seconds(browser, tmp_path):
    out = tmp_path / "big.html"
    failed = Tree(Problem("failed", "a search whose backend failed"), error="the backend kept failing")
    cut = Tree(Problem("cut", "a search the budget cut short"), tokens=40, calls=1, out_of_budget=True)
    cut.answer = cut.root.add_child(Step("1 + 1 = 2 (left: 2 5)", -0.1, tokens=9))
    save_trees(tmp_path / "big.jsonl.gz", [big_tree(), failed, cut])
    assert view(tmp_path / "big.jsonl.gz", output=out)["nodes"] == 5003
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    start = time.perf_counter()
    page.goto(out.resolve().as_uri())
    page.wait_for_selector("body[data-drawn]")
    seconds = time.perf_counter() - start
    print(f"a tree of 5,000 nodes opened in {seconds:.3f} s")
    assert seconds < 2
    assert page.locator("#tree .row").count() < 100  # lazily: the root's children and the chosen path
    assert page.locator("#tree .row[data-i='1'] .text").inner_text() == EVIL  # a step text is only text
    page.click("#expand")
    assert page.locator("#tree .row").count() == 5000
    page.click("#problems li:has-text('failed')")
    assert "error: the backend kept failing" in page.locator("#head").inner_text()
    assert page.locator("#tree .row").count() == 1
    page.click("#problems li:has-text('cut')")
    assert "cut short: the budget ran out before an answer was complete" in page.locator("#head").inner_text()
    page.close()
    assert errors == []
