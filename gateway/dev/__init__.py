"""Tools for development and demos, not on the request path: the upstream simulators (sim), the
local llama-server launcher and check (llama_server, local_model) and the demo fleet."""
