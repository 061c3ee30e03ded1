"""The Anthropic Messages door: decode (request -> internal chat body), encode (internal stream
-> Messages events), sink, errors, stop sequences."""
