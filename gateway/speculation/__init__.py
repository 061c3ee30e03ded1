"""Speculative serving: a local draft and a Cerebras verification race; one stream is committed.

`Speculator` holds what the three speculative strategies share (settings, scorer, classifier);
`Speculation` runs one request (gateway.speculation.engine), `Race` owns its upstream calls.
"""

from .engine import Speculator

__all__ = ["Speculator"]
