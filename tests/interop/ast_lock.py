"""Schemathesis hooks module (SCHEMATHESIS_HOOKS=ast_lock): one ast.parse at a time in the process.

CPython 3.11 keeps the AST constructor's recursion depth in per-interpreter state, so two threads
building ASTs at once can fail with "SystemError: AST constructor recursion depth mismatch"
(python/cpython#106905). Hypothesis builds ASTs to describe filter lambdas (its
lambda_sources.lambda_description calls ast.parse), and `schemathesis run --workers 2` draws in two
threads: a few runs in ten ended with that error as a schemathesis Runtime Error, not a finding
about the API. Serialising ast.parse removes the race; it is cheap (descriptions are cached).
"""

import ast
import threading

_lock = threading.RLock()
_parse = ast.parse


def _locked_parse(*args, **kwargs):
    with _lock:
        return _parse(*args, **kwargs)


ast.parse = _locked_parse
