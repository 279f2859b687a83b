"""Pure geofence core (fence index, transitions with dwell): home of the visits capability."""
