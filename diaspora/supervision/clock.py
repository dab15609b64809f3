"""Moved to :mod:`diaspora.clock`; kept so ``diaspora.supervision.clock`` imports still work."""

from diaspora.clock import Clock, ManualClock, SystemClock

__all__ = ["Clock", "ManualClock", "SystemClock"]
