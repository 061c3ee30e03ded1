"""Client protocols ("doors"): each decodes its requests into the one internal chat request and
encodes the one internal chunk stream back into its own events (see gateway.doors.base)."""
