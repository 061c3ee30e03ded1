"""Front doors: each client protocol decoded into the one internal chat request and the internal
stream encoded back (gateway.doors.base)."""
