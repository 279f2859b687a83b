"""Routines: a home's ambient sensor events turned into features by time of day and room, the
models that learn a resident's usual day from her own past days and notice when today is not
like them, and the figures that judge those models against labelled anomalies (pure: plain
values and numpy, time passed in, times of day read in the home's time zone)."""
