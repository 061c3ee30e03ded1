"""`glm-gateway doctor`: check a setup against its real upstreams, spending a few tokens each.

- `report`: checks and verdicts; `options`: waits, timeouts and token limits;
- `probes`: the network calls; `local`, `cerebras`: each upstream's checks;
- `prompts`: the original project's three test prompts through an in-process gateway;
  `runner`: all of it in order;
- `render`: text or JSON, secrets scrubbed; `cli`: the command line.
"""

from gateway.doctor.cli import amain, main
from gateway.doctor.options import DoctorOptions
from gateway.doctor.report import Check, Report
from gateway.doctor.runner import run_checks

__all__ = ["Check", "DoctorOptions", "Report", "amain", "main", "run_checks"]
