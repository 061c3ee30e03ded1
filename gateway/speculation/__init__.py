"""Speculative serving: a local draft and a Cerebras verification race; one stream is committed.

`Speculator` (gateway.speculation.engine) holds what the three speculative strategies share
(settings, scorer, router); `Speculation` runs one request, `Race` (race) owns its upstream
calls, `window` decides when a draft has shown enough, and `verdict` scores how far two answers
agree. `verify_sample` asks Cerebras afterwards for a share of the answers local served alone and
turns the verdict into router labels (`routing.learn.verify_sample`).
"""
