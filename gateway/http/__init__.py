"""The HTTP face: the aiohttp app and its wiring (app), the endpoints (routes), auth and limits
(guard), request-body checks (validation) and what requests share (services)."""
