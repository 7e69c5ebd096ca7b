"""Example stores written by following specs/, to show the spec suffices."""
