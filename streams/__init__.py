"""The Faust app and its agents: thin loops that feed the pure core and write results."""
