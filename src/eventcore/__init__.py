"""eventcore: multi-stream event sourcing for Python."""
