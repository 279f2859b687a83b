"""Medication: a patient's schedule of doses, and what each dose became (pure: plain values,
time passed in)."""
