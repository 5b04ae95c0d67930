"""Alarm states (debounced, latched, acknowledged), sensor health, and the events actions get."""
