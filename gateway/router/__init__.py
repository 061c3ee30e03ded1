"""The learned router: will the local answer be good enough, and learning from outcomes.

`Router` (one per app, created in `create_app`'s start-up and shared through
`StrategyContext.router` and `Services.router`) offers:

- `route(request_id, body) -> Decision`: local or Cerebras for one ask. `routing.router:
  heuristic` applies the keyword/length classifier; `learned` scores p(local answer not good
  enough) with a logistic model over features of `current_ask` and sends the ask to Cerebras when
  p >= the threshold. Configured complexity keywords still force Cerebras.
- `judge_draft(request_id, body, text, tokens, complete=, logprobs=) -> Decision`: accept or
  escalate a local draft (`speculative_decoding.scorer: learned`), from ask and draft features.
- `threshold(model)`: the model's own threshold, or with `routing.target_cloud_share` set, the
  (1 - target) quantile of the last 1,000 scores, so the share sent to Cerebras follows the target.
  The target applies under every router kind: `heuristic` then routes on the classifier's
  continuous score (gateway.router.heuristic) against its own window. A keyword-forced ask
  enters the windows as the top score; a model that learned has its window re-scored.
- `learn(request_id: str, bad: bool, source: str, weight: float = 1.0) -> bool`: one SGD step on
  every model that scored that request (its features are remembered for the last 5,000
  requests), with the label "the local answer was (or would have been) not good enough" = `bad`.
  Returns False when the id is unknown. The label (request_id, source, label, weight, time) and
  the changed weights are persisted; a restart loads them over the shipped weights.
- `count_escalation()`, `count_no_think()`: counters shown in `/stats`.
- `snapshot()`: the `/stats` router block; `flush()` waits for persistence; `close()`.

Everything persists in `router.db` beside the ledger (gateway.router.store). The shipped weights
are `gateway/router/weights.json`, trained by `scripts/train_router.py` (see docs/router.md).
"""

from gateway.router.features import hedges
from gateway.router.metrics import RouterCollector
from gateway.router.router import Decision, Router, RouterError

__all__ = ["Decision", "Router", "RouterCollector", "RouterError", "hedges"]
