"""The registry service: sources, models, access, project limits, selector."""
