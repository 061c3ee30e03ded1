"""GLM Token Saver: an OpenAI-compatible streaming gateway between a coding assistant, a local
llama.cpp server and the Cerebras Inference API."""

__version__ = "0.1.0"
