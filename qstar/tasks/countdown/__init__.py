"""Countdown and its Game-of-24 preset: rules, exhaustive solver, problems, random play and the task itself."""

from qstar.tasks.countdown.play import random_numbers, random_play
from qstar.tasks.countdown.problems import load_file, make_problem, parse_numbers, parse_text
from qstar.tasks.countdown.rules import OPS, apply, check, expression, format_step, legal_moves, move_step
from qstar.tasks.countdown.solver import is_solvable, solve
from qstar.tasks.countdown.task import Countdown

__all__ = [
    "OPS",
    "Countdown",
    "apply",
    "check",
    "expression",
    "format_step",
    "is_solvable",
    "legal_moves",
    "load_file",
    "make_problem",
    "move_step",
    "parse_numbers",
    "parse_text",
    "random_numbers",
    "random_play",
    "solve",
]
