"""Searches by name (`get_search`): greedy, sample, self-consistency, best-of-n, beam, dvts, dfs, dfs-wide, mcts,
astar; installed packages add theirs through the `qstar.searches` entry-point group, a user's file through
`--plugin`. `run_search` runs one over many problems with their model calls batched."""

from qstar.search import astar, beam, dfs, mcts, sampling  # noqa: F401  (registers every search)
from qstar.search.base import SEARCHES, Context, Propose, Score, Search, get_search, register_search
from qstar.search.runner import run_search

__all__ = ["SEARCHES", "Context", "Propose", "Score", "Search", "get_search", "register_search", "run_search"]
