"""The errors every layer shares: bad input from the user, and model calls that failed for good."""

from __future__ import annotations


class QstarError(ValueError):
    """Bad input from the user (a malformed problem, an unknown name): reported as one line, exit code 2."""


class BackendError(RuntimeError):
    """Some items of a batched model call failed for good (retries spent, a prompt too long): `failed` maps an
    item's index in the batch to why; `results` holds the other items' replies (None where failed). The search
    driver ends the failed items' problems with the error recorded and carries on with the rest."""

    def __init__(self, failed: dict[int, str], results: list):
        self.failed, self.results = failed, results
        first = next(iter(failed.values()), "")
        super().__init__(f"{len(failed)} of {len(results)} requests failed; first: {first}")
