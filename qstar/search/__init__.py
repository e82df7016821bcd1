"""Searches over step proposals; importing this package registers them all."""

from qstar.search import astar, beam, dfs, mcts, sampling  # noqa: F401  (registers every search)
from qstar.search.base import SEARCHES, Context, Propose, Score, Search, get_search
from qstar.search.runner import run_search

__all__ = ["SEARCHES", "Context", "Propose", "Score", "Search", "get_search", "run_search"]
