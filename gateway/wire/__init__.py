"""The OpenAI wire format: decoding upstream SSE (sse), writing the client's stream or whole
answer (sinks), and assembling streamed deltas into messages (assembly)."""
