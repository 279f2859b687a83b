"""Pure dispatch core: candidate ranking, ETA model, offer waves. No I/O; time is an argument."""
