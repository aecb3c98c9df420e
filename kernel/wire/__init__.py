"""What travels between API, engine, scheduler and workers through Redis: every key name
(``keys``), the message shapes (``protocol``) and stream helpers (``streams``)."""
