"""The metering service: usage events stored once, and usage queries."""
