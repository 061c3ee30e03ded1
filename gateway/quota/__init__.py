"""Whether an upstream may take a call now: the admission protocol (admission) and the spend
budget (budget)."""
