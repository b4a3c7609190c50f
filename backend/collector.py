"""The garbage collector's settings for the serving process (`marginscope serve`).

A batch of reported events allocates tens of thousands of short-lived objects on its way to the
store (the checked models, the engine's events, the rows, the column tuples). With CPython's
default thresholds the collector runs every 700 allocations, and its older generations walk every
object the server holds (the app, its pydantic schemas, SQLAlchemy's caches) again and again:
scripts/ingest_stages.py measures both settings side by side, and with the defaults the collector
took more of a batch's time than parsing it. `tune()` moves everything that exists at startup out
of the collector's reach (`gc.freeze`: it lives as long as the process anyway) and collects the
youngest generation every 10,000 allocations; cycles are still collected, a little later.
"""

from __future__ import annotations

import gc

YOUNGEST_THRESHOLD = 10_000  # allocations between collections of the youngest generation (CPython: 700)


def tune() -> None:
    """Call once the app is built, before serving."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNGEST_THRESHOLD, older, oldest)
