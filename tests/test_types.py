"""Core types: JSON round-trip of a whole tree, and no torch behind them."""

import json
import subprocess
import sys

from qstar.types import Node, Problem, Step, Tree


def test_tree_round_trips_through_json():
    tree = Tree(Problem("p1", "4 9 10 13", "24", {"numbers": [4, 9, 10, 13], "target": 24}), tokens=70, calls=4)
    a = tree.root.add_child(Step("13 - 9 = 4 (left: 4 10 4)", -0.5, tokens=26), prior=0.6, visits=3, value_sum=2.0)
    tree.root.add_child(Step("bad", -3.0, tokens=4), legal=False, terminal=True, reward=0.0)
    leaf = a.add_child(Step("x", -1.0, done=True, tokens=2), terminal=True, reward=1.0)
    tree.answer = leaf
    again = Tree.from_dict(json.loads(json.dumps(tree.to_dict())))
    assert again.to_dict() == tree.to_dict()
    assert again.solved and again.answer.texts() == ["13 - 9 = 4 (left: 4 10 4)", "x"]
    assert again.answer.parent.value == 2.0 / 3
    assert len(again.solutions()) == 1 and len(list(again.nodes())) == 4


def test_node_path_and_walk():
    root = Node()
    b = root.add_child(Step("a")).add_child(Step("b"))
    assert [s.text for s in b.path()] == ["a", "b"]
    assert [n.step.text for n in root.walk() if n.step] == ["a", "b"]


def test_types_do_not_import_torch():
    code = "import sys, qstar.types, qstar.tasks; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
