"""The errors every layer shares: bad input from the user, and model calls that failed for good."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


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


def expect(value: object, member: str, kind: str, maker: str) -> None:
    """Refuse, as one line, an argument that is not a `kind` object (one with a callable `member`): a name given
    where the object made from it belongs fails here, not deep inside the first call."""
    if not callable(getattr(value, member, None)):
        raise QstarError(f"{kind} must be a {kind} object ({maker}), not {value!r:.40}")


@contextlib.contextmanager
def blame(what: str) -> Iterator[None]:
    """Report an exception from plug-in code (`what`: whose, e.g. "policy CoinPolicy") as one line that names it,
    the exception chained; qstar's own errors and a backend's failures pass unchanged. `QSTAR_TRACEBACK=1` makes
    the command line print the traceback too."""
    try:
        yield
    except (QstarError, BackendError, StopIteration):  # StopIteration: a search generator's end, not a failure
        raise
    except Exception as e:
        raise QstarError(f"{what} raised {type(e).__name__}: {e}") from e
