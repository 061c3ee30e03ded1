"""Whether an upstream may take a call now.

- admission: the protocol every upstream call goes through (tickets, refusals, `OpenGate`);
- gate: the app's gate (budget, 429 cool-downs, predictive admission) and its 429 listeners;
- reservations: what a call reserves, and the running total of the calls in flight;
- plan: the configured plan's windows (`rate_limits.cerebras`), as sliding logs;
- budget: the Cerebras spend budget.

What the upstreams' rate-limit headers say is read by gateway.ratelimit, which the gate uses.
"""
