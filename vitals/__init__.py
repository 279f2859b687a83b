"""Vitals: heart rate, SpO2, temperature and blood pressure filtered, judged against a
patient's thresholds held for a duration, and downsampled (pure: plain values, time passed in)."""
