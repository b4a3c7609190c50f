"""MarginScope engine."""
