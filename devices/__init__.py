"""Home devices' health: heartbeats, offline, battery and tamper, judged per device (pure:
plain values, time passed in)."""
