"""Core types shared by every stage: problems, steps, search trees, scores. Plain dataclasses, JSON round-trip,
no torch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Problem:
    """One item of a task: `prompt` is the question, `answer` the reference (if the task has one)."""

    id: str
    prompt: str
    answer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Prefix(str):
    """A rendered prompt that remembers where the solution's steps begin.

    It is a plain string to every policy; chat backends put the part before the steps in the user's turn and
    the steps in the assistant's, so the step format survives a chat template.
    """

    steps_start: int

    def __new__(cls, question: str, steps: str = "") -> Prefix:
        prefix = super().__new__(cls, question + steps)
        prefix.steps_start = len(question)
        return prefix

    @property
    def question(self) -> str:
        return self[: self.steps_start]

    @property
    def steps(self) -> str:
        return self[self.steps_start :]


def split_prefix(prefix: str) -> tuple[str, str]:
    """(question, steps) of a prefix; a plain string is all question."""
    start = getattr(prefix, "steps_start", len(prefix))
    return prefix[:start], prefix[start:]


@dataclass
class Step:
    """One proposed reasoning step: a line of text, its log-probability under the policy, tokens generated."""

    text: str
    logprob: float = 0.0
    done: bool = False  # the policy ended the solution here (end-of-sequence)
    tokens: int = 0


@dataclass
class Scores:
    """A scorer's values of a batch of paths, and the generated tokens and model calls spent on each."""

    values: list[float]
    tokens: list[int] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tokens = self.tokens or [0] * len(self.values)
        self.calls = self.calls or [0] * len(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, s: slice) -> Scores:
        return Scores(self.values[s], self.tokens[s], self.calls[s])


@dataclass(eq=False)
class Node:
    """A vertex of a search tree; the path from the root is a partial solution."""

    step: Step | None = None  # None at the root
    parent: Node | None = field(default=None, repr=False)
    children: list[Node] = field(default_factory=list, repr=False)
    prior: float = 1.0
    visits: int = 0
    value_sum: float = 0.0
    legal: bool = True  # the task's step checker accepted this step
    terminal: bool = False  # no further step can follow
    reward: float | None = None  # verifier reward, set on terminal nodes
    score: float | None = None  # the scorer's value of the path to here, where a search asked for it

    @property
    def value(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0

    def add_child(self, step: Step, **kwargs: Any) -> Node:
        child = Node(step=step, parent=self, **kwargs)
        self.children.append(child)
        return child

    def path(self) -> list[Step]:
        """Steps from the root down to this node."""
        steps: list[Step] = []
        node: Node | None = self
        while node is not None and node.step is not None:
            steps.append(node.step)
            node = node.parent
        return steps[::-1]

    def lineage(self) -> list[Node]:
        """The nodes from the root down to this one, both included."""
        nodes = [self]
        while nodes[-1].parent is not None:
            nodes.append(nodes[-1].parent)
        return nodes[::-1]

    def texts(self) -> list[str]:
        return [s.text for s in self.path()]

    def walk(self) -> Iterator[Node]:
        """This node and all its descendants, depth first."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "step": asdict(self.step) if self.step else None,
            "prior": self.prior,
            "visits": self.visits,
            "value_sum": self.value_sum,
            "legal": self.legal,
            "terminal": self.terminal,
            "reward": self.reward,
            "score": self.score,
        }
        d["children"] = [c.to_dict() for c in self.children]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], parent: Node | None = None) -> Node:
        fields = {k: v for k, v in d.items() if k not in ("step", "children")}
        node = cls(step=Step(**d["step"]) if d["step"] else None, parent=parent, **fields)
        node.children = [cls.from_dict(c, node) for c in d["children"]]
        return node


@dataclass
class Tree:
    """What every search returns: the problem, the root, and the compute spent building it. `answer` is the node
    the search picked; its steps are `best_path()`, and what they state is `task.final_answer(tree.problem,
    [step.text for step in tree.best_path()])`."""

    problem: Problem
    root: Node = field(default_factory=Node)
    tokens: int = 0  # generated tokens, all model calls included
    calls: int = 0  # model calls (one per prefix sent to the policy or scorer)
    answer: Node | None = field(default=None, repr=False)  # the node the search picked as its answer
    error: str | None = None  # why the search stopped early (a backend that kept failing); None when it ran
    out_of_budget: bool = False  # the budget refused a request the search wanted to make

    def nodes(self) -> Iterator[Node]:
        return self.root.walk()

    def solutions(self) -> list[Node]:
        """Terminal nodes the verifier accepted."""
        return [n for n in self.nodes() if n.terminal and n.reward == 1.0]

    @property
    def solved(self) -> bool:
        return self.answer is not None and self.answer.reward == 1.0

    @property
    def starved(self) -> bool:
        """The budget paid for no model call at all: the search could not begin."""
        return self.calls == 0 and self.out_of_budget

    @property
    def unfinished(self) -> bool:
        """The budget ran out before the search had a complete answer (its answer, if any, is a partial path)."""
        return self.out_of_budget and (self.answer is None or not self.answer.terminal)

    def best_path(self) -> list[Step]:
        """The chosen answer's steps, or the longest path when the search chose none."""
        node = self.answer or max(self.nodes(), key=lambda n: len(n.path()))
        return node.path()

    def to_dict(self) -> dict[str, Any]:
        nodes = list(self.nodes())
        return {
            "problem": asdict(self.problem),
            "root": self.root.to_dict(),
            "tokens": self.tokens,
            "calls": self.calls,
            "answer": nodes.index(self.answer) if self.answer is not None else None,
            "error": self.error,
            "out_of_budget": self.out_of_budget,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tree:
        tree = cls(
            problem=Problem(**d["problem"]),
            root=Node.from_dict(d["root"]),
            tokens=d["tokens"],
            calls=d["calls"],
            error=d.get("error"),
            out_of_budget=d.get("out_of_budget", False),
        )
        if d.get("answer") is not None:
            tree.answer = list(tree.nodes())[d["answer"]]
        return tree
