"""Checks that are not speed: equal rows, the gates' power, quality bars, data paths."""
