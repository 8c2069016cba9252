"""Long-running work: a call of any route run as a durable job (``Prefer: respond-async`` or
``#| job``), followed over ``/jobs``.

``store`` keeps jobs in SQLite, ``runner`` claims and runs them in every server process,
``webhooks`` tells a receiver when one ends, ``api`` serves ``/jobs``, and ``current`` gives
notebook code :func:`progress` and :func:`cancelled`.
"""

from __future__ import annotations

from .current import cancelled, progress
from .runner import Jobs, default_db

__all__ = ["Jobs", "cancelled", "default_db", "progress"]
