"""Alarms a person must acknowledge: their lifecycle and the ladder that climbs while nobody
does (pure: plain values, time passed in)."""
