"""MarginScope backend."""
