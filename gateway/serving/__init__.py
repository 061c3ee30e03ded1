"""Serving one request from the upstreams: its state in flight (exchange), streaming an upstream
with fallback (relay), and finishing a broken stream on the other upstream (continuation)."""
